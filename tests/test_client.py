"""The native client against a real `inferno serve`, sync and async, plus its error and retry behaviour."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferno.client import (
    APIConnectionError,
    APITimeoutError,
    AsyncInfernoClient,
    AuthenticationError,
    BadRequestError,
    InfernoClient,
    NotFoundError,
    ServerBusyError,
    StreamError,
)

from .conftest import Server
from .local_http import LocalServer, QuietHandler

MSG = [{"role": "user", "content": "Name three primary colours"}]


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[InfernoClient]:
    with InfernoClient(server.url) as c:
        yield c


def test_chat(client: InfernoClient) -> None:
    r = client.chat.completions.create(model="smollm2", messages=MSG, temperature=0, max_tokens=40)
    assert "red" in (r.choices[0].message.content or "").lower()
    assert r.usage and r.usage.total_tokens > 0 and r.choices[0].finish_reason == "stop"


def test_chat_stream_with_usage(client: InfernoClient) -> None:
    chunks = list(client.chat.completions.create(model="smollm2", messages=MSG, stream=True, max_tokens=6,
                                                 ignore_eos=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage and chunks[-1].usage.completion_tokens == 6


def test_tool_call_deltas(client: InfernoClient) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    chunks = list(client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Paris?"}],
                                                 tools=tools, tool_choice="required", stream=True, max_tokens=100,
                                                 temperature=0))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function and calls[0].function.name == "get_weather"
    assert "city" in json.loads(calls[0].function.arguments or "{}")


def test_completions_embeddings_models(client: InfernoClient) -> None:
    c = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=4, temperature=0)
    assert "Paris" in c.choices[0].text
    streamed = list(client.completions.create(model="tiny", prompt="x", max_tokens=3, stream=True))
    assert streamed[-1].choices[0].finish_reason
    e = client.embeddings.create(model="smollm2", input=["a", "b"])
    assert len(e.data) == 2 and len(e.data[0].embedding) == 576
    assert {m.id for m in client.models.list().data} >= {"smollm2:latest", "tiny:latest"}
    assert client.models.retrieve("tiny").id == "tiny:latest"


def test_management(client: InfernoClient, tiny_gguf: Path) -> None:
    progress = list(client.pull(str(tiny_gguf)))
    assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
    assert any(p.total for p in progress)
    assert client.pull(str(tiny_gguf), stream=False).status == "success"
    shown = client.show("smollm2")
    assert shown.model_info["general.architecture"] == "llama" and "completion" in shown.capabilities
    client.copy("tiny", "client-copy")
    assert "client-copy:latest" in {m.id for m in client.models.list().data}
    client.delete("client-copy")
    with pytest.raises(NotFoundError):
        client.delete("client-copy")
    tokens = client.tokenize("smollm2", "hello world").tokens
    assert tokens and client.detokenize("smollm2", tokens).text == "hello world"
    client.chat.completions.create(model="tiny", messages=MSG, max_tokens=1, keep_alive="5m")
    assert "tiny" in {m.name for m in client.ps().models}


def test_async_client(server: Server) -> None:
    async def go() -> tuple[str, list[str], int, str]:
        async with AsyncInfernoClient(server.url) as a:
            r = await a.chat.completions.create(model="smollm2", messages=MSG, max_tokens=20, temperature=0)
            stream = await a.chat.completions.create(model="tiny", messages=MSG, max_tokens=3, stream=True)
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            e = await a.embeddings.create(model="smollm2", input="x")
            pulls = [p.status async for p in await a.pull("smollm2")]
            return r.choices[0].message.content or "", parts, len(e.data[0].embedding), pulls[-1]

    text, parts, dims, last = asyncio.run(go())
    assert text and parts and dims == 576 and last == "success"


def test_async_errors(server: Server) -> None:
    async def go() -> None:
        async with AsyncInfernoClient(server.url, max_retries=0) as a:
            with pytest.raises(NotFoundError):
                await a.chat.completions.create(model="nope", messages=MSG)
            with pytest.raises(BadRequestError):
                await a.chat.completions.create(model="smollm2", messages=MSG, max_tokens=-1)

    asyncio.run(go())


def test_error_classes(client: InfernoClient, server: Server) -> None:
    with pytest.raises(NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=MSG)
    assert info.value.status_code == 404 and 'model "nope" not found' in info.value.message
    with pytest.raises(BadRequestError) as bad:
        client.chat.completions.create(model="smollm2", messages=MSG, temperature=9)
    assert bad.value.status_code == 400 and "temperature" in bad.value.message
    with pytest.raises(NotFoundError):
        client.show("nope")  # the Ollama-shaped error body works too
    with pytest.raises(StreamError) as mid:
        list(client.pull("pypi:inferno-no-such-distribution-4f1c2b"))
    assert "no wheel" in mid.value.message or "pip" in mid.value.message


def test_connection_error_says_what_to_do() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with InfernoClient(f"http://127.0.0.1:{port}", max_retries=1, backoff=0.01) as c, \
            pytest.raises(APIConnectionError, match="is `inferno serve` running"):
        c.models.list()


def test_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts, never answers
    try:
        with InfernoClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5, max_retries=0) as c, \
                pytest.raises(APITimeoutError):
            c.models.list()
    finally:
        listener.close()


class _Flaky(QuietHandler):
    calls: list[str] = []
    failures = 2
    status = 503

    def do_GET(self) -> None:
        type(self).calls.append(self.path)
        if len(type(self).calls) <= type(self).failures:
            body, code = json.dumps({"error": "server busy, please try again"}).encode(), type(self).status
        else:
            body, code = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode(), 200
        self.send_bytes(code, body)


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Flaky", (_Flaky,), {"calls": []})
    server = LocalServer(handler)
    yield server.url, handler
    server.close()


def test_retries_on_503_then_succeeds(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    with InfernoClient(url, max_retries=2, backoff=0.01) as c:
        assert [m.id for m in c.models.list().data] == ["m"]
    assert len(handler.calls) == 3


def test_no_more_retries_than_asked(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    with InfernoClient(url, max_retries=1, backoff=0.01) as c, pytest.raises(ServerBusyError) as info:
        c.models.list()
    assert info.value.status_code == 503 and len(handler.calls) == 2


def test_other_errors_are_not_retried(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.status = 401
    with InfernoClient(url, max_retries=3, backoff=0.01) as c, pytest.raises(AuthenticationError):
        c.models.list()
    assert len(handler.calls) == 1


def test_leaving_a_stream_early_cancels_on_the_server(client: InfernoClient, server: Server) -> None:
    before = server.log.read_text().count('"reason": "cancelled"')
    stream = client.chat.completions.create(model="smollm2", messages=MSG, stream=True, max_tokens=1500,
                                            ignore_eos=True)
    for _ in stream:
        break
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.log.read_text().count('"reason": "cancelled"') == before:
        time.sleep(0.1)
    assert server.log.read_text().count('"reason": "cancelled"') == before + 1


def test_inferno_ps_uses_the_client(server: Server) -> None:
    InfernoClient(server.url).chat.completions.create(model="tiny", messages=MSG, max_tokens=1)
    env = {**os.environ, "INFERNO_HOST": server.url.removeprefix("http://")}
    out = subprocess.run([sys.executable, "-m", "inferno", "ps"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "tiny" in out.stdout and out.stdout.startswith("NAME")
    header, row = out.stdout.splitlines()[0].split(), next(x for x in out.stdout.splitlines() if "tiny" in x)
    assert header[:7] == ["NAME", "SIZE", "CONTEXT", "SLOTS", "KV", "QUEUED", "TOK/S"] and " 0/4 " in row
    env["INFERNO_HOST"] = "127.0.0.1:1"
    out = subprocess.run([sys.executable, "-m", "inferno", "ps"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "is `inferno serve` running" in out.stderr
