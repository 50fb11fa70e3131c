"""The dialect toolkit: what every HTTP API dialect needs around the engine, written once.

A dialect (first- or third-party) translates its wire format into core requests and the engine's events back;
everything else lives here: collecting a request's events into one result, streaming them as SSE or NDJSON
(with the mid-stream error and the client-went-away cancel in one place), submitting several requests that
should decode together, keep_alive / stop / tool-call-id helpers, and per-dialect error shapes.

Nothing heavy is imported at module level: plugins import this at load time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from inferno.config import parse_duration
from inferno.engine.chat import tool_call_id as tool_call_id  # one id form: the engine's parser uses it too
from inferno.engine.types import Done, TextDelta, ThinkingDelta, ToolCall, ToolCalls, Truncated
from inferno.errors import BadRequestError, InfernoError

if TYPE_CHECKING:
    from quart import Quart

    from inferno.config import Settings
    from inferno.engine.handle import RequestHandle
    from inferno.engine.protocol import Engine
    from inferno.engine.types import GenerateRequest

ErrorShape = Callable[[InfernoError], dict[str, Any]]
Chunk = dict[str, Any] | bytes  # a stream item: an object to encode, or bytes already encoded


# errors ---------------------------------------------------------------------------------------------


def neutral_error(error: InfernoError) -> dict[str, Any]:
    """The core's own error shape, for routes no dialect claims (/health, /inferno/…)."""
    return {"error": {"message": error.message, "code": error.code, "param": error.param}}


# The error type words OpenAI's and Anthropic's APIs share, by status; a dialect overrides what differs.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error"}


def error_type(error: InfernoError, overrides: dict[int, str] | None = None) -> str:
    """The conventional error type word for an error's status (`invalid_request_error`, `not_found_error` …)."""
    by_status = ERROR_TYPES | (overrides or {})
    return by_status.get(error.status, "invalid_request_error" if error.status < 500 else "api_error")


def register_error_shape(app: Quart, prefix: str, shape: ErrorShape) -> None:
    """Answer errors under a URL prefix in a dialect's own JSON shape (the longest matching prefix wins)."""
    app.extensions.setdefault("inferno_error_shapes", {})[prefix] = shape


def register_body_limit(app: Quart, prefix: str, limit: int, setting: str) -> None:
    """Bodies under a URL prefix may be up to limit bytes (instead of INFERNO_MAX_BODY_BYTES) when they declare
    their length; a route that streams its body (uploads) still counts what arrives, chunked bodies included.
    setting is named in the 413."""
    app.extensions.setdefault("inferno_body_limits", {})[prefix] = (limit, setting)


def register_open_path(app: Quart, prefix: str) -> None:
    """Serve the paths under prefix without the API key (as / and /health): for files that hold no data and
    must load before a user can give the key, such as the web UI's page and scripts. The Host and Origin
    guard still applies to them."""
    app.extensions.setdefault("inferno_open_prefixes", set()).add(prefix)


def is_open_path(app: Quart, path: str) -> bool:
    """Whether path is served without the API key: /, /health, or under a prefix given to register_open_path
    (whole segments only: "/ui" opens /ui and /ui/app.js, never /uix)."""
    if path in ("/", "/health"):
        return True
    prefixes: set[str] = app.extensions.get("inferno_open_prefixes", set())
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def error_shape_for(app: Quart, path: str) -> ErrorShape:
    shapes: dict[str, ErrorShape] = app.extensions.get("inferno_error_shapes", {})
    best = max((p for p in shapes if path.startswith(p)), key=len, default=None)
    return shapes[best] if best is not None else neutral_error


def error_response(app: Quart, path: str, error: InfernoError) -> Any:
    from quart import Response

    return Response(dumps(error_shape_for(app, path)(error)), status=error.status, content_type="application/json")


# collecting -----------------------------------------------------------------------------------------


@dataclass
class Collected:
    """A whole generation: its text, reasoning (thinking models), tool calls, logprobs and final Done."""

    text: str = ""
    thinking: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    done: Done = field(default_factory=lambda: Done(reason="stop"))
    truncated: Truncated | None = None  # the prompt did not fit the context and was truncated (GenerateRequest)


async def collect(events: AsyncIterator[Any] | RequestHandle) -> Collected:
    """Every event of one request, gathered into one result (non-streamed replies)."""
    text: list[str] = []
    thinking: list[str] = []
    out = Collected()
    async for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
            out.logprobs.extend(event.logprobs or [])
        elif isinstance(event, ThinkingDelta):
            thinking.append(event.text)
        elif isinstance(event, ToolCalls):
            out.calls.extend(event.calls)
        elif isinstance(event, Done):
            out.done = event
        elif isinstance(event, Truncated):
            out.truncated = event
    out.text = "".join(text)
    out.thinking = "".join(thinking)
    return out


def submit_all(engine: Engine, requests: Iterable[GenerateRequest]) -> list[RequestHandle]:
    """Submit every request before reading any, so they decode together (n choices, several prompts).
    If one is refused (busy, unknown model), those already submitted are cancelled."""
    handles: list[RequestHandle] = []
    try:
        for r in requests:
            handles.append(engine.submit(r))
    except BaseException:
        for h in handles:
            h.cancel()
        raise
    return handles


async def primed(handles: list[RequestHandle]) -> AsyncIterator[Any]:
    """The first handle's events, once its first event arrived: errors before any output (unknown model,
    prompt too long, load failure) raise here, while a proper status can still be sent. On an error every
    handle is cancelled."""
    try:
        return await handles[0].primed()
    except BaseException:
        for h in handles:
            h.cancel()
        raise


async def count_tokens(engine: Engine, request: GenerateRequest) -> int:
    """The number of prompt tokens a request makes: its messages under the model's chat template, tools and
    the model's own system prompt included — exactly what the engine would evaluate (OpenAI's
    /v1/responses/input_tokens, Anthropic's count_tokens). The engine renders and tokenizes it; nothing is
    decoded, and a prompt longer than the context is still counted."""
    from inferno.engine.types import TokenizeRequest

    handle = engine.tokenize(TokenizeRequest(model=request.model, prompt_of=request, load=request.load,
                                             keep_alive=request.keep_alive))
    return len((await handle.result())[-1].tokens)


# streaming ------------------------------------------------------------------------------------------


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sse(obj: Any, event: str | None = None) -> bytes:
    """One server-sent event (with a named `event:` line when given, as Anthropic and Responses use)."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {dumps(obj)}\n\n".encode()


def ndjson(obj: Any) -> bytes:
    return (dumps(obj) + "\n").encode()


_ENDED, _FAILED = object(), object()  # what follows a stream's last chunk: it ended well / with an error


def stream(chunks: AsyncIterator[Chunk], *, kind: Literal["sse", "ndjson"], error: ErrorShape,
           end: bytes | None = None, event_of: Callable[[dict[str, Any]], str | None] | None = None) -> Any:
    """A streamed response of chunks as SSE or NDJSON.

    An InfernoError raised mid-stream (after the status line went out) becomes the stream's last item, in
    the dialect's error shape; `end` (OpenAI's `data: [DONE]`) follows a stream that ended well. A client
    that goes away closes the chunk generator, which cancels its engine requests between two tokens.
    `event_of` names an SSE event after its object (`{"type": "message_start"}` → `event: message_start`).
    """
    from quart import Response

    def encode(obj: dict[str, Any]) -> bytes:
        if kind == "ndjson":
            return ndjson(obj)
        return sse(obj, event_of(obj) if event_of else None)

    async def produce(ready: asyncio.Queue[Any]) -> None:
        try:
            async for chunk in chunks:
                ready.put_nowait(chunk if isinstance(chunk, bytes) else encode(chunk))
        except InfernoError as e:
            ready.put_nowait(encode(error(e)))
            ready.put_nowait(_FAILED)
            return
        except Exception as e:  # a bug: raised where the response is being written
            ready.put_nowait(e)
            return
        if end is not None:
            ready.put_nowait(end)
        ready.put_nowait(_ENDED)

    async def guarded() -> AsyncIterator[bytes]:
        # The chunks go through a task of their own, so that those ready together (the tokens of one frame from
        # the runner, inferno.engine.runner.Outbox) leave in one write: each write is a send on the
        # socket and a pass through hypercorn and h11, CPU that llama.cpp's threads want on a small machine.
        ready: asyncio.Queue[Any] = asyncio.Queue()
        task = asyncio.ensure_future(produce(ready))
        try:
            while True:
                parts = [await ready.get()]
                while not ready.empty():
                    parts.append(ready.get_nowait())
                done = parts[-1] is _ENDED or parts[-1] is _FAILED
                for p in parts:
                    if isinstance(p, Exception):
                        raise p
                data = b"".join(p for p in parts if isinstance(p, bytes))
                if data:
                    yield data
                if done:
                    return
        finally:
            if not task.done():  # the client went away: stop producing (between two tokens)
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    content_type = "text/event-stream" if kind == "sse" else "application/x-ndjson"
    response = Response(guarded(), content_type=content_type,
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.timeout = None  # a generation streams for as long as it takes
    return response


# helpers --------------------------------------------------------------------------------------------


def keep_alive(value: str | float | None) -> float | None:
    """A request's keep_alive: None = the server's default; a duration or seconds; negative = forever (-1)."""
    if value is None or value == "":
        return None
    seconds = parse_duration(value)
    return -1.0 if seconds is None else seconds


def stop_list(value: str | list[str] | None) -> list[str]:
    """`stop` as one string or a list, empty strings dropped."""
    if value is None:
        return []
    return [s for s in ([value] if isinstance(value, str) else value) if s]


# images ---------------------------------------------------------------------------------------------


IMAGE_FETCH_TIMEOUT_S = 30  # an image URL (allowed by INFERNO_ALLOW_IMAGE_URLS) that stalls longer is a 400


@dataclass(frozen=True)
class ImagePolicy:
    """What an image a dialect is handed may be: http(s) URLs are fetched only when the server allows it
    (INFERNO_ALLOW_IMAGE_URLS; fetching what a client names is an SSRF risk), and no bigger than max_bytes."""

    allow_urls: bool = False
    max_bytes: int = 20 * 1024 * 1024

    @classmethod
    def of(cls, settings: Settings) -> ImagePolicy:
        return cls(allow_urls=settings.allow_image_urls, max_bytes=settings.max_image_bytes)


def image_source(url: str, policy: ImagePolicy, param: str = "messages") -> str:
    """An image a client sent → what `Message.images` holds: a data: URL or bare base64 as it is (the engine
    decodes and checks it: a bad one is its 400), an http(s) URL fetched when the policy allows, else a 400."""
    if not url.startswith(("http://", "https://")):
        return url
    if not policy.allow_urls:
        raise BadRequestError("image URLs are not fetched by this server (set INFERNO_ALLOW_IMAGE_URLS=1 to allow "
                              "it); send the image as a data: URL or base64 instead", param=param)
    import base64

    import httpx

    try:
        with httpx.stream("GET", url, timeout=IMAGE_FETCH_TIMEOUT_S, follow_redirects=True) as r:
            r.raise_for_status()
            data = bytearray()
            for chunk in r.iter_bytes():
                data += chunk
                if len(data) > policy.max_bytes:
                    raise BadRequestError(f"the image at {url} is larger than {policy.max_bytes} bytes "
                                          "(INFERNO_MAX_IMAGE_BYTES)", param=param)
    except httpx.HTTPError as e:
        raise BadRequestError(f"cannot fetch the image at {url}: {e}", param=param) from e
    return base64.b64encode(bytes(data)).decode()
