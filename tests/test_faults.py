"""Faults: kill -9 during a quantize, a full disk during a download, a corrupt model over HTTP."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_gguf

from .conftest import Server
from .hub_server import HubServer, Repo


def test_kill_during_quantize_leaves_the_store_consistent(home: Path, tmp_path: Path) -> None:
    big = write_tiny_gguf(tmp_path / "big.gguf", n_embd=1024, n_ff=2048, n_layer=4, seed=9)
    host = Inferno()
    host.import_file(big, "big", source="test", mode="link")
    proc = subprocess.Popen([sys.executable, "-m", "inferno", "quantize", "big", "out", "-m", "q4_k_m",
                             "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    # the progress line comes when llama.cpp reports its first tensor: from then on it is mid-quantize
    # (38 tensors to go), however fast or slow the machine is
    seen = next((line for line in iter(proc.stderr.readline, "") if line.startswith("quantizing to")), None)
    assert seen and proc.poll() is None, "the quantize never started or already ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert any((host.store.root / ".partial").glob(".tmp-quant-*"))  # killed while writing its output
    assert [m.name for m in Inferno().store.list()] == ["big"]  # no half model
    out = subprocess.run([sys.executable, "-m", "inferno", "list"], capture_output=True, text=True, timeout=60)
    assert "out" not in out.stdout
    again = subprocess.run([sys.executable, "-m", "inferno", "quantize", "big", "out", "-m", "q8_0"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert Inferno().metadata("out").quantization == "Q8_0"


def _limit_file_size() -> None:
    # A "disk" that is full after 1 MiB: writes past it fail with EFBIG instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_full_disk_during_a_download_is_reported_and_cleaned(home: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_tiny_gguf(tmp_path / "b.gguf", n_embd=256, n_ff=512).read_bytes()
    hub = HubServer()
    hub.repos = {"acme/Big-GGUF": Repo(files={"big-Q4_K_M.gguf": data})}
    try:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
        out = subprocess.run([sys.executable, "-m", "inferno", "pull", "hf:acme/Big-GGUF:Q4_K_M"], env=env,
                             capture_output=True, text=True, timeout=120, preexec_fn=_limit_file_size)
    finally:
        hub.close()
    assert out.returncode == 1 and "disk full" in out.stderr and "Traceback" not in out.stderr
    assert Inferno().store.list() == []
    assert not [p for p in (home / "models").rglob("*") if p.is_file()]


def test_corrupt_model_over_http_is_a_clear_error(server: Server, tiny_gguf: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    data = tiny_gguf.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    from inferno.config import load_settings

    Inferno(load_settings({"INFERNO_HOME": str(server.home)})).store.add("broken", broken, source="t")
    r = httpx.post(server.url + "/api/generate", json={"model": "broken", "prompt": "x", "stream": False},
                   timeout=60)
    # the store's file is unusable: a server-side failure (Ollama answers 500 too), named, not a crash
    assert r.status_code == 500 and "broken" in r.json()["error"] and "load" in r.json()["error"]
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200  # still serving
