"""The Ollama dialect against a real `inferno serve`, driven with the official ollama package."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from .conftest import Server, wait_for

MSG = [{"role": "user", "content": "Name three primary colours"}]
TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture(scope="module")
def client(server: Server) -> ollama.Client:
    return ollama.Client(host=server.url)


def test_root_and_version(server: Server) -> None:
    r = httpx.get(server.url + "/", timeout=10)
    assert r.status_code == 200 and r.text == "Ollama is running"
    assert httpx.head(server.url + "/", timeout=10).status_code == 200
    version = httpx.get(server.url + "/api/version", timeout=10).json()["version"]
    assert all(part.isdigit() for part in version.split(".")) and len(version.split(".")) == 3


def test_tags(client: ollama.Client) -> None:
    models = {m.model: m for m in client.list().models}
    smol = models["smollm2:latest"]
    assert smol.details and smol.details.family == "llama" and smol.details.format == "gguf"
    assert smol.details.parameter_size == "135M" and smol.details.quantization_level == "Q4_1"
    assert smol.size and smol.size > 90_000_000 and len(smol.digest or "") == 64


def test_show(client: ollama.Client, server: Server) -> None:
    info = client.show("smollm2")
    assert info.modelinfo and info.modelinfo["general.architecture"] == "llama"
    assert info.modelinfo["llama.context_length"] == 8192
    assert info.capabilities and "completion" in info.capabilities
    assert info.template and "<|im_start|>" in info.template
    assert info.parameters and 'stop' in info.parameters
    assert info.details and info.details.quantization_level == "Q4_1"
    by_name = httpx.post(server.url + "/api/show", json={"name": "smollm2:latest"}, timeout=10)
    assert by_name.status_code == 200  # Continue sends {"name": ...}


def test_chat(client: ollama.Client) -> None:
    r = client.chat(model="smollm2", messages=MSG, options={"temperature": 0, "num_predict": 300})
    assert r.done and r.done_reason == "stop" and r.message.role == "assistant"
    assert "red" in r.message.content.lower()  # type: ignore
    assert r.eval_count and r.prompt_eval_count and r.total_duration and r.eval_duration


def test_chat_streaming(client: ollama.Client) -> None:
    chunks = list(client.chat(model="smollm2:latest", messages=MSG, stream=True,
                          options={"num_predict": 6, "ignore_eos": True}))
    assert all(not c.done for c in chunks[:-1]) and chunks[-1].done
    assert chunks[-1].done_reason == "length" and chunks[-1].eval_count == 6
    assert "".join(c.message.content or "" for c in chunks)


def test_raw_ndjson_framing(server: Server) -> None:
    with httpx.stream("POST", server.url + "/api/generate", json={"model": "tiny", "prompt": "hi",
                                                                  "options": {"num_predict": 3}}, timeout=60) as r:
        assert r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["done"] is True and all(not x["done"] for x in lines[:-1])
    assert lines[-1]["created_at"].endswith("Z")


def test_generate_with_context_system_and_raw(client: ollama.Client) -> None:
    first = client.generate(model="smollm2", prompt="My name is Ada.", options={"num_predict": 10})
    assert first.context
    second = client.generate(model="smollm2", prompt="What is my name?", context=first.context,
                             options={"num_predict": 10, "temperature": 0})
    # the model saw the first exchange before the new prompt (its cells reused: prompt_eval_count counts only the
    # tokens evaluated, as Ollama's does)
    assert second.context and second.context[:len(first.context)] == first.context
    assert second.prompt_eval_count and len(second.context) > len(first.context) + (second.eval_count or 0)
    raw = client.generate(model="tiny", prompt="<|user|>hi", raw=True, options={"num_predict": 2, "ignore_eos": True})
    assert raw.eval_count == 2


def test_generate_system_prompt_reaches_the_model(client: ollama.Client, server: Server) -> None:
    sys_ = client.generate(model="smollm2", prompt="hi", system="Answer in French.", options={"num_predict": 5})
    assert sys_.done and sys_.context
    # the returned context is the prompt the model saw (and its answer): the system text is in it
    seen = httpx.post(server.url + "/inferno/detokenize", json={"model": "smollm2", "tokens": sys_.context},
                      timeout=30).json()["text"]
    assert "Answer in French." in seen and seen.index("Answer in French.") < seen.index("hi")


def test_format_json_and_schema(client: ollama.Client) -> None:
    # greedy, with room to finish: a "stop" answer must be whole JSON, never one cut by num_predict
    dog = "Describe a dog as a JSON object with two keys."
    r = client.chat(model="smollm2", messages=[{"role": "user", "content": dog}],
                    format="json", options={"num_predict": 400, "temperature": 0})
    assert r.done_reason == "stop", r.message.content
    json.loads(r.message.content or "")
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    r = client.chat(model="smollm2", messages=[{"role": "user", "content": "How old is a puppy?"}],
                    format=schema, options={"num_predict": 200, "temperature": 0})
    assert r.done_reason == "stop", r.message.content
    assert isinstance(json.loads(r.message.content or "")["age"], int)


def test_tools_arguments_are_objects(server: Server) -> None:
    # Ollama has no tool_choice: a format schema of the call's shape is how a client forces one
    forced = {"type": "object", "required": ["name", "arguments"], "properties": {
        "name": {"const": "get_weather"}, "arguments": TOOLS[0]["function"]["parameters"]}}
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": TOOLS,
            "stream": False, "format": forced, "options": {"temperature": 0, "num_predict": 200}}
    r = httpx.post(server.url + "/api/chat", json=body, timeout=120).json()
    calls = r["message"].get("tool_calls") or []
    assert len(calls) == 1, r
    assert calls[0]["function"]["name"] == "get_weather"
    arguments = calls[0]["function"]["arguments"]
    assert isinstance(arguments, dict) and isinstance(arguments["city"], str)


def test_tool_result_messages_are_accepted(client: ollama.Client) -> None:
    r = client.chat(model="smollm2", tools=TOOLS, options={"num_predict": 20}, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                          "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"}])
    assert r.done


def test_embed_and_legacy_embeddings(client: ollama.Client) -> None:
    r = client.embed(model="smollm2", input=["The cat sits.", "A cat is sitting."])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 576
    assert abs(sum(x * x for x in r.embeddings[0]) - 1) < 1e-6
    assert r.prompt_eval_count and r.prompt_eval_count > 0
    single = client.embed(model="smollm2", input="hello", dimensions=16)
    assert len(single.embeddings[0]) == 16
    legacy = client.embeddings(model="smollm2", prompt="hello")
    assert len(legacy.embedding) == 576 and abs(sum(x * x for x in legacy.embedding) - 1) > 1e-3


def test_load_unload_and_ps(client: ollama.Client) -> None:
    r = client.generate(model="tiny", prompt="", keep_alive="10m")
    assert r.done and r.done_reason == "load"
    ps = {m.model: m for m in client.ps().models}
    assert "tiny:latest" in ps and ps["tiny:latest"].context_length
    assert ps["tiny:latest"].expires_at
    r = client.chat(model="tiny", messages=[], keep_alive=0)
    assert r.done_reason == "unload"
    wait_for(lambda: "tiny:latest" not in {m.model for m in client.ps().models}, "tiny to unload")


def test_options_unknown_ignored_bad_rejected(client: ollama.Client) -> None:
    r = client.generate(model="tiny", prompt="x", options={"num_predict": 2, "made_up_option": 1, "mirostat": 0,
                                                                  "ignore_eos": True})
    assert r.eval_count == 2
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model="tiny", prompt="x", options={"temperature": "hot"})
    assert info.value.status_code == 400 and "temperature" in info.value.error
    r = client.generate(model="tiny", prompt="x", options={"num_ctx": 512, "num_predict": 1})
    ps = {m.model: m for m in client.ps().models}
    assert ps["tiny:latest"].context_length == 2048  # no more than the loaded context: served as loaded


@pytest.mark.parametrize("path, body, status", [
    ("/api/chat", {"model": "nope", "messages": MSG}, 404),
    ("/api/generate", {"model": "nope", "prompt": "x"}, 404),
    ("/api/show", {"model": "nope"}, 404),
    ("/api/chat", {"model": "../../etc/passwd", "messages": MSG}, 400),
    ("/api/chat", {"messages": MSG}, 400),
    ("/api/chat", {"model": "smollm2", "messages": [{"role": "bogus", "content": "x"}]}, 400),
    ("/api/generate", {"model": "smollm2", "prompt": "x", "images": ["aGk="]}, 400),
    ("/api/generate", {"model": "smollm2", "prompt": "x", "keep_alive": "soon"}, 400),
    ("/api/generate", {"model": "smollm2", "prompt": "x", "format": "xml"}, 400),
    ("/api/embed", {"model": "nope", "input": "x"}, 404),
    ("/api/copy", {"source": "nope", "destination": "x"}, 404),
    ("/api/copy", {"source": "smollm2", "destination": "../x"}, 400),
    ("/api/pull", {"model": "nosuchthing"}, 400),
])
def test_errors_in_ollama_shape(server: Server, path: str, body: dict[str, object], status: int) -> None:
    r = httpx.post(server.url + path, json={**body, "stream": False}, timeout=60)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"}
    if status == 404 and path != "/api/copy":
        assert r.json()["error"].endswith("not found, try pulling it first")


def test_client_raises_response_error(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="nope", messages=MSG)
    assert info.value.status_code == 404


def test_error_before_streaming_is_a_status(server: Server) -> None:
    # longer than any context SmolLM2 is loaded with here (a smaller num_ctx is served by a loaded larger one),
    # and one user turn: nothing truncation may drop
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "x " * 9000}],
            "options": {"num_ctx": 512}}
    r = httpx.post(server.url + "/api/chat", json=body, timeout=60)
    assert r.status_code == 400 and "context window" in r.json()["error"]  # caught before streaming


def test_copy_delete(client: ollama.Client) -> None:
    client.copy("tiny", "tiny-copy")
    assert "tiny-copy:latest" in {m.model for m in client.list().models}
    client.delete("tiny-copy")
    assert "tiny-copy:latest" not in {m.model for m in client.list().models}
    with pytest.raises(ollama.ResponseError) as info:
        client.delete("tiny-copy")
    assert info.value.status_code == 404


def test_blob_upload_and_create(client: ollama.Client, server: Server, tiny_gguf: Path) -> None:
    data = tiny_gguf.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert httpx.head(f"{server.url}/api/blobs/{digest}", timeout=10).status_code == 404
    bad = httpx.post(f"{server.url}/api/blobs/sha256:{'0' * 64}", content=data, timeout=30)
    assert bad.status_code == 400
    assert httpx.post(f"{server.url}/api/blobs/{digest}", content=data, timeout=30).status_code == 201
    assert httpx.head(f"{server.url}/api/blobs/{digest}", timeout=10).status_code == 200
    statuses = [p.status for p in client.create(model="from-blob", files={"tiny.gguf": digest}, stream=True)]
    assert statuses[-1] == "success"
    assert "from-blob:latest" in {m.model for m in client.list().models}
    client.create(model="pirate", from_="smollm2", system="You are a pirate.",
                  parameters={"temperature": 0.1, "stop": ["END"]})
    shown = client.show("pirate")
    raw_show = httpx.post(f"{server.url}/api/show", json={"model": "pirate"}, timeout=120).json()
    assert raw_show["system"] == "You are a pirate." and shown.parameters and "END" in shown.parameters
    assert shown.details and shown.details.parent_model == "smollm2:latest"
    # the Modelfile is what the store knows, in Ollama's syntax: weights, template, system, each parameter
    lines = (shown.modelfile or "").splitlines()
    assert any(x.startswith("FROM /") and x.endswith(".gguf") for x in lines) and "# FROM pirate:latest" in lines
    assert 'SYSTEM """You are a pirate."""' in lines and "PARAMETER temperature 0.1" in lines
    assert 'PARAMETER stop "END"' in lines and any(x.startswith('TEMPLATE """') for x in lines)
    r = client.chat(model="pirate", messages=[{"role": "user", "content": "Who are you?"}],
                    options={"num_predict": 20})
    assert r.done
    for name in ("pirate", "from-blob"):
        client.delete(name)


def test_pull_streams_progress(client: ollama.Client, tiny_gguf: Path) -> None:
    progress = list(client.pull(str(tiny_gguf), stream=True))
    assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
    assert any(p.total for p in progress)
    assert "tiny:latest" in {m.model for m in client.list().models}
    done = client.pull(str(tiny_gguf), stream=False)
    assert done.status == "success"


def test_create_with_quantize(client: ollama.Client, server: Server) -> None:
    statuses = [p.status for p in client.create(model="tiny-q8", from_="tiny", quantize="q8_0", stream=True)]
    assert statuses[-1] == "success" and any(s and s.startswith("quantizing") for s in statuses)
    shown = client.show("tiny-q8")
    assert shown.details and shown.details.quantization_level == "Q8_0"
    r = client.generate(model="tiny-q8", prompt="x", options={"num_predict": 2, "ignore_eos": True})
    assert r.eval_count == 2
    client.delete("tiny-q8")
    bad = httpx.post(server.url + "/api/create", json={"model": "x", "from": "tiny", "quantize": "q9",
                                                       "stream": False}, timeout=60)
    assert bad.status_code == 400 and "unknown quantization method" in bad.json()["error"]
