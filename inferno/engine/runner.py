"""A model's runner process (`python -m inferno.engine.runner FD PARENT_PID`): the model's engine, out of the host.

Everything that calls into llama.cpp for a served model runs here: the Worker thread of inferno.engine.worker
(Model, Batcher, Sequence, Embedder, unchanged in shape). The host (inferno.engine.proxy) speaks to it over one
socket of length-prefixed pickle frames (multiprocessing.connection):

  down  ("start", name, ResolvedModel, EngineSettings, fault) once (a spare runner waits for it with its imports
        done: inferno.engine.spawn), then ("job", id, kind, request, LoadOptions),
        ("cancel", id), ("stop",)
  up    (items, snapshot, notes): items [(id, event | Failure | "taken" | "admitted")] made in one turn of the
        decode loop (one decode step; a stream's later tokens may wait for the next turns: Outbox); snapshot
        a LoadedModelInfo when the status changed; notes "extra" (llama.cpp placed weights in an extra buffer
        type), "proven" (the first decodes went well), "warning:TEXT" (a Python warning, shown by the host) and
        "ready" (the first frame, before "start" is read: the imports are done; a spare's waiting frame is what
        tells inferno.engine.spawn that it is ready), sent at once.

The runner dies with its host: PR_SET_PDEATHSIG on Linux, and an end of file on the socket anywhere.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from inferno.engine.handle import FINAL, Failure
from inferno.engine.types import Event, LoadedModelInfo
from inferno.errors import InfernoError


def die_with_parent(parent: int) -> None:
    """Linux: SIGKILL when the host dies (even by kill -9). Elsewhere the socket's end of file does it."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the host died before prctl took effect
        os._exit(0)


HOLD = 0.05  # seconds: a running stream's later tokens leave at most this often (Outbox.send)


class Outbox:
    """What goes up the socket. Items gather during a turn of the decode loop and leave together.

    While the loop keeps stepping, a stream's later tokens wait up to HOLD and leave with those of the next
    steps: each frame wakes the host's reader thread and event loop and makes a write to the client, CPU taken
    from llama.cpp's threads on a small machine (at 100 tokens/s that was ~6 % of the decode on two cores).
    A request's first event, a final one, an error, a status or a note never waits, and nothing waits once the
    loop is about to idle (the worker flushes with hold=False)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.items: list[tuple[int, Any]] = []
        self.decode_thread: int | None = None
        self.streaming: set[int] = set()  # jobs whose first event has left
        self.sent_at = 0.0

    def put(self, jid: int, item: Any) -> None:
        if isinstance(item, Failure) and not isinstance(item.error, InfernoError):
            item = Failure(InfernoError(f"{type(item.error).__name__}: {item.error}"))  # picklable, same words
        with self.lock:
            self.items.append((jid, item))
        if threading.get_ident() != self.decode_thread:  # the embedding thread: its reply leaves now
            self.send(None)

    def send(self, snapshot: LoadedModelInfo | None, notes: tuple[str, ...] = (), *, hold: bool = False) -> None:
        with self.lock:
            now = time.monotonic()
            if (hold and snapshot is None and not notes and now - self.sent_at < HOLD
                    and all(jid in self.streaming and isinstance(item, Event) and not isinstance(item, FINAL)
                            for jid, item in self.items)):
                return
            items, self.items = self.items, []
            if not items and snapshot is None and not notes:
                return
            for jid, item in items:
                if isinstance(item, (Failure, *FINAL)):
                    self.streaming.discard(jid)
                elif isinstance(item, Event):
                    self.streaming.add(jid)
            self.sent_at = now
            try:
                self.conn.send((items, snapshot, notes))
            except (OSError, EOFError):
                os._exit(0)  # the host is gone


class RemoteReply:
    """A job's Reply (inferno.engine.worker): its events go to the host through the outbox."""

    def __init__(self, jid: int, outbox: Outbox, replies: dict[int, RemoteReply]) -> None:
        self.jid, self.outbox, self.replies = jid, outbox, replies
        self.cancelled = threading.Event()

    def put(self, item: Any) -> None:
        if isinstance(item, (Failure, *FINAL)):
            self.replies.pop(self.jid, None)
        self.outbox.put(self.jid, item)

    def taken(self) -> None:
        self.outbox.put(self.jid, "taken")
        self.outbox.send(None)  # now: if this request takes the process down, the host must know it was this one

    def admitted(self) -> None:
        self.outbox.put(self.jid, "admitted")


def _watch_buffers(outbox: Outbox) -> None:
    """Tell the host at once when llama.cpp places weights in an extra buffer type: if the process dies right
    after (llama.cpp#20824), the host knows the repacked weights were in play."""
    from inferno.engine import devices

    told = False

    def listen(level: int, line: str) -> None:
        nonlocal told
        name = devices.buffer_name(line)
        if not told and name is not None and devices.extra_buffers([name]):
            told = True
            outbox.send(None, ("extra",))

    devices.listeners.append(listen)


class _Warnings(logging.Handler):
    """Python warnings made here (an n_ctx above the trained length…) are the host's to show."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__()
        self.outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        first = record.getMessage().splitlines()[0]  # "FILE:LINE: Category: message"
        found = re.search(r":\d+: \w+: (.*)$", first)
        self.outbox.send(None, (f"warning:{found.group(1) if found else first}",))


def _forward_warnings(outbox: Outbox) -> None:
    logging.captureWarnings(True)
    py = logging.getLogger("py.warnings")
    py.addHandler(_Warnings(outbox))
    py.propagate = False


def _warm() -> None:
    """What every model's load imports, done before the start frame arrives: a spare runner
    (inferno.engine.spawn) has it behind it when it is taken. A failure here is the load's to report."""
    try:
        import inferno.engine.batcher  # noqa: F401
        from inferno.engine.model import import_llama

        import_llama()
        from llama_cpp import _internals  # noqa: F401 (numpy)
    except Exception:
        pass


def serve(conn: Connection) -> None:
    from inferno.engine.worker import STOP, Job, Worker

    _warm()
    conn.send(([], None, ("ready",)))
    _, name, resolved, settings, fault = conn.recv()
    outbox = Outbox(conn)
    _watch_buffers(outbox)
    _forward_warnings(outbox)
    replies: dict[int, RemoteReply] = {}
    worker = Worker(name, resolved, settings, flush=outbox.send, note=lambda n: outbox.send(None, (n,)),
                    fault=fault)
    outbox.decode_thread = worker.thread.ident
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            os._exit(0)  # the host is gone: nobody to answer
        if msg[0] == "job":
            _, jid, kind, request, load = msg
            reply = replies[jid] = RemoteReply(jid, outbox, replies)
            worker.jobs.put(Job(kind, request, load, reply))
        elif msg[0] == "cancel":
            reply = replies.get(msg[1])
            if reply is not None:
                reply.cancelled.set()
        elif msg[0] == "stop":
            worker.jobs.put(STOP)
            worker.thread.join()
            outbox.send(None)
            return


def main(argv: list[str]) -> None:
    fd, parent = int(argv[0]), int(argv[1])
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the host decides
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    conn = Connection(fd)
    try:
        serve(conn)
    finally:
        conn.close()
    sys.stderr.flush()
    os._exit(0)  # llama.cpp's objects are freed by the worker; skip interpreter teardown of ctypes state


if __name__ == "__main__":
    main(sys.argv[1:])
