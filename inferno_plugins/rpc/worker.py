"""llama.cpp's RPC server in this process: `ggml_backend_rpc_start_server` from the libraries llama-cpp-python
ships, found through ggml's backend registry as llama.cpp's own rpc-server finds it. The one module of this
plugin that touches llama-cpp-python."""

from __future__ import annotations

import ctypes
import ipaddress
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inferno.api import BadRequestError, UnavailableError

RPC_REBUILD = ('this llama-cpp-python was built without llama.cpp\'s RPC backend; rebuild it with: '
               'CMAKE_ARGS="-DGGML_RPC=on" pip install --no-cache-dir --force-reinstall --no-deps '
               'llama-cpp-python==0.3.36')
_CPU, _ACCEL = 0, 3  # enum ggml_backend_dev_type
_START = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t,
                          ctypes.POINTER(ctypes.c_void_p))


def _ggml() -> Any:
    try:
        import llama_cpp
        from llama_cpp._ggml import libggml as g
    except (ImportError, OSError, RuntimeError) as e:
        raise UnavailableError(f"llama-cpp-python is not installed or does not load ({e})") from e
    if not llama_cpp.llama_supports_rpc():
        raise UnavailableError(RPC_REBUILD)
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    for name, args, res in (("ggml_backend_reg_by_name", [ctypes.c_char_p], vp),
                            ("ggml_backend_reg_get_proc_address", [vp, ctypes.c_char_p], vp),
                            ("ggml_backend_dev_count", [], sz), ("ggml_backend_dev_get", [sz], vp),
                            ("ggml_backend_dev_by_type", [ctypes.c_int], vp),
                            ("ggml_backend_dev_type", [vp], ctypes.c_int),
                            ("ggml_backend_dev_name", [vp], ctypes.c_char_p),
                            ("ggml_backend_dev_description", [vp], ctypes.c_char_p),
                            ("ggml_backend_dev_memory", [vp, ctypes.POINTER(sz), ctypes.POINTER(sz)], None)):
        fn = getattr(g, name)
        fn.argtypes, fn.restype = args, res
    return g


def _devices(g: Any) -> list[int]:
    """What llama.cpp's rpc-server serves by default: every accelerator, else the CPU."""
    devs = [g.ggml_backend_dev_get(i) for i in range(g.ggml_backend_dev_count())]
    accel = [d for d in devs if g.ggml_backend_dev_type(d) not in (_CPU, _ACCEL)]
    cpu = g.ggml_backend_dev_by_type(_CPU)
    return accel or ([cpu] if cpu else [])


def _describe(g: Any, dev: int) -> str:
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    g.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
    name = (g.ggml_backend_dev_name(dev) or b"?").decode()
    return f"{name} ({total.value / 2**30:.1f} GiB, {free.value / 2**30:.1f} GiB free)"


def _address(host: str) -> str:
    """An IPv4 address ggml can bind (it takes dotted IPv4 only)."""
    try:
        return str(ipaddress.IPv4Address(socket.gethostbyname(host)))
    except (OSError, ValueError):
        raise BadRequestError(f"--host {host!r} is not an IPv4 address (or a name of one)") from None


def _accepting(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def run_worker(host: str, port: int, threads: int | None, cache: Path | None, *, ready: Callable[[str], None],
               warn: Callable[[str], None]) -> None:
    """Serve until SIGINT/SIGTERM (then exit 0), or raise when the server cannot start."""
    g = _ggml()
    address = _address(host)
    if not ipaddress.IPv4Address(address).is_loopback:
        warn(f"warning: listening on {address}:{port}. The RPC protocol has no authentication and no encryption: "
             "anyone who reaches this port can use this machine's devices and memory. Trusted networks only.")
    with socket.socket() as s:  # a clear error for a busy port (ggml would only print that it failed)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as e:
            raise UnavailableError(f"cannot listen on {address}:{port}: {e.strerror}") from None
    devs = _devices(g)
    if not devs:
        raise UnavailableError("llama.cpp finds no device to serve on this machine")
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    reg = g.ggml_backend_reg_by_name(b"RPC")
    start = g.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_rpc_start_server") if reg else None
    if not start:
        raise UnavailableError(RPC_REBUILD)
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            threads = os.cpu_count() or 1
    array = (ctypes.c_void_p * len(devs))(*devs)
    args = (f"{address}:{port}".encode(), str(cache).encode() if cache else None, threads, len(devs), array)
    server = threading.Thread(target=_START(start), args=args, name="ggml-rpc-server", daemon=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    while not _accepting(address, port):  # bound and listening, or it gave up (it printed why)
        if not server.is_alive():
            raise UnavailableError(f"llama.cpp's RPC server did not start on {address}:{port}")
        time.sleep(0.05)  # a poll with a deadline of the server's own making: it either listens or returns
    ready(f"inferno rpc-worker: serving {', '.join(_describe(g, d) for d in devs)} on {address}:{port} with "
          f"{threads} thread{'s' if threads > 1 else ''}{f', cache {cache}' if cache else ''}; Ctrl-C stops it")
    while not stop.wait(0.5):
        if not server.is_alive():
            raise UnavailableError("llama.cpp's RPC server stopped")
    ready("inferno rpc-worker: stopped")
    sys.stdout.flush()
    sys.stderr.flush()
    # The server thread never returns (ggml has no stop call); leaving at once skips C++ static destructors that
    # would run under it.
    os._exit(0)
