"""The host's handles on the runner protocol (inferno.engine.proxy drives them): one request, one runner process."""

from __future__ import annotations

import collections
import itertools
import subprocess
import threading
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from inferno.engine.types import LoadOptions
from inferno.errors import InfernoError

if TYPE_CHECKING:
    from inferno.engine.handle import RequestHandle

TAIL_LINES = 40  # the runner's last stderr lines kept for the log when it dies
_ids = itertools.count(1)


class Job:
    """One request, host side."""

    __slots__ = ("admitted", "emitted", "handle", "id", "keep_alive", "kind", "load", "request", "taken")

    def __init__(self, kind: str, request: Any, load: LoadOptions, keep_alive: float | None,
                 handle: RequestHandle) -> None:
        self.id = next(_ids)
        self.kind, self.request, self.load, self.keep_alive, self.handle = kind, request, load, keep_alive, handle
        self.taken = False  # the runner began it: a crash from now on fails it
        self.admitted = False  # it left the queue (a slot in the batcher, or begun)
        self.emitted = False  # an event reached its caller


class Runner:
    """One runner process as the host holds it: the process, its pipe, and what the host learnt of it."""

    def __init__(self, proc: subprocess.Popen[bytes], conn: Connection, no_repack: bool) -> None:
        self.proc, self.conn, self.no_repack = proc, conn, no_repack
        self.options: LoadOptions | None = None  # what the runner's model was (or is being) loaded with
        self.n_ctx: int | None = None  # that model's context, once its status says (a context not asked is chosen)
        self.extra = False  # llama.cpp placed weights in an extra buffer type
        self.proven = False  # its first decodes went well
        self.stopping = False
        self.endpoints: set[str] = set()  # the RPC workers it holds connections to
        self.end_error: InfernoError | None = None  # the host ended it (its RPC worker is gone): its requests' error
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.tail_thread: threading.Thread | None = None
        self.send_lock = threading.Lock()

    def send(self, frame: tuple[Any, ...]) -> bool:
        with self.send_lock:
            try:
                self.conn.send(frame)
                return True
            except (OSError, EOFError):  # it died: its reader reports that
                return False
