"""A model split over llama.cpp RPC workers: the workers become devices of the model's runner process.

Registering (in the runner): for each worker (host:port) llama.cpp's RPC backend is found in ggml's registry and
its `ggml_backend_rpc_add_server` gives the worker's devices, as `llama-server --rpc` does; they are handed to
the model as its devices (llama_model_params.devices), not registered globally, so a model loaded with
n_gpu_layers 0 never touches a worker. One backend per device stays open while the runner lives: it holds
llama.cpp's connection to the worker, so loading, decoding and freeing never reconnect.

A worker that dies. ggml-rpc (this llama.cpp) has no error path: a failed round trip calls GGML_ABORT. That ends
the runner of each model split over the worker, and only those (each model has its own process); the host
(inferno.engine.rpc_watch) tells which worker went, answers the model's requests with a clear error, and the
model loads again over new connections once the worker is back. The workers that live on free their share
as the dead runner's connections close.
"""

from __future__ import annotations

import ctypes
import logging
import re
import socket
import threading

from inferno.engine import devices
from inferno.errors import ModelLoadError, UnavailableError

log = logging.getLogger("inferno.engine")

PROBE_TIMEOUT = 2.0  # seconds for a TCP connect to a worker

_ADD_SERVER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)


def plain(text: str) -> str:
    """llama.cpp's text with a connection suffix taken out (host:port/3 -> host:port)."""
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


class RpcPool:
    """The RPC workers' devices in this runner process (llama.cpp's RPC state is per process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.devices_of: dict[str, list[int]] = {}  # endpoint -> its device handles
        self.pins: dict[str, list[int]] = {}  # endpoint -> open backends (they hold the connection)

    def devices(self, endpoints: tuple[str, ...]) -> list[int]:
        """The device handles of these workers, in order, connecting to those not connected yet."""
        if not devices.rpc_supported():
            raise UnavailableError(devices.RPC_REBUILD)
        with self.lock:
            out: list[int] = []
            for ep in endpoints:
                if ep not in self.devices_of:
                    self._connect(ep)
                out += self.devices_of[ep]
            return out

    def _connect(self, ep: str) -> None:
        why = probe(ep)
        if why is not None:
            raise UnavailableError(f"RPC worker {ep} is unreachable ({why}); start it with `inferno rpc-worker` "
                                   "on that machine")
        g = devices.ggml()
        reg = g.ggml_backend_reg_by_name(b"RPC")
        address = g.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_rpc_add_server") if reg else None
        if not address:
            raise UnavailableError(devices.RPC_REBUILD)
        pins: list[int] = []
        try:
            found = _ADD_SERVER(address)(ep.encode())
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
        self.devices_of[ep], self.pins[ep] = devs, pins
        log.info("RPC worker %s: %s", ep, ", ".join(devices.dev_name(d) for d in devs))


    def release(self) -> None:
        """Close this runner's connections (its model unloaded or failed to load): a worker serves one client
        at a time, so it is free for others at once."""
        with self.lock:
            pins = [b for bs in self.pins.values() for b in bs]
            self.pins, self.devices_of = {}, {}
        for b in pins:
            devices.ggml().ggml_backend_free(b)


_pool: RpcPool | None = None
_pool_lock = threading.Lock()


def pool() -> RpcPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = RpcPool()
        return _pool
