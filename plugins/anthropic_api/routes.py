"""POST /v1/messages (a message, or its stream of named server-sent events) and /v1/messages/count_tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from inferno.api import (
    Done,
    Engine,
    GenerateRequest,
    Inferno,
    TextDelta,
    ToolCall,
    ToolCalls,
    body,
    collect,
    count_tokens,
    primed,
    read_json,
    stream,
)

from . import translate as t
from .schemas import CountTokensBody, MessagesBody


def make_blueprint(inferno: Inferno) -> Any:
    from quart import Blueprint

    bp = Blueprint("anthropic_api", __name__, url_prefix="/v1/messages")

    @bp.post("")
    @body(MessagesBody)
    async def messages() -> Any:
        """Anthropic Messages API: a message, or its stream of server-sent events."""
        req: MessagesBody = await read_json(MessagesBody)
        engine = inferno.engine
        core = t.core_request(req)
        handle = engine.submit(core)
        if req.stream:
            events = await primed([handle])
            return stream(_events(engine, core, events, req), kind="sse", error=t.error_body,
                          event_of=lambda o: o["type"])
        r = await collect(handle)
        stop_sequence = await t.matched_stop(engine, core, r.done)
        return t.message(t.new_id(), req.model, t.content(r.text, r.calls),
                         t.stop_reason(r.done, req.max_tokens, stop_sequence), stop_sequence, r.done)

    @bp.post("/count_tokens")
    @body(CountTokensBody)
    async def count_message_tokens() -> Any:
        """The number of tokens a Messages request's prompt (system, messages, tools) takes in the model."""
        req: CountTokensBody = await read_json(CountTokensBody)
        return {"input_tokens": await count_tokens(inferno.engine, t.core_request(req))}

    return bp


class _Blocks:
    """The content blocks of a streamed message, opened and closed as the engine's events arrive.

    Text is held back while it is only whitespace, so that the blank before a tool call does not become a
    block of its own (the non-streamed answer leaves it out too)."""

    def __init__(self) -> None:
        self.index = 0  # the index of the next (or open) block
        self.text_open = False
        self.held = ""
        self.pinged = False

    def _start(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        out = [{"type": "content_block_start", "index": self.index, "content_block": block}]
        if not self.pinged:  # Anthropic's own streams send one ping after the first block starts
            out.append({"type": "ping"})
            self.pinged = True
        return out

    def _stop(self) -> list[dict[str, Any]]:
        out = [{"type": "content_block_stop", "index": self.index}]
        self.index += 1
        return out

    def _text_delta(self, text: str) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": self.index, "delta": {"type": "text_delta", "text": text}}

    def text(self, text: str) -> list[dict[str, Any]]:
        if self.text_open:
            return [self._text_delta(text)]
        self.held += text
        if not self.held.strip():
            return []
        out = self._start({"type": "text", "text": ""})
        self.text_open, text, self.held = True, self.held, ""
        return [*out, self._text_delta(text)]

    def close_text(self) -> list[dict[str, Any]]:
        if not self.text_open:
            return []
        self.text_open = False
        return self._stop()

    def tool_calls(self, calls: list[ToolCall]) -> list[dict[str, Any]]:
        out = self.close_text()
        self.held = ""
        for call in calls:
            out += self._start(t.tool_use(call, streamed=True))
            out.append(t.tool_input_delta(self.index, call))
            out += self._stop()
        return out

    def finish(self) -> list[dict[str, Any]]:
        """Close what is open; an answer with no block at all still gets its (empty or blank) text block."""
        if self.index == 0 and not self.text_open:
            out = self._start({"type": "text", "text": ""})
            if self.held:
                out.append(self._text_delta(self.held))
            return out + self._stop()
        return self.close_text()


async def _events(engine: Engine, core: GenerateRequest, events: AsyncIterator[Any],
                  req: MessagesBody) -> AsyncIterator[dict[str, Any]]:
    """message_start, content blocks (with a ping), message_delta (stop reason, usage), message_stop."""
    mid = t.new_id()
    yield {"type": "message_start", "message": t.message(mid, req.model, [], None, None, None)}
    blocks = _Blocks()
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                if event.text:
                    for out in blocks.text(event.text):
                        yield out
            elif isinstance(event, ToolCalls):
                for out in blocks.tool_calls(event.calls):
                    yield out
            elif isinstance(event, Done):
                for out in blocks.finish():
                    yield out
                stop_sequence = await t.matched_stop(engine, core, event)
                reason = t.stop_reason(event, req.max_tokens, stop_sequence)
                yield {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": stop_sequence},
                       "usage": t.usage(event)}
                yield {"type": "message_stop"}
    finally:  # a client that went away closes this generator: close the engine's too, which cancels it now
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
