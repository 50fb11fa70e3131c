"""The caller's end of one engine request: its events, sync or async, and cancel()."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

from inferno.engine.types import Done, Embeddings, Ranked, Scores, Tokens


class Failure:
    """A worker's error, carried to the caller's side and raised there."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


FINAL = (Done, Embeddings, Ranked, Tokens, Scores)  # the event that ends each kind of request


class RequestHandle:
    """The caller's end of one request: iterate its events (async or sync), cancel it at any time."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.cancelled = threading.Event()
        self._pending: collections.deque[Any] = collections.deque()
        self._ready = asyncio.Event() if loop else None
        self._waking = False  # a wake of the event loop is on its way: events put meanwhile ride with it
        self._sq: queue.SimpleQueue[Any] | None = None if loop else queue.SimpleQueue()
        self.finished = False
        self.on_cancel: Callable[[], None] | None = None  # tells the engine (a message to the model's runner)

    def put(self, item: Any) -> None:
        """The engine's side (any thread): an event for the request; a Failure or a final event ends it."""
        if self._sq is not None:
            self._sq.put(item)
            return
        self._pending.append(item)  # before the flag is read: an event is never left without a wake
        if not self._waking:
            # One wake for all the events put before the loop runs it (the items of one frame from the
            # runner): each wake is a write to the loop's self-pipe and a turn of the loop.
            self._waking = True
            assert self.loop is not None
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
                self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        assert self._ready is not None
        self._waking = False
        self._ready.set()

    def cancel(self) -> None:
        if self.cancelled.is_set():
            return
        self.cancelled.set()
        if self.on_cancel is not None and not self.finished:
            self.on_cancel()

    async def _next(self) -> Any:
        assert self._ready is not None, "submitted outside an event loop: iterate synchronously"
        while not self._pending:
            self._ready.clear()
            if self._pending:  # appended between the check and the clear
                break
            await self._ready.wait()
        return self._pending.popleft()

    def _check(self, item: Any) -> Any:
        """Raise a worker's failure; note the final event."""
        if isinstance(item, Failure):
            self.finished = True
            raise item.error
        if isinstance(item, FINAL):
            self.finished = True
        return item

    async def __aiter__(self) -> AsyncGenerator[Any, None]:
        try:
            while not self.finished:
                yield self._check(await self._next())
        finally:
            if not self.finished:  # the consumer went away (client disconnected): stop generating
                self.cancel()

    def __iter__(self) -> Iterator[Any]:
        assert self._sq is not None, "submitted inside an event loop: iterate with async for"
        try:
            while not self.finished:
                yield self._check(self._sq.get())
        finally:
            if not self.finished:
                self.cancel()

    async def result(self) -> list[Any]:
        return [e async for e in self]

    async def primed(self) -> AsyncGenerator[Any, None]:
        """Wait for the first event, then stream: errors before any output (an unknown model, a prompt
        too long, a load failure) raise here, while the caller can still answer with a proper status."""
        it = self.__aiter__()
        try:
            first = await it.__anext__()
        except BaseException:
            await it.aclose()
            raise

        async def rest() -> AsyncGenerator[Any, None]:
            try:
                yield first
                async for item in it:
                    yield item
            finally:
                await it.aclose()

        return rest()
