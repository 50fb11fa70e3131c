"""What the sync and async clients share: configuration, the API surface, parsing and error mapping.

The two clients differ only in how they send a request (`_request`, `_stream`); everything that builds a
body or reads an answer lives here once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel

from . import types as t
from .errors import APIConnectionError, APITimeoutError, ServerBusyError, StreamError, status_error

M = TypeVar("M", bound=BaseModel)
DONE = object()
RETRY_STATUSES = {503}


def default_base_url() -> str:
    host = os.environ.get("INFERNO_HOST", "127.0.0.1:8000").strip()
    if host.startswith(("http://", "https://")):
        return host.rstrip("/")
    if host.startswith(":"):
        host = "127.0.0.1" + host
    if ":" not in host.rsplit("]", 1)[-1]:
        host += ":8000"
    return f"http://{host.replace('0.0.0.0', '127.0.0.1')}"


def server_root(base_url: str | None) -> str:
    """The server's root URL: a base_url ending in /v1 (the OpenAI SDK's and the original inferno's spelling)
    means the same server, and the client's paths already carry /v1 or /api."""
    url = (base_url or default_base_url()).rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def headers(api_key: str | None) -> dict[str, str]:
    key = api_key if api_key is not None else os.environ.get("INFERNO_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def error_from(status: int, content: bytes) -> Exception:
    """The server's own message from either dialect's error shape."""
    try:
        body: Any = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        body = content.decode(errors="replace")
    message = body
    if isinstance(body, dict):
        err = body.get("error")
        message = err.get("message") if isinstance(err, dict) else err
    return status_error(status, str(message or f"HTTP {status}"), body)


def parse_sse(line: str) -> Any:
    """One SSE line → a JSON object, DONE, or None (blank lines, comments, other fields)."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return DONE
    obj = json.loads(data)
    if isinstance(obj, dict) and "error" in obj and "choices" not in obj:
        raise _stream_error(obj)
    return obj


def parse_ndjson(line: str) -> Any:
    if not line.strip():
        return None
    obj = json.loads(line)
    if isinstance(obj, dict) and "error" in obj:
        raise _stream_error(obj)
    return obj


def _stream_error(obj: dict[str, Any]) -> StreamError:
    err = obj["error"]
    message = err.get("message") if isinstance(err, dict) else err
    return StreamError(str(message), 200, obj)


def backoff_delays(max_retries: int, backoff: float) -> list[float]:
    return [backoff * 2**i for i in range(max_retries)]


def http_options(base_url: str, api_key: str | None, timeout: float, connect_timeout: float) -> dict[str, Any]:
    """The httpx client's options, the same for the sync and the async client."""
    import httpx

    return {"base_url": base_url, "headers": headers(api_key),
            "timeout": httpx.Timeout(timeout, connect=connect_timeout)}


def retry_delay(failure: Exception, attempt: int, delays: list[float], base_url: str) -> float:
    """The seconds to wait before the next attempt after `failure`, or the caller's error raised."""
    import httpx

    if attempt < len(delays) and retryable(failure):
        return delays[attempt]
    if isinstance(failure, httpx.TransportError):
        raise transport_failure(failure, base_url) from failure
    raise failure


def line_parser(kind: str, model: Any) -> Any:
    """line → a validated model object, DONE, or None; for a stream of `kind` ("sse" or "ndjson")."""
    parse = parse_sse if kind == "sse" else parse_ndjson

    def parsed(line: str) -> Any:
        obj = parse(line)
        return obj if obj is None or obj is DONE else model.model_validate(obj)

    return parsed


def transport_failure(e: Exception, base_url: str) -> Exception:
    """What a failed send means to the caller."""
    import httpx

    if isinstance(e, httpx.TimeoutException):
        return APITimeoutError(f"no answer from {base_url} in time: {e}")
    return APIConnectionError(f"cannot reach {base_url}: is `inferno serve` running there? ({type(e).__name__})")


def retryable(failure: Exception) -> bool:
    """Only what a retry can fix: no connection yet, or a busy server. A read timeout may have run."""
    import httpx

    if isinstance(failure, httpx.TimeoutException):
        return isinstance(failure, httpx.ConnectTimeout)
    return isinstance(failure, httpx.TransportError | ServerBusyError)


def clean(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


class _Namespace:
    def __init__(self, client: Any) -> None:
        self._client = client


class ChatCompletions(_Namespace):
    def create(self, *, model: str, messages: Iterable[dict[str, Any]], stream: bool = False, **kwargs: Any) -> Any:
        """POST /v1/chat/completions; with stream=True an iterator of ChatCompletionChunk."""
        body = clean({"model": model, "messages": list(messages), "stream": stream, **kwargs})
        if stream:
            return self._client._stream("POST", "/v1/chat/completions", body, "sse", t.ChatCompletionChunk)
        return self._client._request("POST", "/v1/chat/completions", body, t.ChatCompletion)


class Chat(_Namespace):
    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.completions = ChatCompletions(client)


class Completions(_Namespace):
    def create(self, *, model: str, prompt: str | list[str], stream: bool = False, **kwargs: Any) -> Any:
        """POST /v1/completions; with stream=True an iterator of Completion chunks."""
        body = clean({"model": model, "prompt": prompt, "stream": stream, **kwargs})
        if stream:
            return self._client._stream("POST", "/v1/completions", body, "sse", t.Completion)
        return self._client._request("POST", "/v1/completions", body, t.Completion)


class Embeddings(_Namespace):
    def create(self, *, model: str, input: str | list[str] | list[int] | list[list[int]], **kwargs: Any) -> Any:
        """POST /v1/embeddings."""
        body = clean({"model": model, "input": input, **kwargs})
        return self._client._request("POST", "/v1/embeddings", body, t.EmbeddingsResponse)


class Models(_Namespace):
    def list(self) -> Any:
        """GET /v1/models."""
        return self._client._request("GET", "/v1/models", None, t.ModelList)

    def retrieve(self, model: str) -> Any:
        """GET /v1/models/{model}."""
        return self._client._request("GET", f"/v1/models/{model}", None, t.Model)


class Surface:
    """The methods both clients offer; each returns a value (sync) or an awaitable (async)."""

    _request: Any
    _stream: Any

    def _init_surface(self) -> None:
        self.chat = Chat(self)
        self.completions = Completions(self)
        self.embeddings = Embeddings(self)
        self.models = Models(self)

    def pull(self, model: str, *, stream: bool = True) -> Any:
        """Pull a model (any identifier the server's sources accept); progress as PullProgress objects."""
        if stream:
            return self._stream("POST", "/api/pull", {"model": model, "stream": True}, "ndjson", t.PullProgress)
        return self._request("POST", "/api/pull", {"model": model, "stream": False}, t.PullProgress)

    def show(self, model: str, *, verbose: bool = False) -> Any:
        """A model's details, template, parameters, GGUF metadata and capabilities."""
        return self._request("POST", "/api/show", {"model": model, "verbose": verbose}, t.ShowResponse)

    def ps(self) -> Any:
        """The models loaded on the server."""
        return self._request("GET", "/inferno/ps", None, t.PsResponse)

    def copy(self, source: str, destination: str) -> Any:
        """Copy a model under a new name."""
        return self._request("POST", "/api/copy", {"source": source, "destination": destination}, None)

    def delete(self, model: str) -> Any:
        """Remove a model."""
        return self._request("DELETE", "/api/delete", {"model": model}, None)

    def rerank(self, model: str, query: str, documents: list[str], *, top_n: int | None = None,
               return_documents: bool = False) -> Any:
        """The documents scored against the query by a reranker, best first (POST /v1/rerank)."""
        body = clean({"model": model, "query": query, "documents": documents, "top_n": top_n,
                      "return_documents": return_documents})
        return self._request("POST", "/v1/rerank", body, t.RerankResponse)

    def tokenize(self, model: str, text: str) -> Any:
        """The model's tokens for text."""
        return self._request("POST", "/inferno/tokenize", {"model": model, "text": text}, t.TokenizeResponse)

    def detokenize(self, model: str, tokens: list[int]) -> Any:
        """The text of tokens."""
        return self._request("POST", "/inferno/detokenize", {"model": model, "tokens": tokens},
                             t.DetokenizeResponse)
