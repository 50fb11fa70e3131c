"""Each model's engine in its own runner process, through a real `inferno serve`: a runner killed mid-stream, a
tokenizer that throws inside llama.cpp, the host killed, busy eviction, status polled under load, unload races.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferno.config import load_settings
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_gguf

from .conftest import Server, start_server, stop_server, wait_for

# A SentencePiece vocabulary without byte fallback: "abc" tokenizes, "the sea" makes llama.cpp throw
# std::out_of_range from its tokenizer (the process terminates: the runner's, not the server's)
SEA_PIECES = ["\u2581", "a", "b", "c", "\u2581a"]


def write_sea(path: Path) -> Path:
    return write_tiny_gguf(path, pieces=SEA_PIECES)


def home_with(tmp: Path, models: dict[str, Path], link: set[str] | frozenset[str] = frozenset()) -> Path:
    home = tmp / "home"
    h = Inferno(load_settings({"INFERNO_HOME": str(home)}))
    for name, path in models.items():
        h.import_file(path, name, source="test", mode="link" if name in link else "copy")
    return home


def ps(url: str) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in httpx.get(f"{url}/inferno/ps", timeout=30).json()["models"]}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def generate(url: str, model: str, prompt: str, n: int = 8, **extra: Any) -> httpx.Response:
    body = {"model": model, "prompt": prompt, "stream": False,
            "options": {"temperature": 0, "num_predict": n}, **extra}
    return httpx.post(f"{url}/api/generate", json=body, timeout=300)


@pytest.fixture(scope="module")
def runner_server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, smollm2_path: Path) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("runner")
    home = home_with(tmp, {"tiny": tiny_gguf, "smollm2": smollm2_path, "sea": write_sea(tmp / "sea.gguf")},
                     link={"smollm2"})
    s = start_server(home)
    yield s
    stop_server(s)


def test_a_runner_killed_mid_stream_fails_that_stream_only(runner_server: Server) -> None:
    url = runner_server.url
    long = {"model": "smollm2", "prompt": "Count from one to a thousand in words.",
            "options": {"temperature": 0, "num_predict": 3000, "ignore_eos": True}}
    other = {"model": "tiny", "prompt": "hi", "options": {"temperature": 0, "num_predict": 1500, "ignore_eos": True}}
    with httpx.stream("POST", f"{url}/api/generate", json=long, timeout=120) as a, \
            httpx.stream("POST", f"{url}/api/generate", json=other, timeout=120) as b:
        assert a.status_code == 200 and b.status_code == 200
        a_lines, b_lines = a.iter_lines(), b.iter_lines()
        assert not json.loads(next(a_lines))["done"] and not json.loads(next(b_lines))["done"]
        pid = ps(url)["smollm2"]["pid"]
        assert pid and pid != runner_server.proc.pid and ps(url)["tiny"]["pid"] != pid
        os.kill(pid, signal.SIGKILL)
        rest = [json.loads(line) for line in a_lines if line]
        tiny_rest = [json.loads(line) for line in b_lines if line]
    assert rest and "error" in rest[-1], rest[-3:]
    assert "the engine for smollm2 stopped: killed by SIGKILL" in rest[-1]["error"]
    assert tiny_rest[-1]["done"] and tiny_rest[-1]["eval_count"] == 1500  # the other model's stream completed
    assert runner_server.proc.poll() is None
    again = generate(url, "smollm2", "Name a colour.")
    assert again.status_code == 200 and again.json()["response"], again.text
    assert ps(url)["smollm2"]["pid"] != pid  # a fresh runner
    log = runner_server.log.read_text(errors="replace")
    assert "the engine for smollm2 stopped: killed by SIGKILL" in log


def test_a_tokenizer_that_throws_fails_that_request_and_the_server_lives(runner_server: Server) -> None:
    import openai

    url = runner_server.url
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.completions.create(model="sea", prompt="the sea", max_tokens=4)
    assert caught.value.status_code == 502
    message = caught.value.response.json()["error"]["message"]
    assert "the engine for sea stopped: SIGABRT inside llama.cpp" in message, message
    assert "std::out_of_range" in message, message
    assert runner_server.proc.poll() is None
    assert httpx.get(f"{url}/health", timeout=30).status_code == 200
    assert generate(url, "tiny", "hi").status_code == 200
    ok = generate(url, "sea", "abc", raw=True)  # a prompt its vocabulary holds: a fresh runner answers
    assert ok.status_code == 200, ok.text
    log = runner_server.log.read_text(errors="replace")
    assert "terminate called after throwing an instance of 'std::out_of_range'" in log  # the runner's last words


def test_status_polled_during_8_streams(runner_server: Server) -> None:
    url = runner_server.url
    done = threading.Event()
    polled: list[int] = []

    def poll() -> None:
        with httpx.Client(timeout=30) as c:
            while not done.is_set():
                for path in ("/metrics", "/api/ps", "/inferno/ps", "/health"):
                    polled.append(c.get(url + path).status_code)

    results: list[dict[str, Any]] = []

    def stream() -> None:
        body = {"model": "smollm2", "prompt": "Tell me about the sea.",
                "options": {"temperature": 0, "num_predict": 48, "ignore_eos": True}}
        with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=300) as r:
            results.append([json.loads(line) for line in r.iter_lines() if line][-1])

    poller = threading.Thread(target=poll)
    poller.start()
    streams = [threading.Thread(target=stream) for _ in range(8)]
    for t in streams:
        t.start()
    for t in streams:
        t.join()
    done.set()
    poller.join()
    assert len(results) == 8 and all(r.get("done") and r["eval_count"] == 48 for r in results), results
    assert polled and set(polled) == {200}
    metrics = httpx.get(f"{url}/metrics", timeout=30).text
    assert 'inferno_completion_tokens_total{model="smollm2"}' in metrics  # the host's observer saw the Done events


def test_a_request_racing_unload_is_answered(runner_server: Server) -> None:
    url = runner_server.url
    for _ in range(4):
        answers: list[httpx.Response] = []
        t = threading.Thread(target=lambda out=answers: out.append(generate(url, "tiny", "hi", 16)))
        t.start()
        unload = httpx.post(f"{url}/api/generate", json={"model": "tiny", "keep_alive": 0}, timeout=60)
        assert unload.status_code == 200
        t.join(120)
        assert not t.is_alive() and answers[0].status_code == 200 and answers[0].json()["done"], answers


def test_busy_eviction_answers_both(tmp_path: Path, tiny_gguf: Path, smollm2_path: Path) -> None:
    """One model allowed: B asked while A streams loads beside A, A's stream completes, then A is evicted."""
    home = home_with(tmp_path, {"tiny": tiny_gguf, "smollm2": smollm2_path}, link={"smollm2"})
    server = start_server(home, {"INFERNO_MAX_LOADED_MODELS": "1", "INFERNO_MAX_QUEUE": "2"})
    url = server.url
    try:
        body = {"model": "smollm2", "prompt": "Count from one to a hundred.",
                "options": {"temperature": 0, "num_predict": 200, "ignore_eos": True}}
        for _ in range(3):  # more than max_queue of them: a leaked queue place would make the last one a 503
            with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=300) as a:
                lines = a.iter_lines()
                assert not json.loads(next(lines))["done"]
                b = generate(url, "tiny", "hi")
                assert b.status_code == 200 and b.json()["done"], b.text
                rest = [json.loads(line) for line in lines if line]
            assert rest[-1]["done"] and rest[-1]["eval_count"] == 200, rest[-1]
        wait_for(lambda: len(ps(url)) == 1, "the least recently used model to be evicted")
    finally:
        stop_server(server)


def test_kill_9_of_the_host_leaves_no_runner(tmp_path: Path, tiny_gguf: Path) -> None:
    server = start_server(home_with(tmp_path, {"tiny": tiny_gguf}))
    try:
        assert generate(server.url, "tiny", "hi").status_code == 200
        pid = ps(server.url)["tiny"]["pid"]
        assert alive(pid)
    finally:
        server.proc.kill()
        server.proc.wait()
    wait_for(lambda: not alive(pid), "the runner to end with its host")


def test_the_host_never_maps_llama_cpp(runner_server: Server) -> None:
    """Served models and a quantize asked over the API run in other processes: the server process itself has
    not loaded llama.cpp's libraries (its memory is measured by the benchmarks, not asserted here)."""
    url = runner_server.url
    assert generate(url, "tiny", "hi").status_code == 200
    create = httpx.post(f"{url}/api/create", json={"model": "tiny-q8", "from": "tiny", "quantize": "q8_0",
                                                    "stream": False}, timeout=300)
    assert create.status_code == 200, create.text
    assert generate(url, "tiny-q8", "hi").status_code == 200
    pid = runner_server.proc.pid
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "libllama" not in maps and "libggml" not in maps
    runner_maps = Path(f"/proc/{ps(url)['tiny']['pid']}/maps").read_text()
    assert "libllama" in runner_maps  # the check can see it where it is


def test_a_native_fault_in_inferno_run_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    home = home_with(tmp_path, {"sea": write_sea(tmp_path / "sea.gguf")})
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("INFERNO_")}, "INFERNO_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "inferno", "run", "sea", "the sea"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr  # one line, no core dump
    assert "the engine for sea stopped: SIGABRT inside llama.cpp" in out.stderr
