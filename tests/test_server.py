"""Cross-cutting server behaviour: API key, body limit, access log, disconnects, shutdown, concurrency."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from inferno.config import load_settings
from inferno.host import Inferno

from .conftest import Server, start_server, stop_server, wait_for


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, smollm2_path: Path):
    home = tmp_path_factory.mktemp("keyed")
    h = Inferno(load_settings({"INFERNO_HOME": str(home)}))
    h.import_file(tiny_gguf, "tiny", source="t")
    h.import_file(smollm2_path, "smollm2", source="t", mode="link")
    # one sequence at a time per model and one waiting place: the queue test fills both
    s = start_server(home, {"INFERNO_API_KEY": "s3cret", "INFERNO_MAX_QUEUE": "1", "INFERNO_NUM_PARALLEL": "1"})
    yield s
    stop_server(s)


def test_api_key_is_required_except_on_root_and_health(keyed: Server) -> None:
    assert httpx.get(keyed.url + "/", timeout=10).status_code == 200
    assert httpx.get(keyed.url + "/health", timeout=10).status_code == 200
    r = httpx.get(keyed.url + "/v1/models", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = httpx.get(keyed.url + "/api/tags", timeout=10)
    assert r.status_code == 401 and set(r.json()) == {"error"}
    wrong = httpx.get(keyed.url + "/api/tags", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed.url + "/v1", api_key="wrong", max_retries=0).models.list()
    ok = openai.OpenAI(base_url=keyed.url + "/v1", api_key="s3cret", max_retries=0)
    assert {m.id for m in ok.models.list()} == {"smollm2:latest", "tiny:latest"}
    client = ollama.Client(host=keyed.url, headers={"Authorization": "Bearer s3cret"})
    assert {m.model for m in client.list().models} == {"smollm2:latest", "tiny:latest"}


class Occupant(threading.Thread):
    """A streamed generation that outlasts the test (up to 8192 tokens): it holds its place (running or queued)
    until released, then goes away, which cancels it."""

    def __init__(self, server: Server, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.server, self.headers = server, headers
        self.streaming, self.release = threading.Event(), threading.Event()
        self.status: int | None = None

    def run(self) -> None:
        body = {"model": "smollm2", "prompt": "x", "options": {"num_predict": -1, "num_ctx": 8192, "ignore_eos": True}}
        with httpx.stream("POST", self.server.url + "/api/generate", json=body, headers=self.headers,
                          timeout=600) as r:
            self.status = r.status_code
            lines = r.iter_lines()  # kept open: closing it would close the connection, and cancel
            next(lines)
            self.streaming.set()  # its first token came: it runs
            self.release.wait(600)


def _queued(server: Server, headers: dict[str, str]) -> int:
    text = httpx.get(server.url + "/metrics", headers=headers, timeout=10).text
    return int(float(next(line.split()[-1] for line in text.splitlines() if line.startswith("inferno_queue_depth"))))


def test_queue_full_is_503_in_both_shapes(keyed: Server) -> None:
    headers = {"Authorization": "Bearer s3cret"}
    # one running, one waiting (the queue's single place), each held by a generation that only ends when its
    # client leaves; the next request is refused. No step depends on how fast the machine generates.
    running, waiting = Occupant(keyed, headers), Occupant(keyed, headers)
    try:
        running.start()
        assert running.streaming.wait(120), "the first generation never started"
        waiting.start()
        wait_for(lambda: _queued(keyed, headers) >= 1, "the second request to queue")
        r = httpx.post(keyed.url + "/api/generate", json={"model": "smollm2", "prompt": "x"}, headers=headers,
                       timeout=30)
        assert r.status_code == 503 and r.json() == {"error": "server busy, please try again"}
        r = httpx.post(keyed.url + "/v1/completions", json={"model": "smollm2", "prompt": "x"}, headers=headers,
                       timeout=30)
        assert r.status_code == 503 and r.json()["error"]["message"] == "server busy, please try again"
        running.release.set()  # the first goes away: the waiting one gets the model
        assert waiting.streaming.wait(120), "the queued generation never started"
    finally:
        for occupant in (running, waiting):
            occupant.release.set()
            occupant.join(60)
    assert (running.status, waiting.status) == (200, 200)


def test_body_size_limit(server: Server) -> None:
    r = httpx.post(server.url + "/v1/chat/completions", content=b"x" * (65 * 1024 * 1024), timeout=60,
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and "error" in r.json()


def test_access_log_has_a_json_line_per_request(server: Server) -> None:
    httpx.get(server.url + "/api/version", timeout=10)

    def logged() -> bool:
        lines = [json.loads(x) for x in server.log.read_text().splitlines() if x.startswith("{")]
        return any(x.get("path") == "/api/version" and x["status"] == 200 and x["method"] == "GET" for x in lines)

    wait_for(logged, "the access-log line")


def _generation_log(server: Server) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in server.log.read_text().splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("event") == "generation"]


@pytest.mark.parametrize("path, body", [
    ("/api/generate", {"prompt": "Tell me a long story."}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Tell me a long story."}], "stream": True,
                              "max_tokens": 1500}),
])
def test_client_disconnect_cancels_generation(server: Server, path: str, body: dict[str, object]) -> None:
    body = {**body, "model": "smollm2", "options": {"num_predict": 1500, "ignore_eos": True}, "ignore_eos": True}
    before = len(_generation_log(server))
    with httpx.stream("POST", server.url + path, json=body, timeout=60) as r:
        for _ in r.iter_lines():
            break  # go away after the first chunk
    r = httpx.post(server.url + "/api/generate", json={"model": "smollm2", "prompt": "y", "stream": False,
                                                       "options": {"num_predict": 2, "ignore_eos": True}}, timeout=120)
    assert r.status_code == 200 and r.json()["eval_count"] == 2
    finished = _generation_log(server)[before:]
    assert finished[0]["reason"] == "cancelled" and finished[0]["completion_tokens"] < 1500


def test_openai_async_client(server: Server) -> None:
    async def go() -> tuple[str, list[str]]:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        r = await client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=3)
        stream = await client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                                      max_tokens=3, stream=True)
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        return r.choices[0].finish_reason, parts

    finish, parts = asyncio.run(go())
    assert finish in ("length", "stop") and parts


def test_logprobs_and_n(server: Server) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                       logprobs=True, top_logprobs=3, n=2, extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1]
    lp = r.choices[0].logprobs
    assert lp and lp.content and len(lp.content) == 4
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in lp.content)
    assert r.usage and r.usage.completion_tokens == 8


def test_open_webui_connection_sequence(server: Server) -> None:
    base = server.url
    assert httpx.get(base + "/api/version", timeout=10).status_code == 200
    assert httpx.get(base + "/api/tags", timeout=10).json()["models"]
    assert "models" in httpx.get(base + "/api/ps", timeout=10).json()
    with httpx.stream("POST", base + "/api/chat", timeout=60, json={
            "model": "smollm2:latest", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "options": {"num_predict": 5}}) as r:
        lines = [json.loads(x) for x in r.iter_lines() if x]
    assert lines[-1]["done"] is True
    r = httpx.post(base + "/api/generate", json={"model": "smollm2:latest", "keep_alive": 0}, timeout=30)
    assert r.json()["done_reason"] == "unload"
    wait_for(lambda: "smollm2:latest" not in {m["name"] for m in httpx.get(base + "/api/ps", timeout=10).json()[
        "models"]}, "smollm2 to unload")


def test_sigterm_during_a_stream_shuts_down_cleanly(tmp_path: Path, smollm2_path: Path) -> None:
    home = tmp_path / "home"
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(smollm2_path, "smollm2", source="t", mode="link")
    # the shutdown waits for the stream however slow the machine is (the timeout only bounds a hang)
    s = start_server(home, {"INFERNO_SHUTDOWN_TIMEOUT": "600"})
    body = {"model": "smollm2", "prompt": "x", "options": {"num_predict": 40, "ignore_eos": True}}
    with httpx.stream("POST", s.url + "/api/generate", json=body, timeout=60) as r:
        it = r.iter_lines()
        next(it)
        s.proc.send_signal(signal.SIGTERM)
        lines = [json.loads(x) for x in it if x]
    assert s.proc.wait(timeout=30) == 0
    assert lines and lines[-1]["done"] is True  # the stream in flight was finished, not cut
    with pytest.raises(httpx.ConnectError):
        httpx.get(s.url + "/health", timeout=2)


def test_metrics_and_health(server: Server) -> None:
    httpx.post(server.url + "/api/generate", json={"model": "tiny", "prompt": "x", "stream": False,
                                                    "options": {"num_predict": 3, "ignore_eos": True}}, timeout=60)
    httpx.post(server.url + "/api/chat", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
               timeout=60)
    text = httpx.get(server.url + "/metrics", timeout=10).text
    assert 'inferno_http_requests_total{method="POST",route="/api/generate",status="200"}' in text
    assert 'inferno_http_requests_total{method="POST",route="/api/chat",status="404"}' in text
    assert 'inferno_completion_tokens_total{model="tiny"}' in text
    assert "inferno_time_to_first_token_seconds_bucket" in text and "inferno_queue_depth" in text
    assert "inferno_loaded_models" in text and "inferno_time_per_output_token_seconds" in text
    assert "tiny" in httpx.get(server.url + "/health", timeout=10).json()["models"]


def test_configurable_limits(tmp_path: Path, tiny_gguf: Path) -> None:
    home = tmp_path / "home"
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(tiny_gguf, "tiny", source="t")
    s = start_server(home, {"INFERNO_MAX_BODY_BYTES": "4096", "INFERNO_MAX_PROMPT_TOKENS": "50"})
    try:
        big = httpx.post(s.url + "/api/generate", json={"model": "tiny", "prompt": "x" * 5000}, timeout=30)
        assert big.status_code == 413
        long = httpx.post(s.url + "/api/generate", json={"model": "tiny", "prompt": "x" * 200, "stream": False},
                          timeout=30)
        assert long.status_code == 400 and "at most 50" in long.json()["error"]
        ok = httpx.post(s.url + "/api/generate", json={"model": "tiny", "prompt": "hi", "stream": False,
                                                       "options": {"num_predict": 1}}, timeout=30)
        assert ok.status_code == 200
    finally:
        stop_server(s)


def test_default_bind_is_loopback(tmp_path: Path) -> None:
    assert load_settings({"INFERNO_HOME": str(tmp_path)}).host == "127.0.0.1"


def test_names_cannot_escape_the_store(server: Server, tmp_path: Path) -> None:
    outside = server.home.parent
    before = sorted(p.name for p in outside.iterdir())
    attempts = [
        ("/api/copy", {"source": "tiny", "destination": "../../escaped"}),
        ("/api/copy", {"source": "tiny", "destination": "/tmp/escaped"}),
        ("/api/create", {"model": "../escaped", "from": "tiny"}),
        ("/api/create", {"model": "ok-name", "files": {"../../x.gguf": "sha256:" + "a" * 64}}),
        ("/api/pull", {"model": "tiny", "name": "../x"}),
        ("/api/delete", {"model": "../../models"}),
    ]
    for path, body in attempts:
        r = httpx.request("DELETE" if path == "/api/delete" else "POST", server.url + path,
                          json={**body, "stream": False}, timeout=30)
        assert 400 <= r.status_code < 500, (path, body, r.text)
    r = httpx.post(server.url + "/api/blobs/sha256:..%2F..%2Fevil", content=b"x", timeout=30)
    assert 400 <= r.status_code < 500
    assert sorted(p.name for p in outside.iterdir()) == before
