"""The asynchronous client: the same surface, awaitable, with async streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx

from . import _core
from .errors import APITimeoutError


class AsyncStream:
    """`async for` over parsed objects; leaving early (or aclose()) drops the connection."""

    def __init__(self, response: httpx.Response, kind: str, model: Any) -> None:
        self.response, self.kind, self.model = response, kind, model

    async def __aiter__(self) -> AsyncIterator[Any]:
        parsed = _core.line_parser(self.kind, self.model)
        try:
            async for line in self.response.aiter_lines():
                obj = parsed(line)
                if obj is _core.DONE:
                    break
                if obj is not None:
                    yield obj
        except httpx.TimeoutException as e:
            raise APITimeoutError(f"the stream timed out: {e}") from e
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await self.response.aclose()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncInfernoClient(_core.Surface):
    """The async twin of InfernoClient: `await c.chat.completions.create(...)`, `async for` streams."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 600.0,
                 connect_timeout: float = 5.0, max_retries: int = 2, backoff: float = 0.5) -> None:
        self.base_url = _core.server_root(base_url)
        self.max_retries, self.backoff = max_retries, backoff
        self._http = httpx.AsyncClient(**_core.http_options(self.base_url, api_key, timeout, connect_timeout))
        self._init_surface()

    async def _send(self, method: str, path: str, body: Any, stream: bool) -> httpx.Response:
        delays = _core.backoff_delays(self.max_retries, self.backoff)
        for attempt in range(len(delays) + 1):
            failure: Exception
            try:
                request = self._http.build_request(method, path, json=body)
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as e:
                failure = e
            else:
                if response.status_code < 400:
                    return response
                content = await response.aread()
                await response.aclose()
                failure = _core.error_from(response.status_code, content)
            await asyncio.sleep(_core.retry_delay(failure, attempt, delays, self.base_url))
        raise AssertionError("unreachable")

    async def _request(self, method: str, path: str, body: Any, model: Any) -> Any:
        response = await self._send(method, path, body, stream=False)
        if model is None:
            return None
        return model.model_validate(response.json())

    async def _stream(self, method: str, path: str, body: Any, kind: str, model: Any) -> AsyncStream:
        return AsyncStream(await self._send(method, path, body, stream=True), kind, model)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncInfernoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
