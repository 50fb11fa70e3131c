"""What the host knows of its runners' deaths: what killed one, when a model counts as failed, and the setting a
death healed (no repacked weights) remembered per model file, llama.cpp build and CPU.

Kept free of llama_cpp: the host never loads it for served models.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import re
import signal
import tempfile
import threading
import time
from pathlib import Path

from inferno.errors import UnavailableError

_NATIVE = {"SIGSEGV", "SIGABRT", "SIGILL", "SIGBUS", "SIGFPE", "SIGTRAP", "SIGSYS"}
# stderr lines that say why llama.cpp gave up (a C++ exception, an assertion, a failed RPC round trip)
_WHY = re.compile(r"terminate called|what\(\)|GGML_ASSERT|GGML_ABORT|ggml-rpc|error|fault|failed", re.IGNORECASE)


def cause(returncode: int, tail: list[str]) -> str:
    """A runner's death in a few words: `SIGSEGV inside llama.cpp (…the line that said why…)`."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        text = f"{name} inside llama.cpp" if name in _NATIVE else f"killed by {name}"
    else:
        text = f"exit status {returncode}"
    why = [line.strip() for line in tail if _WHY.search(line) and not line.startswith("INFO")][-2:]
    return f"{text} ({'; '.join(why)[:400]})" if why else text


class Deaths:
    """Runner deaths per model; limit of them within window seconds mark the model failed until the window
    passes (counted from the last death) or the model is loaded explicitly."""

    def __init__(self, limit: int = 3, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self.lock = threading.Lock()
        self.times: dict[str, collections.deque[float]] = {}
        self.causes: dict[str, str] = {}

    def record(self, name: str, why: str) -> None:
        with self.lock:
            times = self.times.setdefault(name, collections.deque(maxlen=self.limit))
            times.append(time.monotonic())
            self.causes[name] = why

    def failed(self, name: str) -> UnavailableError | None:
        """The error a failed model's requests get at once, or None while it may be tried."""
        with self.lock:
            times = self.times.get(name)
            if not times or len(times) < self.limit:
                return None
            now = time.monotonic()
            if times[0] < now - self.window:  # not limit deaths within one window
                return None
            left = times[-1] + self.window - now
            if left <= 0:
                del self.times[name]
                return None
            return UnavailableError(
                f"{name} failed: its engine stopped {len(times)} times within {self.window:g} s (last: "
                f"{self.causes.get(name)}); it is tried again in {left:.0f} s, or when it is loaded explicitly")

    def failed_names(self) -> list[str]:
        with self.lock:
            names = list(self.times)
        return [n for n in names if self.failed(n) is not None]

    def clear(self, name: str) -> None:
        with self.lock:
            self.times.pop(name, None)


def _llama_build() -> str:
    """The installed llama.cpp, without loading it: llama-cpp-python's version and its library file."""
    import importlib.metadata
    import importlib.util

    try:
        version = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    try:
        spec = importlib.util.find_spec("llama_cpp")
    except (ImportError, ValueError, RuntimeError, OSError):  # a broken install: the runner says so when it loads
        spec = None
    lib = Path(spec.origin).parent / "lib" / "libllama.so" if spec and spec.origin else None
    with contextlib.suppress(OSError):
        if lib is not None:
            st = lib.stat()
            return f"{version}:{st.st_size}:{st.st_mtime_ns}"
    return version


def _cpu() -> str:
    """This CPU: its model name and feature flags (Linux /proc/cpuinfo; elsewhere the platform's words)."""
    with contextlib.suppress(OSError):
        keep = [line for line in Path("/proc/cpuinfo").read_text().splitlines()[:40]
                if line.startswith(("model name", "flags", "Features", "CPU part"))]
        if keep:
            return "\n".join(keep)
    import platform

    return platform.processor() or platform.machine()


class RepackMemory:
    """Models whose runner died while llama.cpp had repacked their weights (llama.cpp#20824: AMX kernels that
    crash): loaded without extra buffer types from then on, for that file, llama.cpp build and CPU."""

    def __init__(self, home: str | None) -> None:
        self.path = Path(home) / "no-repack.json" if home else None
        self.lock = threading.Lock()

    @staticmethod
    def key(model_file: Path) -> str:
        try:
            st = model_file.stat()
            file = f"{model_file.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            file = str(model_file)
        return hashlib.sha256(f"{file}\n{_llama_build()}\n{_cpu()}".encode()).hexdigest()

    def _read(self) -> dict[str, dict[str, str]]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def says_no(self, model_file: Path) -> bool:
        with self.lock:
            return self.key(model_file) in self._read()

    def remember(self, model_file: Path, why: str) -> None:
        if self.path is None:
            return
        with self.lock:
            data = self._read()
            data[self.key(model_file)] = {"model": str(model_file), "why": why,
                                          "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".no-repack-", dir=self.path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
            os.replace(tmp, self.path)
