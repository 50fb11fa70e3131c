"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx

from . import _core
from .errors import APITimeoutError


class Stream:
    """Iterate parsed objects; leaving the loop early (or close()) drops the connection, which cancels
    the generation on the server."""

    def __init__(self, response: httpx.Response, kind: str, model: Any) -> None:
        self.response, self.kind, self.model = response, kind, model

    def __iter__(self) -> Iterator[Any]:
        parsed = _core.line_parser(self.kind, self.model)
        try:
            for line in self.response.iter_lines():
                obj = parsed(line)
                if obj is _core.DONE:
                    break
                if obj is not None:
                    yield obj
        except httpx.TimeoutException as e:
            raise APITimeoutError(f"the stream timed out: {e}") from e
        finally:
            self.close()

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InfernoClient(_core.Surface):
    """A client for `inferno serve`, shaped like the `openai` package plus model management.

    base_url defaults to INFERNO_HOST (127.0.0.1:8000); "http://host:port/v1" works too. api_key defaults to
    INFERNO_API_KEY. Connection errors and 503 "busy" answers are retried max_retries times with exponential
    backoff; nothing else is.
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 600.0,
                 connect_timeout: float = 5.0, max_retries: int = 2, backoff: float = 0.5) -> None:
        self.base_url = _core.server_root(base_url)
        self.max_retries, self.backoff = max_retries, backoff
        self._http = httpx.Client(**_core.http_options(self.base_url, api_key, timeout, connect_timeout))
        self._init_surface()

    def _send(self, method: str, path: str, body: Any, stream: bool) -> httpx.Response:
        delays = _core.backoff_delays(self.max_retries, self.backoff)
        for attempt in range(len(delays) + 1):
            failure: Exception
            try:
                request = self._http.build_request(method, path, json=body)
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as e:
                failure = e
            else:
                if response.status_code < 400:
                    return response
                content = response.read()
                response.close()
                failure = _core.error_from(response.status_code, content)
            time.sleep(_core.retry_delay(failure, attempt, delays, self.base_url))
        raise AssertionError("unreachable")

    def _request(self, method: str, path: str, body: Any, model: Any) -> Any:
        response = self._send(method, path, body, stream=False)
        if model is None:
            return None
        return model.model_validate(response.json())

    def _stream(self, method: str, path: str, body: Any, kind: str, model: Any) -> Stream:
        return Stream(self._send(method, path, body, stream=True), kind, model)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> InfernoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
