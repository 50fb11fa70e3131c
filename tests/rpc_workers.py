"""Real `inferno rpc-worker` processes on loopback for the RPC tests."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from .conftest import free_port, wait_for


class RpcWorker:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.endpoint = f"127.0.0.1:{port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def rss(self) -> int:
        """Resident memory in bytes (what the worker holds of the models it serves)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode


def start_worker(folder: Path, port: int | None = None, *args: str) -> RpcWorker:
    """A worker serving this machine's CPU with one thread; returns once it listens."""
    port = port or free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"rpc-worker-{port}.log"
    # a worker started again on its port appends to its log: wait for a "serving" line of its own
    before = log.read_text(errors="replace").count("inferno rpc-worker: serving") if log.exists() else 0
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "inferno", "rpc-worker", "--port", str(port), "--threads", "1",
                                 *args], stdout=out, stderr=subprocess.STDOUT)
    worker = RpcWorker(proc, port, log)
    wait_for(lambda: proc.poll() is not None or worker.output().count("inferno rpc-worker: serving") > before,
             f"rpc-worker on port {port} to listen")
    if proc.poll() is not None:
        raise AssertionError(f"rpc-worker exited: {worker.output()[-2000:]}")
    return worker
