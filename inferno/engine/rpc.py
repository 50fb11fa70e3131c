"""A model split over llama.cpp RPC workers: the workers become devices, and a worker that dies is survived.

Registering: for each worker (host:port) llama.cpp's RPC backend is found in ggml's registry and its
`ggml_backend_rpc_add_server` gives the worker's devices, as `llama-server --rpc` does; they are handed to the
model as its devices (llama_model_params.devices), not registered globally, so a model loaded with
n_gpu_layers 0 never touches a worker. One backend per device stays open while any model uses the workers: it
holds llama.cpp's connection to the worker, so loading, decoding and freeing never reconnect.

A worker that dies. ggml-rpc (this llama.cpp) has no error path: a failed round trip calls GGML_ABORT, which
calls ggml's abort callback and then abort(). Our callback never returns to it: on the connection's own thread
it records which worker failed (each connection thread is known by its id), fails every request of every model
using the workers with one clear error, takes those models out of service, closes this process's connections to
the other workers (they free their share at once) and then parks that thread forever. The thread that was
decoding waits forever on the parked one: it, its model and its context are never touched again (a leak of the
model's local share, by design: freeing them would block on the dead connection). The next request loads the
model afresh over new connections; llama.cpp caches connections by their "host:port" text, so each new
generation of connections spells the port with a "/N" suffix (ggml reads the port with std::stoi and stops at
the "/"). A failure while a worker is being registered can leave llama.cpp's registry mutexes held: later loads
then say so and ask for a restart.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from inferno.engine import devices
from inferno.errors import InfernoError, ModelLoadError, UnavailableError

log = logging.getLogger("inferno.engine")

PROBE_TIMEOUT = 2.0  # seconds for a TCP connect to a worker
PROBE_EVERY = 5.0  # seconds a probe result of an idle worker is reused (health checks poll often)
REGISTER_WAIT = 120.0  # seconds a load waits for another load's registration (a worker busy with another client)

_ADD_SERVER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)
_ABORT = ctypes.CFUNCTYPE(None, ctypes.c_char_p)


class User(Protocol):
    name: str

    def abandon(self, error: InfernoError) -> None: ...


@dataclass
class _Generation:
    number: int
    devices: dict[str, list[int]] = field(default_factory=dict)  # endpoint -> its device handles
    pins: dict[str, list[int]] = field(default_factory=dict)  # endpoint -> open backends (hold the connection)
    threads: dict[int, str] = field(default_factory=dict)  # native thread id of a connection -> endpoint

    def spelled(self, endpoint: str) -> str:
        return endpoint if self.number == 0 else f"{endpoint}/{self.number}"


@dataclass
class _Worker:
    state: str = "unknown"  # connected | ready | gone
    error: str | None = None
    checked: float = 0.0


def plain(text: str) -> str:
    """llama.cpp's text with our connection generations taken out (host:port/3 -> host:port)."""
    return re.sub(r"(:\d+)/\d+", r"\1", text)


def probe(endpoint: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when a TCP connection to the worker opens, else why not."""
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return None
    except ConnectionRefusedError:
        return "connection refused"
    except socket.gaierror as e:
        return f"cannot resolve {host}: {e.strerror}"
    except TimeoutError:
        return f"no answer in {timeout:g} s"
    except OSError as e:
        return e.strerror or str(e)


def _our_sockets(endpoints: list[str]) -> list[socket.socket]:
    """This process's TCP connections to these workers (dups of llama.cpp's sockets; close them after use).
    Linux only (/proc); elsewhere none are found."""
    targets: set[tuple[str, int]] = set()
    for ep in endpoints:
        host, _, port = ep.rpartition(":")
        with contextlib.suppress(OSError):
            targets.add((socket.gethostbyname(host), int(port)))
    found = []
    with contextlib.suppress(OSError):
        for fd in os.listdir("/proc/self/fd"):
            try:
                if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                    continue
                s = socket.socket(fileno=os.dup(int(fd)))
            except (OSError, ValueError):
                continue
            try:
                if s.family == socket.AF_INET and s.type == socket.SOCK_STREAM and s.getpeername() in targets:
                    found.append(s)
                    continue
            except OSError:
                pass
            s.close()
    return found


def _peer_closed(endpoint: str) -> bool:
    """Our connection to the worker was closed by its end (the worker is gone) — looked at without reading."""
    closed = False
    for s in _our_sockets([endpoint]):
        try:
            closed |= s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed = True
        finally:
            s.close()
    return closed


def _threads() -> set[int]:
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()


class RpcPool:
    """The RPC workers of this process (llama.cpp's RPC state is per process, so this is one object)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # state below; never held across a call into llama.cpp
        self.reg_lock = threading.Lock()  # registering and tearing down connections
        self.gen = _Generation(0)
        self.users: set[Any] = set()
        self.workers: dict[str, _Worker] = {}
        self.registering: tuple[int, str] | None = None  # (native thread id, endpoint) while registering
        self.wedged: str | None = None
        self.leaked: list[Any] = []  # what abandoned models hold: kept referenced so that nothing frees it
        self.old_threads: set[int] = set()  # connection threads of generations given up (they live on, parked)
        self._guard: Any = None

    # loading ----------------------------------------------------------------------------------------------

    def acquire(self, user: User) -> None:
        with self.lock:
            self.users.add(user)

    def release(self, user: User) -> None:
        """The user unloaded; with no user left the connections close, so the workers serve other clients."""
        with self.lock:
            self.users.discard(user)
            if self.users:
                return
        if not self.reg_lock.acquire(timeout=REGISTER_WAIT):
            return
        try:
            with self.lock:
                if self.users:
                    return
                gen = self.gen
                pins = [b for bs in gen.pins.values() for b in bs]
                gen.pins, gen.devices, gen.threads = {}, {}, {}
                for w in self.workers.values():
                    if w.state == "connected":
                        w.state, w.checked = "ready", 0.0
            for b in pins:
                devices.ggml().ggml_backend_free(b)
        finally:
            self.reg_lock.release()

    def devices(self, endpoints: tuple[str, ...]) -> list[int]:
        """The device handles of these workers, in order, connecting to those not connected yet."""
        if not devices.rpc_supported():
            raise UnavailableError(devices.RPC_REBUILD)
        self._install_guard()
        if self.wedged:
            raise UnavailableError(f"llama.cpp's RPC registry is stuck since a worker failed while it was being "
                                   f"connected ({self.wedged}); restart the server")
        if not self.reg_lock.acquire(timeout=REGISTER_WAIT):
            raise UnavailableError("RPC workers are still being connected for another model (is a worker serving "
                                   "another client? a worker serves one at a time)")
        try:
            out: list[int] = []
            for ep in endpoints:
                if ep not in self.gen.devices:
                    self._connect(self.gen, ep)
                out += self.gen.devices[ep]
            return out
        finally:
            self.reg_lock.release()

    def _connect(self, gen: _Generation, ep: str) -> None:
        why = probe(ep)
        if why is not None:
            self._mark(ep, "gone", f"unreachable: {why}")
            raise UnavailableError(f"RPC worker {ep} is unreachable ({why}); start it with `inferno rpc-worker` "
                                   "on that machine")
        g = devices.ggml()
        reg = g.ggml_backend_reg_by_name(b"RPC")
        address = g.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_rpc_add_server") if reg else None
        if not address:
            raise UnavailableError(devices.RPC_REBUILD)
        before = _threads()
        self.registering = (threading.get_native_id(), ep)
        pins: list[int] = []
        try:
            found = _ADD_SERVER(address)(gen.spelled(ep).encode())
            if not found:
                raise ModelLoadError(f"RPC worker {ep} offers no device")
            devs = [g.ggml_backend_reg_dev_get(found, i) for i in range(g.ggml_backend_reg_dev_count(found))]
            for d in devs:
                backend = g.ggml_backend_dev_init(d, None)
                if not backend:
                    raise ModelLoadError(f"RPC worker {ep}: cannot open its device {devices.dev_name(d)}")
                pins.append(backend)
                g.ggml_backend_dev_buffer_type(d)  # its first use asks the worker, under a llama.cpp mutex
        except BaseException:
            for b in pins:
                g.ggml_backend_free(b)
            raise
        finally:
            self.registering = None
        with self.lock:
            gen.devices[ep], gen.pins[ep] = devs, pins
            for tid in _threads() - before:
                gen.threads[tid] = ep
        self._mark(ep, "connected", None)
        log.info("RPC worker %s: %s", ep, ", ".join(devices.dev_name(d) for d in devs))

    def _mark(self, ep: str, state: str, error: str | None) -> None:
        with self.lock:
            w = self.workers.setdefault(ep, _Worker())
            keep = state == "gone" and w.state == "gone" and (w.error or "").startswith("lost")
            w.state, w.checked = state, time.monotonic()
            if not keep:  # "lost: why" stays until the worker is seen again
                w.error = error

    # a worker that dies -----------------------------------------------------------------------------------

    def _install_guard(self) -> None:
        if not os.path.isdir("/proc/self/task"):
            return  # telling connections apart needs Linux's /proc: elsewhere llama.cpp aborts, as it always did
        with self.lock:
            if self._guard is not None:
                return
            self._guard = _ABORT(self._on_abort)
        devices.ggml().ggml_set_abort_callback(ctypes.cast(self._guard, ctypes.c_void_p))

    def _on_abort(self, message: bytes | None) -> None:
        text = (message or b"").decode("utf-8", errors="replace").strip()
        if "ggml-rpc" not in text:
            sys.stderr.write(f"{text}\n")  # what llama.cpp prints; abort() follows, as it always did
            sys.stderr.flush()
            return
        try:
            self.lost(text, threading.get_native_id())
        except BaseException:
            log.exception("handling a lost RPC worker")
        threading.Event().wait()  # never return: llama.cpp would abort() the whole server

    def lost(self, message: str, tid: int | None = None, endpoint: str | None = None,
             number: int | None = None) -> None:
        """A connection failed (on thread tid), or a worker was seen gone (endpoint, in generation number)."""
        detail = plain(message.split(": ", 1)[-1].strip()) if ": " in message else plain(message)
        with self.lock:
            gen = self.gen
            if tid is not None:
                endpoint = gen.threads.get(tid)
                if endpoint is None and tid not in self.old_threads and self.registering is not None:
                    endpoint = self.registering[1]
                    self.wedged = f"{endpoint}: {detail}"
            elif number != gen.number:
                return
            if endpoint is None:
                return  # a connection of a generation already given up: nothing more to do
            wedged = self.wedged is not None
        log.error("RPC worker %s failed: %s", endpoint, detail)
        if wedged:  # the registering thread holds reg_lock forever: do what can be done without it
            self._give_up(gen, endpoint, detail)
            return
        with self.reg_lock:
            self._give_up(gen, endpoint, detail)

    def _give_up(self, gen: _Generation, endpoint: str, detail: str) -> None:
        with self.lock:
            if self.gen is not gen:
                return
            self.gen = _Generation(gen.number + 1)
            users, self.users = list(self.users), set()
            self.leaked.append(gen)  # its open backends stay open: closing them would block on the dead one
            self.old_threads.update(gen.threads)
            for ep in gen.devices:
                if ep != endpoint:
                    w = self.workers.setdefault(ep, _Worker())
                    w.state, w.checked = "ready", 0.0  # probed again by the next status
        self._mark(endpoint, "gone", f"lost: {detail}")
        for s in _our_sockets(list(gen.devices)):  # the living workers free their share of the models now
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        names = ", ".join(sorted({u.name for u in users})) or "no model"
        error = UnavailableError(f"RPC worker {endpoint} is gone ({detail}); {names} will load again on the next "
                                 "request once the worker is back")
        for u in users:
            try:
                u.abandon(error)
            except Exception:
                log.exception("abandoning %s", u.name)

    def keep(self, *objects: Any) -> None:
        """Never free these (an abandoned model's weights, contexts…): their connections are dead."""
        with self.lock:
            self.leaked.extend(o for o in objects if o is not None)

    # health -----------------------------------------------------------------------------------------------

    def status(self, endpoints: tuple[str, ...]) -> list[dict[str, Any]]:
        """Each worker: connected (a model uses it), ready (reachable), gone (with why). A connection a worker
        closed while its model was idle is found here, and the model is taken out of service as on a failure."""
        rows = []
        for ep in endpoints:
            with self.lock:
                number, connected = self.gen.number, ep in self.gen.devices
                w = self.workers.setdefault(ep, _Worker())
                fresh = time.monotonic() - w.checked < PROBE_EVERY
            if connected and _peer_closed(ep):
                self.lost("the worker closed its connection", endpoint=ep, number=number)
            elif not connected and not fresh:
                why = probe(ep)
                self._mark(ep, "ready" if why is None else "gone", None if why is None else f"unreachable: {why}")
            with self.lock:
                rows.append({"endpoint": ep, "state": w.state, "error": w.error})
        return rows


_pool: RpcPool | None = None
_pool_lock = threading.Lock()


def pool() -> RpcPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = RpcPool()
        return _pool
