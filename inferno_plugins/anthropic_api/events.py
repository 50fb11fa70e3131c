"""A streamed message: the engine's events as Anthropic's server-sent events, in the official order —
message_start, then per content block content_block_start / content_block_delta… / content_block_stop (one
ping after the first start), then message_delta (stop reason, usage) and message_stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from inferno.api import Done, TextDelta, ThinkingDelta, ToolCall, ToolCalls

from . import translate as t
from .schemas import MessagesBody

Event = dict[str, Any]


class Blocks:
    """The content blocks of a streamed message, opened and closed as the engine's events arrive.

    Answer text is held back while it is only whitespace, so that the blank before a tool call does not
    become a block of its own (the non-streamed message leaves it out too)."""

    def __init__(self) -> None:
        self.index = 0  # the index of the open block, or of the next one
        self.open: str | None = None  # the type of the open block
        self.answered = False  # a text or tool_use block was sent
        self.held = ""
        self.pinged = False

    def _start(self, block: Event) -> list[Event]:
        out = [{"type": "content_block_start", "index": self.index, "content_block": block}]
        if not self.pinged:  # Anthropic's own streams send a ping right after the first block starts
            out.append({"type": "ping"})
            self.pinged = True
        self.open = block["type"]
        return out

    def _delta(self, delta: Event) -> Event:
        return {"type": "content_block_delta", "index": self.index, "delta": delta}

    def close(self) -> list[Event]:
        if self.open is None:
            return []
        out = [{"type": "content_block_stop", "index": self.index}]
        self.index, self.open = self.index + 1, None
        return out

    def thinking(self, text: str) -> list[Event]:
        out = [] if self.open == "thinking" else [*self.close(), *self._start(t.thinking_block(""))]
        return [*out, self._delta({"type": "thinking_delta", "thinking": text})]

    def text(self, text: str) -> list[Event]:
        if self.open == "text":
            return [self._delta({"type": "text_delta", "text": text})]
        self.held += text
        if not self.held.strip():
            return []
        text, self.held, self.answered = self.held, "", True
        out = [*self.close(), *self._start({"type": "text", "text": ""})]
        return [*out, self._delta({"type": "text_delta", "text": text})]

    def tool_calls(self, calls: list[ToolCall]) -> list[Event]:
        out = self.close()
        self.held, self.answered = "", True
        for call in calls:
            out += self._start(t.tool_use(call, streamed=True))
            out.append(self._delta({"type": "input_json_delta", "partial_json": t.tool_input_json(call)}))
            out += self.close()
        return out

    def finish(self) -> list[Event]:
        """Close what is open; an answer with neither text nor tool calls still gets its (empty or blank)
        text block, as the non-streamed message has."""
        out = self.close()
        if not self.answered:
            out += self._start({"type": "text", "text": ""})
            if self.held:
                out.append(self._delta({"type": "text_delta", "text": self.held}))
            out += self.close()
        return out


async def message_events(events: AsyncIterator[Any], req: MessagesBody) -> AsyncIterator[Event]:
    """The whole stream of one message, from the engine's (primed) events."""
    yield {"type": "message_start", "message": t.message(t.new_id(), req.model, [], None, None, None)}
    blocks = Blocks()
    try:
        async for event in events:
            out: list[Event] = []
            if isinstance(event, TextDelta):
                out = blocks.text(event.text) if event.text else []
            elif isinstance(event, ThinkingDelta):
                out = blocks.thinking(event.text) if event.text else []
            elif isinstance(event, ToolCalls):
                out = blocks.tool_calls(event.calls)
            elif isinstance(event, Done):
                stop_sequence = event.stop_sequence
                reason = t.stop_reason(event, req.max_tokens, stop_sequence)
                out = [*blocks.finish(),
                       {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": stop_sequence},
                        "usage": t.usage(event)},
                       {"type": "message_stop"}]
            for item in out:
                yield item
    finally:  # a client that went away closes this generator: close the engine's too, which cancels it now
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
