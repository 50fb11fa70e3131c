"""The prompt cache on disk: what the RAM prompt cache keeps, also written to files, so a restart keeps it.

Each entry is two files in a folder of its own per model and setting (`key`): `<id>.bin`, a sequence's state as
llama.cpp's llama_state_seq_get_data wrote it, and `<id>.json`, its tokens and the bin's size and sha256. Both
are written to a temporary name and renamed into place, the JSON last, so a reader sees whole entries or none.
An entry is read back only when its JSON parses, its bin has that size and hash, and llama.cpp takes it; else
both files are removed and the prompt is evaluated as if nothing was there. The key covers what makes a state
valid for a context: the model file (path, size, modification time), the llama.cpp build, the KV cache type,
flash attention, the per-slot layout and the context options; another setting writes into another folder.
The folder is bounded in bytes: the least recently used entries go first. Writes happen on a thread of their
own (a state can be hundreds of MiB); only the decode thread calls the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inferno.engine.model import Model

log = logging.getLogger("inferno.engine")

FORMAT = 1  # bumped when the files' layout changes: older folders are then another key


def state_buffer(size: int) -> Any:
    """A ctypes byte array for a sequence's state, in an anonymous mapping of its own: once the array is gone, so
    are its pages. From malloc, glibc serves blocks of this size from its heap as soon as one has been freed (its
    mmap threshold grows to the largest block freed), and the heap keeps the pages of evicted states: the runner
    grew by 1.3x the RAM cache's bound (benchmarks/cache_memory.py). The array keeps the mapping alive."""
    import ctypes
    import mmap

    return (ctypes.c_uint8 * size).from_buffer(mmap.mmap(-1, size))


def cache_key(model_file: Path, setting: dict[str, Any]) -> str:
    import llama_cpp

    st = model_file.stat()
    ident = {"format": FORMAT, "model": str(model_file.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns,
             "llama_cpp": llama_cpp.__version__, **setting}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def disk_cache(model: Model, unified: bool, n_ctx: int, chunk: int) -> DiskCache | None:
    """The model's disk cache for this context's setting, or None (off, or its folder cannot be made)."""
    settings = model.settings
    if not settings.prompt_cache_dir:
        return None
    setting = {"kv": settings.kv_cache_type, "flash": model.flash(), "unified": unified, "n_ctx": n_ctx,
               "chunk": chunk, "cuts": "turn ends", "options": model.options.model_dump(exclude_none=True, mode="json")}
    try:
        return DiskCache(Path(settings.prompt_cache_dir), cache_key(model.path, setting),
                         settings.prompt_cache_bytes)
    except OSError as e:
        log.warning("the prompt cache folder %s is unusable (%s): no disk cache", settings.prompt_cache_dir, e)
        return None


class DiskCache:
    def __init__(self, root: Path, key: str, limit: int) -> None:
        self.dir, self.limit = root / key, limit
        self.dir.mkdir(parents=True, exist_ok=True)
        # id → (tokens, exact); the writer thread removes entries too: readers iterate over a copy
        self.index: dict[str, tuple[list[int], int]] = {}
        for meta in sorted(self.dir.glob("*.json")):
            try:
                m = json.loads(meta.read_text())
                self.index[meta.stem] = ([int(t) for t in m["tokens"]], int(m["exact"]))
            except (OSError, ValueError, KeyError, TypeError):
                self._remove(meta.stem)
        for tmp in self.dir.glob(".tmp-*"):  # a write that a crash cut short
            tmp.unlink(missing_ok=True)
        self._writes: queue.SimpleQueue[tuple[str, list[int], int, Any] | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="inferno-prompt-cache", daemon=True)
        self._writer.start()

    def put(self, tokens: list[int], exact: int, data: Any) -> str:
        """Queue an entry for writing; its id (known to the index at once)."""
        ident = hashlib.sha256(json.dumps(tokens[:exact]).encode()).hexdigest()[:32]
        if ident not in self.index:
            self.index[ident] = (list(tokens), exact)
            self._writes.put((ident, list(tokens), exact, data))
        return ident

    def load(self, ident: str) -> Any | None:
        """The entry's state (a state_buffer), checked; None (and the entry removed) when it is not whole and
        unchanged."""
        try:
            meta = json.loads((self.dir / f"{ident}.json").read_text())
            path = self.dir / f"{ident}.bin"
            size = path.stat().st_size
            if size <= 0 or size != meta["size"]:
                raise ValueError("size")
            data = state_buffer(size)
            with path.open("rb") as f:
                if f.readinto(data) != size or hashlib.sha256(data).hexdigest() != meta["sha256"]:
                    raise ValueError("size or checksum")
            os.utime(self.dir / f"{ident}.json")  # recently used
            return data
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("prompt cache entry %s is unusable (%s): removed", ident, e)
            self.forget(ident)
            return None

    def forget(self, ident: str) -> None:
        self.index.pop(ident, None)
        self._remove(ident)

    def close(self) -> None:
        """Finish the queued writes."""
        self._writes.put(None)
        self._writer.join()

    def _write_loop(self) -> None:
        while (item := self._writes.get()) is not None:
            ident, tokens, exact, data = item
            try:
                self._write(ident, tokens, exact, memoryview(data).cast("B"))
                self._bound()
            except OSError as e:  # a full disk costs the cache entry, nothing else
                log.warning("prompt cache: could not write an entry (%s)", e)
                self.index.pop(ident, None)
                self._remove(ident)

    def _write(self, ident: str, tokens: list[int], exact: int, data: memoryview) -> None:
        meta = {"tokens": tokens, "exact": exact, "size": data.nbytes, "sha256": hashlib.sha256(data).hexdigest()}
        for suffix, content in ((".bin", data), (".json", json.dumps(meta).encode())):  # the JSON last
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.dir)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(content)
                os.replace(tmp, self.dir / f"{ident}{suffix}")
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    def _bound(self) -> None:
        entries = []
        for meta in self.dir.glob("*.json"):
            with contextlib.suppress(OSError):
                size = meta.stat().st_size + (self.dir / f"{meta.stem}.bin").stat().st_size
                entries.append((meta.stat().st_mtime, meta.stem, size))
        total = sum(size for _, _, size in entries)
        for _, ident, size in sorted(entries):  # oldest first
            if total <= self.limit:
                break
            self.index.pop(ident, None)
            self._remove(ident)
            total -= size

    def _remove(self, ident: str) -> None:
        for suffix in (".json", ".bin"):
            (self.dir / f"{ident}{suffix}").unlink(missing_ok=True)
