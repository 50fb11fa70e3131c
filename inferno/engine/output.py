"""Generated text on its way out: held back while it may still become a stop string or a tool call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inferno.engine import chat
from inferno.engine.types import Event, TextDelta


class StreamedText:
    """Streams text, holding back what may be the start of a stop string or of a tool call."""

    def __init__(self, stops: list[str], watch_tools: bool, emit: Callable[[Event], None]) -> None:
        self.stops, self.watch_tools, self.emit = stops, watch_tools, emit
        self.pending = ""  # not yet sent
        self.text = ""  # everything kept so far
        self.capturing = False  # inside what looks like a tool call: keep, do not send
        self.hold = max((len(x) for x in stops), default=1) - 1
        self.stopped_by: str | None = None  # the stop string that ended the text

    def feed(self, piece: str, logprobs: list[dict[str, Any]] | None) -> bool:
        """Add piece; True when a stop string was reached."""
        if not self.stops and not self.watch_tools:  # the common case: nothing to hold back
            if piece or logprobs:
                self.emit(TextDelta(piece, logprobs))
            return False
        self.pending += piece
        found = [(i, stop) for stop in self.stops if (i := self.pending.find(stop)) >= 0]
        if found:  # the earliest stop string in the text ends it
            i, self.stopped_by = min(found, key=lambda f: f[0])
            self.pending = self.pending[:i]
            self._flush(len(self.pending), logprobs)
            return True
        if self.watch_tools and not self.capturing:
            if "<tool_call>" in self.pending:
                self._flush(self.pending.index("<tool_call>"), logprobs)
                self.capturing = True
                return False
            if not self.text.strip():  # nothing said yet: the whole answer may be a call
                stripped = self.pending.lstrip()
                if not stripped or any(m.startswith(stripped) for m in chat.TOOL_MARKERS):
                    return False
                if any(stripped.startswith(m) for m in chat.TOOL_MARKERS):
                    self.capturing = True
                    return False
        if self.capturing:
            return False
        keep = 0
        for stop in self.stops:  # hold back a tail that could grow into a stop string
            for k in range(min(len(stop) - 1, len(self.pending)), 0, -1):
                if stop.startswith(self.pending[-k:]):
                    keep = max(keep, k)
                    break
        if self.watch_tools:
            tail = self.pending[-10:]
            for k in range(min(len(tail), 10), 0, -1):
                if "<tool_call>".startswith(tail[-k:]):
                    keep = max(keep, k)
                    break
        self._flush(len(self.pending) - keep, logprobs)
        return False

    def _flush(self, n: int, logprobs: list[dict[str, Any]] | None) -> None:
        if n <= 0 and not logprobs:
            return
        text, self.pending = self.pending[:n], self.pending[n:]
        self.text += text
        if text or logprobs:
            self.emit(TextDelta(text, logprobs))

    def finish(self, tail: str, tools: list[Any]) -> list[Any]:
        self.pending += tail
        if self.capturing:
            captured = self.pending
            before, calls = chat.parse_tool_calls(captured, tools)
            if calls:
                self.pending = before
                self._flush(len(self.pending), None)
                return calls
        self._flush(len(self.pending), None)
        return []
