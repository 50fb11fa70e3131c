"""llama.cpp's devices: ggml's backend registry, the local accelerators, and how much memory each device holds.

Memory per device is llama.cpp's own accounting: while a model loads (and its generation context is made) the
lines llama.cpp logs for every buffer it allocates ("RPC0[10.0.0.2:50052] model buffer size = 40.12 MiB") are
collected on that thread and summed per device, the figures llama-server prints. There is no C function that
returns them (llama_get_memory_breakdown is C++ only).
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import threading
from collections.abc import Callable, Generator
from functools import cache
from typing import Any

RPC_REBUILD = ('this llama-cpp-python was built without llama.cpp\'s RPC backend; rebuild it with: '
               'CMAKE_ARGS="-DGGML_RPC=on" pip install --no-cache-dir --force-reinstall --no-deps '
               'llama-cpp-python==0.3.36')

# enum ggml_backend_dev_type
DEV_GPU, DEV_IGPU = 1, 2


@cache
def ggml() -> Any:
    """libggml as llama-cpp-python ships it (the registry lives there; dlsym on its handle also finds ggml-base's
    device functions), with the signatures this module and the RPC code call."""
    from llama_cpp._ggml import libggml as g

    vp, sz, cp = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
    sigs: dict[str, tuple[list[Any], Any]] = {
        "ggml_backend_reg_by_name": ([cp], vp),
        "ggml_backend_reg_get_proc_address": ([vp, cp], vp),
        "ggml_backend_reg_dev_count": ([vp], sz),
        "ggml_backend_reg_dev_get": ([vp, sz], vp),
        "ggml_backend_dev_count": ([], sz),
        "ggml_backend_dev_get": ([sz], vp),
        "ggml_backend_dev_name": ([vp], cp),
        "ggml_backend_dev_description": ([vp], cp),
        "ggml_backend_dev_type": ([vp], ctypes.c_int),
        "ggml_backend_dev_memory": ([vp, ctypes.POINTER(sz), ctypes.POINTER(sz)], None),
        "ggml_backend_dev_init": ([vp, cp], vp),
        "ggml_backend_dev_buffer_type": ([vp], vp),
        "ggml_backend_free": ([vp], None),
        "ggml_set_abort_callback": ([vp], vp),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(g, name)
        fn.argtypes, fn.restype = args, res
    return g


def rpc_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_rpc())


def dev_name(dev: int) -> str:
    return (ggml().ggml_backend_dev_name(dev) or b"").decode(errors="replace")


def dev_description(dev: int) -> str:
    return (ggml().ggml_backend_dev_description(dev) or b"").decode(errors="replace")


def dev_memory(dev: int) -> tuple[int, int]:
    """(free, total) bytes of a local device. Never call it for an RPC device: it is a round trip to the worker,
    and a worker that is gone makes llama.cpp abort."""
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    ggml().ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
    return free.value, total.value


def local_devices() -> list[int]:
    """Every device of this machine in the registry."""
    g = ggml()
    return [g.ggml_backend_dev_get(i) for i in range(g.ggml_backend_dev_count())]


def local_accelerators() -> list[int]:
    """The local devices llama.cpp offloads layers to by default: the GPUs, else the integrated GPUs (the CPU
    holds whatever is not offloaded)."""
    g = ggml()
    devs = local_devices()
    gpus = [d for d in devs if g.ggml_backend_dev_type(d) == DEV_GPU]
    return gpus or [d for d in devs if g.ggml_backend_dev_type(d) == DEV_IGPU]


# llama.cpp's log, tapped per thread -------------------------------------------------------------------------

_BUFFER = re.compile(r":\s+(\S+)\s+(model|KV|RS|compute|output) buffer size =\s*([\d.]+) MiB")
_KIND = {"model": "weights", "KV": "kv_cache", "RS": "kv_cache", "compute": "compute", "output": "compute"}
_tls = threading.local()
_tap_fn: Any = None
_tap_lock = threading.Lock()
listeners: list[Callable[[int, str], None]] = []  # see every line llama.cpp logs, on any thread (the runner's)


def _install_tap() -> None:
    """Our log callback in front of llama-cpp-python's (which still prints what INFERNO_DEBUG asks for)."""
    global _tap_fn
    with _tap_lock:
        if _tap_fn is not None:
            return
        import llama_cpp
        from llama_cpp import _logger

        forward = _logger.llama_log_callback

        def tap(level: int, text: bytes, user_data: Any) -> None:
            lines = getattr(_tls, "lines", None)
            if text and (lines is not None or listeners):
                line = text.decode("utf-8", errors="replace")
                if lines is not None:
                    lines.append((level, line))
                for listen in listeners:
                    listen(level, line)
            forward(level, text, user_data)

        _tap_fn = llama_cpp.llama_log_callback(tap)
        llama_cpp.llama_log_set(_tap_fn, ctypes.c_void_p(0))


@contextlib.contextmanager
def llama_log() -> Generator[list[tuple[int, str]]]:
    """The (level, text) lines llama.cpp logs on this thread inside the block."""
    _install_tap()
    outer = getattr(_tls, "lines", None)
    _tls.lines = lines = []
    try:
        yield lines
    finally:
        _tls.lines = outer
        if outer is not None:
            outer.extend(lines)


def last_error(lines: list[tuple[int, str]]) -> str | None:
    """The last error line llama.cpp logged (level 3), trimmed of its function name."""
    errors = [t.strip() for lvl, t in lines if lvl == 3 and t.strip()]
    return errors[-1] if errors else None


def buffer_sizes(lines: list[tuple[int, str]]) -> dict[str, dict[str, int]]:
    """{buffer name: {weights|kv_cache|compute: bytes}} from llama.cpp's "... buffer size = X MiB" lines."""
    out: dict[str, dict[str, int]] = {}
    for _, text in lines:
        for name, kind, mib in _BUFFER.findall(text):
            slot = out.setdefault(name, {})
            slot[_KIND[kind]] = slot.get(_KIND[kind], 0) + round(float(mib) * 1024 * 1024)
    return out


def extra_buffers(sizes: dict[str, dict[str, int]] | list[str]) -> list[str]:
    """The buffers of llama.cpp's "extra" buffer types among these: weights repacked for this CPU's kernels
    (CPU_REPACK, AMX, KleidiAI…), which llama_model_params.use_extra_bufts turns off (llama-server --no-repack)."""
    return [n for n in sizes if n != "CPU_Mapped" and (n == "AMX" or n.startswith("CPU_") or "REPACK" in n
                                                       or "KLEIDI" in n.upper())]


def buffer_name(line: str) -> str | None:
    """The buffer a "... model buffer size = X MiB" line names (weights being placed), else None."""
    m = _BUFFER.search(line)
    return m.group(1) if m and m.group(2) == "model" else None


_RPC_BUFFER = re.compile(r"^RPC(\d+)\[(.+?)(?:/\d+)?\]$")


def device_rows(sizes: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Buffers grouped by device: an RPC worker's device (RPC0[host:port]), a GPU, or this machine's RAM
    ("CPU": the CPU's buffers, mapped model files and accelerators' host buffers)."""
    rows: dict[str, dict[str, Any]] = {}
    for name, kinds in sizes.items():
        m = _RPC_BUFFER.match(name)
        if m:
            key, endpoint = f"RPC{m.group(1)}[{m.group(2)}]", m.group(2)
        elif name.startswith("CPU") or name.endswith("_Host"):
            key, endpoint = "CPU", None
        else:
            key, endpoint = name, None
        row = rows.setdefault(key, {"name": key, "endpoint": endpoint, "weights": 0, "kv_cache": 0,
                                    "compute": 0, "memory": 0})
        for kind, n in kinds.items():
            row[kind] += n
            row["memory"] += n
    return sorted(rows.values(), key=lambda r: (r["endpoint"] is None, r["name"]))
