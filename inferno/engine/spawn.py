"""Starting runner processes (inferno.engine.runner), with one started ahead of need.

A runner's interpreter and its imports (llama-cpp-python with numpy, pydantic, Inferno's engine) take about
0.4 s of a model's load on two cores, longer than llama.cpp's own load of a small model. The spawner keeps one
spare runner that has done all of that and waits for its ("start", …) frame, so a model's load waits only for
llama.cpp: the first load after `inferno serve` and every reload after a crash. The spare is replaced in the
background once it is taken (by a thread of its own: Linux's PR_SET_PDEATHSIG ends a child when the *thread*
that started it ends, so runners are started only by threads that outlive them).

A spare started under other environment variables than the host has now (a test's INFERNO_TEST_FAULT, a GGML
variable) is not used: llama.cpp reads some of them at import.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection

log = logging.getLogger("inferno.engine")


def runner_env() -> dict[str, str]:
    env = dict(os.environ)
    if os.environ.get("INFERNO_DEBUG", "") in ("", "0", "false"):
        env.setdefault("GGML_NO_BACKTRACE", "1")  # ggml's gdb backtrace of a fault takes seconds
    return env


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    conn: Connection
    env: dict[str, str]


def launch(env: dict[str, str]) -> Started:
    """A runner process and the host's end of its socket (raises OSError)."""
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "inferno.engine.runner", str(theirs.fileno()),
                                 str(os.getpid())], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    return Started(proc, Connection(ours.detach()), env)


class Spawner:
    """Runner processes for the scheduler's proxies; with `spare`, one is kept started ahead."""

    def __init__(self, spare: bool) -> None:
        self.cv = threading.Condition()
        self.spare: Started | None = None
        self.needed = spare  # start a spare when there is none
        self.closed = False
        if spare:
            threading.Thread(target=self._keep_spare, name="inferno-spawner", daemon=True).start()

    def take(self) -> Started:
        """A runner for a model about to load: the spare if it is alive and current, else a new one (OSError).
        The next spare is started on `refill`, once the model has loaded: on two cores, its imports would slow
        the load that is waited for."""
        env = runner_env()
        with self.cv:
            spare, self.spare = self.spare, None
        if spare is not None:
            if spare.proc.poll() is None and spare.env == env:
                return spare
            discard(spare)
        return launch(env)

    def state(self) -> str | None:
        """The spare runner: "ready" (its imports done: its "ready" frame waits unread on the socket), "starting",
        or None (none kept, or taken and not yet replaced)."""
        with self.cv:
            spare = self.spare
        if spare is None:
            return None
        try:
            return "ready" if spare.conn.poll(0) else "starting"
        except OSError:  # taken and closed meanwhile
            return None

    def refill(self) -> None:
        with self.cv:
            self.needed = True
            self.cv.notify_all()

    def close(self) -> None:
        with self.cv:
            self.closed = True
            spare, self.spare = self.spare, None
            self.cv.notify_all()
        if spare is not None:
            discard(spare)

    def _keep_spare(self) -> None:
        while True:
            with self.cv:
                while not self.closed and not (self.needed and self.spare is None):
                    self.cv.wait()
                if self.closed:
                    return
                self.needed = False
            try:
                started = launch(runner_env())
            except OSError as e:
                log.warning("cannot start a spare engine process: %s", e)
                continue
            with self.cv:
                if not self.closed:
                    self.spare, started = started, None
            if started is not None:
                discard(started)


def discard(started: Started) -> None:
    """End an unused runner: closing its socket is its end of file."""
    started.conn.close()
    try:
        started.proc.wait(5)
    except subprocess.TimeoutExpired:
        started.proc.kill()
        started.proc.wait()
    if started.proc.stdout is not None:
        started.proc.stdout.close()
