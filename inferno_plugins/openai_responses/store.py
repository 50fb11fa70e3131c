"""Stored responses: one JSON file per response under INFERNO_HOME/responses, bounded in count, bytes and age.

A response is written with the host's atomic_write (a temporary file in the same folder renamed over its
name), so a reader, or a restart after a crash, sees a whole record or none. Ids are `resp_` + hex and
nothing else reaches the file system, so no id can name a path outside the folder. The blocking methods are
called off the event loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferno.api import atomic_write

log = logging.getLogger("inferno.responses")
_ID = re.compile(r"resp_[0-9a-f]{16,64}")
_TMP_PREFIX = ".tmp-"  # atomic_write's temporary files


def new_id() -> str:
    return "resp_" + secrets.token_hex(24)


def valid_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Limits:
    max_count: int = 1000
    max_bytes: int = 256 * 1024 * 1024
    max_age: float | None = 30 * 24 * 3600.0  # seconds; None = kept until count or bytes push it out


class ResponseStore:
    """Records by response id. Oldest first out when a limit is passed; expired ones are never returned."""

    def __init__(self, folder: Path, limits: Limits | None = None) -> None:
        self.folder = folder
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        self._index: dict[str, tuple[float, int]] | None = None  # id -> (mtime, bytes), read on first use

    def _path(self, rid: str) -> Path | None:
        return self.folder / f"{rid}.json" if valid_id(rid) else None

    def _load_index(self) -> dict[str, tuple[float, int]]:
        if self._index is None:
            index: dict[str, tuple[float, int]] = {}
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(self.folder):
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat()
                        if entry.name.startswith(_TMP_PREFIX):  # a write a crash interrupted
                            if time.time() - st.st_mtime > 3600:
                                os.unlink(entry.path)
                        elif entry.name.endswith(".json") and valid_id(entry.name[:-5]):
                            index[entry.name[:-5]] = (st.st_mtime, st.st_size)
            self._index = index
        return self._index

    def _expired(self, mtime: float) -> bool:
        return self.limits.max_age is not None and time.time() - mtime > self.limits.max_age

    def get(self, rid: str) -> dict[str, Any] | None:
        path = self._path(rid)
        if path is None:
            return None
        with self._lock:
            entry = self._load_index().get(rid)
            if entry is None:
                return None
            if self._expired(entry[0]):
                self._remove(rid)
                return None
        try:
            record = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:  # not ours or damaged: say so in the log, answer as unknown
            log.warning("stored response %s is unreadable: %s", path, e)
            return None
        return record if isinstance(record, dict) else None

    def put(self, rid: str, record: dict[str, Any]) -> bool:
        """Store a record (False when it alone is larger than the byte limit)."""
        path = self._path(rid)
        if path is None:
            raise ValueError(f"not a response id: {rid!r}")
        data = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
        if len(data) > self.limits.max_bytes:
            log.warning("response %s not stored: %d bytes is over the limit of %d", rid, len(data),
                        self.limits.max_bytes)
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
        with self._lock:
            index = self._load_index()
            index[rid] = (time.time(), len(data))
            self._prune(index)
        return True

    def delete(self, rid: str) -> bool:
        if self._path(rid) is None:
            return False
        with self._lock:
            return self._load_index().get(rid) is not None and self._remove(rid)

    def _remove(self, rid: str) -> bool:
        """Forget one record; the caller holds the lock."""
        assert self._index is not None
        self._index.pop(rid, None)
        path = self._path(rid)
        try:
            if path is not None:
                path.unlink()
        except FileNotFoundError:
            return False
        return True

    def _prune(self, index: dict[str, tuple[float, int]]) -> None:
        oldest_first = sorted(index, key=lambda r: index[r][0])
        total = sum(size for _, size in index.values())
        for rid in oldest_first:
            mtime, size = index[rid]
            if not (self._expired(mtime) or len(index) > self.limits.max_count or total > self.limits.max_bytes):
                break
            self._remove(rid)
            total -= size
