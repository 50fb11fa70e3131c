"""Runner deaths the host heals or contains: a crash loop marks a model failed until its window passes, and a
death while llama.cpp's repacked weights are in play (llama.cpp#20824, AMX CPUs) reloads the model without them.

This machine has no AMX: INFERNO_TEST_FAULT (read by the runner) raises SIGSEGV at the point AMX kernels crash,
and only while weights sit in an extra buffer type (CPU_REPACK here: Q4_0 weights on an AVX2 CPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from inferno.config import load_settings
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_gguf

from .conftest import start_server, stop_server, wait_for
from .test_runner import generate, home_with, ps, write_sea


@pytest.fixture(scope="session")
def q4_0_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Q4_0 model: llama.cpp repacks its weights (CPU_REPACK) on CPUs with AVX2 or NEON."""
    tmp = tmp_path_factory.mktemp("q4")
    h = Inferno(load_settings({"INFERNO_HOME": str(tmp / "home")}))
    h.import_file(write_tiny_gguf(tmp / "f32.gguf", n_embd=256, n_ff=512), "f32", source="test")
    return h.quantize("f32", "q4", "q4_0").file


def test_a_crash_loop_marks_the_model_failed_until_the_window_passes(tmp_path: Path, tiny_gguf: Path) -> None:
    home = home_with(tmp_path, {"sea": write_sea(tmp_path / "sea.gguf"), "tiny": tiny_gguf})
    server = start_server(home, {"INFERNO_CRASH_WINDOW": "20"})
    url = server.url
    try:
        for _ in range(3):
            r = generate(url, "sea", "the sea", raw=True)
            assert r.status_code == 502 and "the engine for sea stopped" in r.json()["error"], r.text
        r = generate(url, "sea", "abc", raw=True)  # would answer, but the model is failed: at once, with why
        assert r.status_code == 503, r.text
        assert "sea failed: its engine stopped 3 times within 20 s" in r.json()["error"]
        assert "SIGABRT" in r.json()["error"]
        assert ps(url)["sea"]["state"] == "failed"
        health = httpx.get(f"{url}/health", timeout=30)
        assert health.status_code == 200 and [m["name"] for m in health.json()["failed"]] == ["sea"]
        ollama_ps = httpx.get(f"{url}/api/ps", timeout=30).json()["models"]
        assert [m["state"] for m in ollama_ps if m["name"].startswith("sea")] == ["failed"]
        assert generate(url, "tiny", "hi").status_code == 200  # other models are served meanwhile
        wait_for(lambda: "sea" not in ps(url), "the failed state to pass with its window")
        r = generate(url, "sea", "abc", raw=True)
        assert r.status_code == 200, r.text
    finally:
        stop_server(server)


def test_an_explicit_load_clears_the_failed_state(tmp_path: Path) -> None:
    home = home_with(tmp_path, {"sea": write_sea(tmp_path / "sea.gguf")})
    server = start_server(home, {"INFERNO_CRASH_WINDOW": "600"})
    url = server.url
    try:
        for _ in range(3):
            assert generate(url, "sea", "the sea", raw=True).status_code == 502
        assert generate(url, "sea", "abc", raw=True).status_code == 503
        load = httpx.post(f"{url}/api/generate", json={"model": "sea"}, timeout=120)  # Ollama's load
        assert load.status_code == 200, load.text
        assert generate(url, "sea", "abc", raw=True).status_code == 200
    finally:
        stop_server(server)


@pytest.mark.parametrize("fault", ["segv-on-load", "segv-on-first-decode"])
def test_a_death_with_repacked_weights_heals_and_is_remembered(tmp_path: Path, q4_0_gguf: Path, fault: str) -> None:
    home = home_with(tmp_path, {"q4": q4_0_gguf}, link={"q4"})
    server = start_server(home, {"INFERNO_TEST_FAULT": fault})
    url = server.url
    try:
        r = generate(url, "q4", "hi", 8)  # the first request: answered by the healed runner
        assert r.status_code == 200 and r.json()["done"], r.text
        row = ps(url)["q4"]
        assert row["repack"] is False and row["extra_buffers"] is False
        log = server.log.read_text(errors="replace")
        assert "the engine for q4 stopped: SIGSEGV inside llama.cpp" in log
        assert log.count("llama.cpp#20824") == 1
        remembered = json.loads((home / "no-repack.json").read_text())
        assert [v["model"] for v in remembered.values()] == [str(q4_0_gguf.resolve())]
    finally:
        stop_server(server)
    again = start_server(home, {"INFERNO_TEST_FAULT": fault})  # a restart goes straight to the working setting
    try:
        r = generate(again.url, "q4", "hi", 8)
        assert r.status_code == 200, r.text
        assert ps(again.url)["q4"]["repack"] is False
        assert "stopped" not in again.log.read_text(errors="replace")
    finally:
        stop_server(again)


def test_repacked_weights_without_the_fault_and_no_repack_forced(tmp_path: Path, q4_0_gguf: Path) -> None:
    """The control: the same model repacks when nothing crashes (so the fault switch had something to hit), and
    INFERNO_REPACK=0 keeps it off from the start."""
    home = home_with(tmp_path, {"q4": q4_0_gguf}, link={"q4"})
    for env, repacked in (({}, True), ({"INFERNO_REPACK": "0"}, False)):
        server = start_server(home, env)
        try:
            assert generate(server.url, "q4", "hi").status_code == 200
            row = ps(server.url)["q4"]
            assert row["repack"] is repacked and row["extra_buffers"] is repacked, env
        finally:
            stop_server(server)
