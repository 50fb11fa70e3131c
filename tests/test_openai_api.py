"""The OpenAI dialect against a real `inferno serve`, driven with the official openai package."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from .conftest import Server

MSG: list[Any] = [{"role": "user", "content": "Name three primary colours"}]
TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture(scope="module")
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_models(client: OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"smollm2:latest", "tiny:latest"} <= ids
    assert client.models.retrieve("smollm2").id == "smollm2:latest"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_chat_completion(client: OpenAI) -> None:
    r = client.chat.completions.create(model="smollm2", messages=MSG, temperature=0, max_tokens=60)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    choice = r.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert "red" in (choice.message.content or "").lower()
    assert r.usage and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_with_usage(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="smollm2", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}, max_tokens=8,
                                                 extra_body={"ignore_eos": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage and chunks[-1].usage.completion_tokens == 8


def test_raw_sse_framing(server: Server) -> None:
    body = {"model": "tiny", "messages": MSG, "stream": True, "max_tokens": 3}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = "".join(r.iter_text())
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    json.loads(events[0][6:])


def json_schema_format(schema: dict[str, Any]) -> Any:
    return {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}


def test_json_schema_response_format(client: OpenAI) -> None:
    # greedy, with room to finish: an answer that stops must be whole JSON, never one cut by max_tokens
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    r = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "What colour is grass? Answer in JSON."}],
        response_format=json_schema_format(schema), max_tokens=300, temperature=0)
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    assert isinstance(json.loads(r.choices[0].message.content or "")["colour"], str)
    r = client.chat.completions.create(model="smollm2", messages=MSG, response_format={"type": "json_object"},
                                       max_tokens=400, temperature=0)
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    json.loads(r.choices[0].message.content or "")


def test_forced_tool_call(client: OpenAI) -> None:
    r = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Weather in Paris?"}],
                                       tools=TOOLS, tool_choice="required", max_tokens=100, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)


def test_tool_call_streamed_and_result_round_trip(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, stream=True, max_tokens=100,
        temperature=0))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function and calls[0].function.name == "get_weather" and calls[0].index == 0
    history: list[Any] = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "tool_calls": [{"id": calls[0].id, "type": "function",
                                              "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny, 20 C"}]
    follow = client.chat.completions.create(model="smollm2", max_tokens=20, messages=history)
    assert follow.choices[0].message.content


def test_completions(client: OpenAI) -> None:
    r = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=5, temperature=0)
    assert r.object == "text_completion" and "Paris" in r.choices[0].text
    echo = client.completions.create(model="tiny", prompt="abc", max_tokens=2, echo=True)
    assert echo.choices[0].text.startswith("abc")
    default = client.completions.create(model="tiny", prompt="abc", extra_body={"ignore_eos": True})
    assert default.usage and default.usage.completion_tokens <= 16
    streamed = list(client.completions.create(model="tiny", prompt="abc", max_tokens=3, stream=True))
    assert streamed[-1].choices[0].finish_reason in ("length", "stop")


def test_embeddings(client: OpenAI) -> None:
    r = client.embeddings.create(model="smollm2", input=["The cat sits.", "A cat is sitting.", "Stocks fell."])
    assert [d.index for d in r.data] == [0, 1, 2] and len(r.data[0].embedding) == 576
    assert r.usage.prompt_tokens > 0
    one = client.embeddings.create(model="smollm2", input="hello", dimensions=32)
    assert len(one.data[0].embedding) == 32
    # the SDK asks for base64 by default and decodes it; check the raw wire too
    raw = httpx.post(f"{client.base_url}embeddings", json={"model": "smollm2", "input": "hi",
                                                           "encoding_format": "base64"}, timeout=60).json()
    vec = struct.unpack("<576f", base64.b64decode(raw["data"][0]["embedding"]))
    assert abs(sum(x * x for x in vec) - 1) < 1e-4
    tokens = client.embeddings.create(model="smollm2", input=[[504, 2988]])
    assert len(tokens.data) == 1


@pytest.mark.parametrize("kwargs, status", [
    ({"model": "nope"}, 404),
    ({"model": "../../etc/passwd"}, 400),
    ({"max_tokens": -5}, 400),
    ({"temperature": 7}, 400),
    ({"messages": []}, 400),
    ({"messages": [{"role": "wizard", "content": "x"}]}, 400),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "bogus"}}}}, 400),
    ({"tool_choice": "required"}, 400),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400),
    ({"messages": [{"role": "user", "content": "x" * 40000}]}, 400),
])
def test_bad_requests_get_openai_shaped_errors(server: Server, kwargs: dict[str, object], status: int) -> None:
    body = {"model": "smollm2", "messages": MSG, "max_tokens": 4, **kwargs}
    r = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["type"] == ("not_found_error" if status == 404 else "invalid_request_error")


def test_sdk_raises_the_right_exceptions(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MSG)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", messages=MSG, max_tokens=0)
    assert "max_tokens" in str(info.value)


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe\x00", b"[1, 2]", b"[" * 5000 + b"]" * 5000, b""])
def test_malformed_bodies(server: Server, raw: bytes) -> None:
    r = httpx.post(f"{server.url}/v1/chat/completions", content=raw, timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()


def test_unknown_route_and_method(server: Server) -> None:
    r = httpx.get(f"{server.url}/v1/nothing", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = httpx.get(f"{server.url}/v1/chat/completions", timeout=10)
    assert r.status_code == 405 and "error" in r.json()


def test_health_and_openapi(server: Server) -> None:
    health = httpx.get(f"{server.url}/health", timeout=10).json()
    assert health["status"] == "ok" and isinstance(health["models"], list)
    doc = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    for path in ("/v1/chat/completions", "/v1/embeddings", "/api/chat", "/api/generate", "/api/pull"):
        assert path in doc["paths"], path
    ref = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert "messages" in doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]


def test_cors_allows_the_servers_own_origin_and_sdk_headers(server: Server) -> None:
    own = server.url.replace("127.0.0.1", "localhost")  # the server's own origin (its web UI)
    r = httpx.options(f"{server.url}/v1/chat/completions", timeout=10, headers={
        "Origin": own, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == own
    assert "x-stainless-os" in r.headers["access-control-allow-headers"]
    evil = httpx.get(f"{server.url}/v1/models", headers={"Origin": "https://evil.example"}, timeout=10)
    assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers


def test_dns_rebinding_is_refused(server: Server) -> None:
    r = httpx.get(f"{server.url}/v1/models", headers={"Host": "evil.example:8000"}, timeout=10)
    assert r.status_code == 400
