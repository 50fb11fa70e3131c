"""Long work behind Ollama's pull and create: run in a thread, its progress streamed as Ollama's status lines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from inferno.api import layer_of

from .routes import ndjson_stream


async def run_with_progress(work: Any) -> AsyncIterator[dict[str, Any]]:
    """Run work(progress) in a thread; yield its progress as Ollama status objects, then success."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[Any] = asyncio.Queue()
    last: dict[str, Any] = {}

    def progress(completed: int, total: int | None, status: str) -> None:
        if status == "success":
            return
        shown, digest = layer_of(status)  # a layer's download: Ollama's `pulling <short>` line with its digest
        item: dict[str, Any] = {"status": shown}
        if digest:
            item["digest"] = digest
        if total:
            item.update(total=total, completed=completed)
        loop.call_soon_threadsafe(q.put_nowait, item)

    task = asyncio.ensure_future(asyncio.to_thread(work, progress))
    task.add_done_callback(lambda _: q.put_nowait(None))
    yield {"status": "pulling manifest"}
    while (item := await q.get()) is not None:
        total, done = item.get("total"), item.get("completed", 0)
        if total and last.get("status") == item["status"] and done < total and \
                done - last.get("completed", 0) < total / 200:
            continue  # thin out byte-level progress: about 200 lines per phase is plenty
        last = item
        yield item
    await task  # re-raises the work's error
    yield {"status": "success"}


async def stream_or_last(stream: bool, statuses: AsyncIterator[dict[str, Any]]) -> Any:
    if stream:
        return ndjson_stream(statuses)
    last: dict[str, Any] = {}
    async for item in statuses:
        last = item
    return last
