"""The host's view of the llama.cpp RPC workers (settings.rpc_servers) its runners are split over.

A worker is connected (a live runner holds a connection to it), ready (it answers a TCP connect) or gone (and
why). The host never talks RPC itself: it reads the runners' connections from Linux's /proc (a connection whose
far end closed sits in CLOSE_WAIT), and after a runner's death it probes the workers that runner used to tell
which one went. Kept free of llama_cpp.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import dataclass

from inferno.engine.rpc import probe
from inferno.errors import UnavailableError

PROBE_EVERY = 5.0  # seconds a probe result of an idle worker is reused (health checks poll often)
_CLOSE_WAIT = "08"


@dataclass
class _Worker:
    state: str = "unknown"  # connected | ready | gone
    error: str | None = None
    checked: float = 0.0


def _hex_address(endpoint: str) -> str | None:
    """host:port as /proc/net/tcp spells the remote end (little-endian IPv4 : port, hex)."""
    host, _, port = endpoint.rpartition(":")
    try:
        packed = socket.inet_aton(socket.gethostbyname(host))
    except OSError:
        return None
    return f"{int.from_bytes(packed, 'little'):08X}:{int(port):04X}"


def closed_connections(pid: int, endpoint: str) -> bool:
    """Process pid holds a TCP connection to endpoint that the far end closed (Linux; elsewhere False)."""
    target = _hex_address(endpoint)
    if target is None:
        return False
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    if not inodes:
        return False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if len(cols) > 9 and cols[2] == target and cols[3] == _CLOSE_WAIT and cols[9] in inodes:
                return True
    return False


class RpcWatch:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.workers: dict[str, _Worker] = {}

    def _mark(self, ep: str, state: str, error: str | None) -> None:
        with self.lock:
            w = self.workers.setdefault(ep, _Worker())
            keep = state == "gone" and w.state == "gone" and (w.error or "").startswith("lost")
            w.state, w.checked = state, time.monotonic()
            if not keep:  # "lost: why" stays until the worker is seen again
                w.error = error

    def lost(self, endpoints: list[str], names: list[str], detail: str) -> UnavailableError | None:
        """A runner split over endpoints died (or was ended): the worker that is gone now, as its models' error;
        None when every worker still answers (the death was the runner's own)."""
        gone = [ep for ep in endpoints if probe(ep) is not None]
        for ep in endpoints:
            if ep in gone:
                self._mark(ep, "gone", f"lost: {detail}")
            else:
                self._mark(ep, "ready", None)
        if not gone:
            return None
        who = ", ".join(gone)
        return UnavailableError(f"RPC worker {who} is gone ({detail}); {', '.join(sorted(names))} will load again "
                                "on the next request once the worker is back")

    def status(self, endpoints: tuple[str, ...], held: dict[str, list[int]]) -> tuple[list[dict[str, object]],
                                                                                       dict[str, str]]:
        """Each worker's row, and the workers found closed under a live runner (endpoint -> why): held maps an
        endpoint to the runner processes connected to it."""
        rows, closed = [], {}
        for ep in endpoints:
            pids = held.get(ep, [])
            if pids and any(closed_connections(pid, ep) for pid in pids):
                closed[ep] = "the worker closed its connection"
                self._mark(ep, "gone", f"lost: {closed[ep]}")
            elif pids:
                self._mark(ep, "connected", None)
            else:
                with self.lock:
                    w = self.workers.setdefault(ep, _Worker())
                    fresh = w.state != "connected" and time.monotonic() - w.checked < PROBE_EVERY
                if not fresh:
                    why = probe(ep)
                    self._mark(ep, "ready" if why is None else "gone", None if why is None else f"unreachable: {why}")
            with self.lock:
                w = self.workers[ep]
                rows.append({"endpoint": ep, "state": w.state, "error": w.error})
        return rows, closed
