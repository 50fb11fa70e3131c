"""The official event sequence of a streamed response, built from the engine's events.

created → in_progress → for each output item: output_item.added → (content_part.added → text deltas → text
done → content_part.done | function_call_arguments delta → done) → output_item.done → completed (or incomplete
when max_output_tokens cut it) with usage. A thinking model's reasoning is a `reasoning` item before the
message, streamed the same way with reasoning_text events. Every event has its type and a sequence number.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from inferno.api import Done, InfernoError, TextDelta, ThinkingDelta, ToolCall, ToolCalls

from . import translate as t
from .schemas import CreateResponse

Event = dict[str, Any]


def error_event(seq: itertools.count[int]) -> Callable[[InfernoError], Event]:
    """A failure after the stream began: the Responses `error` event."""

    def shape(e: InfernoError) -> Event:
        body = t.error_body(e)["error"]
        return {"type": "error", "sequence_number": next(seq), "code": body["code"], "message": body["message"],
                "param": body["param"]}

    return shape


class _Items:
    """The output so far, and the one text item (reasoning or message) being streamed into."""

    def __init__(self, seq: itertools.count[int]) -> None:
        self.seq = seq
        self.output: list[t.Item] = []
        self.kind = ""  # "reasoning" or "message" while one is open
        self.parts: list[str] = []

    def ev(self, kind: str, **fields: Any) -> Event:
        return {"type": f"response.{kind}", "sequence_number": next(self.seq), **fields}

    def _where(self) -> dict[str, Any]:
        index = len(self.output) - 1
        return {"item_id": self.output[index]["id"], "output_index": index, "content_index": 0}

    def ensure(self, kind: str) -> list[Event]:
        """Open an item of this kind unless it is the open one (closing the other kind first)."""
        return [] if self.kind == kind else [*self.close("completed"), *self._open(kind)]

    def text(self, kind: str, delta: str) -> list[Event]:
        """A piece of reasoning or answer, opening its item first."""
        events = self.ensure(kind)
        self.parts.append(delta)
        if kind == "reasoning":
            events.append(self.ev("reasoning_text.delta", **self._where(), delta=delta))
        else:
            events.append(self.ev("output_text.delta", **self._where(), delta=delta, logprobs=[]))
        return events

    def _open(self, kind: str) -> list[Event]:
        self.kind, self.parts = kind, []
        item = t.reasoning_item("", "in_progress") if kind == "reasoning" else t.message_item("", "in_progress")
        self.output.append(item)
        part = {**item["content"][0]}
        return [self.ev("output_item.added", output_index=len(self.output) - 1, item=item),
                self.ev("content_part.added", **self._where(), part=part)]

    def close(self, status: str) -> list[Event]:
        if not self.kind:
            return []
        where, whole = self._where(), "".join(self.parts)
        item = self.output[-1]
        make = t.reasoning_item if self.kind == "reasoning" else t.message_item
        self.output[-1] = item = make(whole, status, item["id"])
        if self.kind == "reasoning":
            done = self.ev("reasoning_text.done", **where, text=whole)
        else:
            done = self.ev("output_text.done", **where, text=whole, logprobs=[])
        self.kind = ""
        return [done, self.ev("content_part.done", **where, part=item["content"][0]),
                self.ev("output_item.done", output_index=where["output_index"], item=item)]

    def call(self, call: ToolCall) -> list[Event]:
        item = t.call_item(call)
        self.output.append(item)
        index, fid = len(self.output) - 1, item["id"]
        return [self.ev("output_item.added", output_index=index, item={**item, "arguments": "",
                                                                       "status": "in_progress"}),
                self.ev("function_call_arguments.delta", item_id=fid, output_index=index, delta=item["arguments"]),
                self.ev("function_call_arguments.done", item_id=fid, output_index=index, name=call.name,
                        arguments=item["arguments"]),
                self.ev("output_item.done", output_index=index, item=item)]


async def events(source: AsyncIterator[Any], seq: itertools.count[int], rid: str, req: CreateResponse,
                 created: int, save: Callable[[dict[str, Any]], Awaitable[None]] | None) -> AsyncIterator[Event]:
    """One response's events from the engine's; `save` stores the finished response before it is announced."""
    items = _Items(seq)
    yield items.ev("created", response=t.response_object(rid, req, created_at=created))
    yield items.ev("in_progress", response=t.response_object(rid, req, created_at=created))
    calls: list[ToolCall] = []
    done = Done(reason="stop")
    async for event in source:
        if isinstance(event, TextDelta | ThinkingDelta) and event.text:
            for e in items.text("message" if isinstance(event, TextDelta) else "reasoning", event.text):
                yield e
        elif isinstance(event, ToolCalls):
            calls.extend(event.calls)
        elif isinstance(event, Done):
            done = event
    status = t.status_of(done)[0]
    if not calls and not any(i["type"] == "message" for i in items.output) and items.kind != "message":
        for e in items.close(status) + items.ensure("message"):  # no answer at all: still one (empty) message
            yield e
    for e in items.close(status):
        yield e
    for call in calls:
        for e in items.call(call):
            yield e
    final = t.response_object(rid, req, created_at=created, output=items.output, done=done)
    if save is not None:
        await save(final)
    yield items.ev("completed" if final["status"] == "completed" else "incomplete", response=final)
