"""Start a real `inferno serve` (or any server with a /health route) and wait until it answers.

The one start-and-wait helper behind the pytest plugin's `inferno_server` fixture, the project's own test
fixtures, the examples' tests and the benchmarks. It waits on the server's own signal (/health answering 200)
or its exit, with a deadline only as a backstop; a server that does not come up is an error, never a silent
fall-through.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

POLL_S = 0.1  # between two /health probes, whatever they answered (503 while a peer loads its model)


@dataclass
class RunningServer:
    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.process


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0,
                 log: Path | None = None) -> None:
    """Block until GET url/health answers 200; RuntimeError if the process exits or the deadline passes."""
    import httpx

    def tail() -> str:
        return log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}: {tail()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{url}: no answer on /health within {timeout:.0f} s: {tail()}")
        time.sleep(POLL_S)


def start_inferno(home: Path, *, args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                  timeout: float = 60.0, keep_inferno_env: bool = False) -> RunningServer:
    """`inferno serve ARGS` with INFERNO_HOME=home on a free loopback port, its output in home/server-PORT.log.

    The caller's INFERNO_* variables are dropped (unless keep_inferno_env) so a developer's own settings never
    leak into a test; `env` adds or overrides variables."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if keep_inferno_env or not k.startswith("INFERNO_")}
    full.update({"INFERNO_HOME": str(home), "INFERNO_HOST": f"127.0.0.1:{port}", **(env or {})})
    home.mkdir(parents=True, exist_ok=True)
    log = home / f"server-{port}.log"
    process = subprocess.Popen([sys.executable, "-m", "inferno", "serve", *args], env=full,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = RunningServer(f"http://127.0.0.1:{port}", home, process, log)
    wait_healthy(server.url, process, timeout, log)
    return server


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM (a graceful shutdown), SIGKILL if it has not ended within timeout; the exit status."""
    process.terminate()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
