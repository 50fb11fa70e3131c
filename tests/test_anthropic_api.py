"""Anthropic's Messages API against a real `inferno serve`, driven with the official anthropic package.

The SDK has no `temperature` argument any more: greedy decoding goes in `extra_body`."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import anthropic
import httpx
import pytest

from inferno.api import (
    IMAGE_MARKER,
    BadRequestError,
    BusyError,
    ImagePolicy,
    InfernoError,
    ModelNotFoundError,
    UnavailableError,
)
from inferno.config import load_settings
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_gguf

from .conftest import Server, start_server, stop_server
from .image_server import serve_bytes
from .test_vision import BLUE, IMAGE_TOKENS, RED

GREEDY: Any = {"temperature": 0}
JSON_SCHEMA: Any = {"type": "json_schema", "schema": {
    "type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}}
COLOURS: Any = [{"role": "user", "content": "Name three primary colours"}]
TOOLS: Any = [{"name": "get_weather", "description": "Weather in a city", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def _text(msg: anthropic.types.Message) -> str:
    block = msg.content[0]
    assert block.type == "text", msg
    return block.text


def _error(e: anthropic.APIStatusError) -> dict[str, Any]:
    body = cast(dict[str, Any], e.body)
    assert body["type"] == "error", body
    return body["error"]


@pytest.fixture(scope="module")
def claude(server: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)


def test_create(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model="smollm2", max_tokens=60, messages=COLOURS, extra_body=GREEDY)
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.model == "smollm2" and msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert "red" in _text(msg).lower()
    assert msg.usage.input_tokens > 0 and 0 < msg.usage.output_tokens < 60


def test_system_blocks_and_multi_turn(claude: anthropic.Anthropic, server: Server) -> None:
    """System blocks and content blocks reach the model as the same conversation in plain messages would: the same
    prompt (its token count) and, greedy, the same answer as the OpenAI dialect gives it (a 135M model is too
    small to be asked what it was told)."""
    msg = claude.messages.create(
        model="smollm2", max_tokens=40, extra_body=GREEDY,
        system=[{"type": "text", "text": "You are a helpful assistant."}, {"type": "text", "text": "Be brief."}],
        messages=[{"role": "user", "content": "My name is Ada."},
                  {"role": "assistant", "content": [{"type": "text", "text": "Nice to meet you, Ada!"}]},
                  {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]}])
    plain = httpx.post(server.url + "/v1/chat/completions", timeout=120, json={
        "model": "smollm2", "max_tokens": 40, "temperature": 0,
        "messages": [{"role": "system", "content": "You are a helpful assistant.\nBe brief."},
                     {"role": "user", "content": "My name is Ada."},
                     {"role": "assistant", "content": "Nice to meet you, Ada!"},
                     {"role": "user", "content": "What is my name?"}]}).json()
    assert msg.usage.input_tokens == plain["usage"]["prompt_tokens"]
    assert _text(msg) == plain["choices"][0]["message"]["content"]
    alone = claude.messages.create(model="smollm2", max_tokens=40, extra_body=GREEDY,
                                   messages=[{"role": "user", "content": "What is my name?"}])
    assert msg.usage.input_tokens > alone.usage.input_tokens + 10  # the history and both system blocks are in


def test_max_tokens_and_stop_sequences(claude: anthropic.Anthropic) -> None:
    cut = claude.messages.create(model="smollm2", max_tokens=3, messages=COLOURS, extra_body=GREEDY)
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3
    full = claude.messages.create(model="smollm2", max_tokens=60, messages=COLOURS, extra_body=GREEDY)
    text = _text(full)
    word = text.split()[3]  # a word from the middle of the greedy answer: the same answer stops before it
    stopped = claude.messages.create(model="smollm2", max_tokens=60, messages=COLOURS, extra_body=GREEDY,
                                     stop_sequences=["never said", word])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == word
    assert _text(stopped) == text[:text.index(word)]


def test_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="smollm2", max_tokens=60, system="Be brief.", extra_body=GREEDY,
                                messages=[{"role": "user", "content": "Say hello"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and _text(final) == text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    assert final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0) > 0
    same = claude.messages.create(model="smollm2", max_tokens=60, system="Be brief.", extra_body=GREEDY,
                                  messages=[{"role": "user", "content": "Say hello"}])
    assert _text(same) == text


def _events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in response.read().decode().split("\n\n"):
        if frame:
            head, data = frame.split("\n")
            assert head.startswith("event: ") and data.startswith("data: "), frame
            out.append((head[7:], json.loads(data[6:])))
    return out


def test_raw_event_sequence(server: Server) -> None:
    """The official order, each `event:` line naming its data's type; usage and stop reason at the end."""
    with httpx.stream("POST", f"{server.url}/v1/messages", timeout=120, headers={"anthropic-version": "2023-06-01"},
                      json={"model": "smollm2", "max_tokens": 5, "stream": True, "messages": COLOURS,
                            "temperature": 0, "stop_sequences": ["never said"]}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _events(r)
    assert all(name == data["type"] for name, data in events)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["role"] == "assistant"
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 5 and delta["usage"]["input_tokens"] > 0


def test_forced_tool_use_and_tool_result(claude: anthropic.Anthropic) -> None:
    ask: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    msg = claude.messages.create(model="smollm2", max_tokens=100, tools=TOOLS, tool_choice={"type": "any"},
                                 messages=ask, extra_body=GREEDY)
    assert msg.stop_reason == "tool_use"
    use = msg.content[-1]
    assert use.type == "tool_use" and use.name == "get_weather"
    assert isinstance(use.input, dict) and isinstance(use.input["city"], str)
    history: Any = [
        *ask, {"role": "assistant", "content": [use.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 24 °C"}]}]
    follow = claude.messages.create(model="smollm2", max_tokens=60, tools=TOOLS, extra_body=GREEDY, messages=history)
    assert follow.stop_reason in ("end_turn", "max_tokens")
    assert _text(follow)


def test_named_tool_streamed(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="smollm2", max_tokens=100, tools=TOOLS, extra_body=GREEDY,
                                tool_choice={"type": "tool", "name": "get_weather"},
                                messages=[{"role": "user", "content": "Is it raining in Oslo?"}]) as stream:
        final = stream.get_final_message()
    use = final.content[-1]
    assert final.stop_reason == "tool_use" and use.type == "tool_use" and use.name == "get_weather"
    assert isinstance(use.input, dict) and isinstance(use.input["city"], str)


def test_tool_choice_none_answers_in_text(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model="smollm2", max_tokens=20, tools=TOOLS, tool_choice={"type": "none"},
                                 messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                                 extra_body=GREEDY)
    assert msg.stop_reason != "tool_use" and [b.type for b in msg.content] == ["text"]


def test_structured_output(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model="smollm2", max_tokens=100, extra_body=GREEDY,
                                 output_config={"format": JSON_SCHEMA},
                                 messages=[{"role": "user", "content": "What colour is grass? Answer in JSON."}])
    assert msg.stop_reason == "end_turn"
    assert isinstance(json.loads(_text(msg))["colour"], str)


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    ask: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    plain = claude.messages.count_tokens(model="smollm2", messages=ask).input_tokens
    with_tools = claude.messages.count_tokens(model="smollm2", messages=ask, tools=TOOLS).input_tokens
    assert 0 < plain < with_tools
    assert claude.messages.count_tokens(model="smollm2", messages=ask, tools=TOOLS,
                                        tool_choice={"type": "none"}).input_tokens == plain
    used = claude.messages.create(model="smollm2", max_tokens=5, messages=ask, extra_body=GREEDY).usage
    assert used.input_tokens + (used.cache_read_input_tokens or 0) == plain  # the whole prompt, cached or not


def test_errors_in_anthropic_shape(claude: anthropic.Anthropic, server: Server) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert _error(missing.value) == {"type": "not_found_error",
                                     "message": 'model "nope" not found, try pulling it first'}
    with pytest.raises(anthropic.NotFoundError):  # before the stream starts: a real status, not an event
        claude.messages.create(model="nope", max_tokens=5, stream=True, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model="smollm2", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert _error(bad.value)["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError, match="not among the tools"):
        claude.messages.create(model="smollm2", max_tokens=5, tools=TOOLS, tool_choice={"type": "tool", "name": "x"},
                               messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"messages": [{"role": "user", "content": "x"}]}, 400, "max_tokens"),
    ({"max_tokens": 5, "messages": []}, 400, "messages"),
    ({"max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}, 400, "role"),
    ({"max_tokens": 5, "messages": [{"role": "system", "content": [{"type": "tool_use", "id": "a", "name": "b"}]}]},
     400, "text blocks only"),
    ({"max_tokens": 5, "temperature": 2, "messages": [{"role": "user", "content": "x"}]}, 400, "temperature"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, 400,
     "document"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b"}]}]},
     400, "assistant"),
    ({"max_tokens": 5, "tool_choice": {"type": "any"}, "messages": [{"role": "user", "content": "x"}]}, 400,
     "needs tools"),
    ({"max_tokens": 5, "tools": [{"type": "web_search_20250305", "name": "web_search"}],
      "messages": [{"role": "user", "content": "x"}]}, 400, "tools"),
])
def test_bad_bodies(server: Server, body: dict[str, Any], status: int, words: str) -> None:
    r = httpx.post(f"{server.url}/v1/messages", json={"model": "smollm2", **body}, timeout=60)
    assert r.status_code == status and r.json()["type"] == "error", r.text
    assert r.json()["error"]["type"] == "invalid_request_error" and words in r.json()["error"]["message"]


def test_unknown_route_and_method(server: Server) -> None:
    r = httpx.get(f"{server.url}/v1/messages", timeout=10)
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(f"{server.url}/v1/messages/nothing", json={}, timeout=10)
    assert r.status_code == 404 and r.json() == {"type": "error", "error": {
        "type": "not_found_error", "message": "no route POST /v1/messages/nothing"}}


def test_openapi_lists_the_routes(server: Server) -> None:
    paths = httpx.get(f"{server.url}/openapi.json", timeout=10).json()["paths"]
    assert "requestBody" in paths["/v1/messages"]["post"]
    assert "requestBody" in paths["/v1/messages/count_tokens"]["post"]


def test_error_types() -> None:
    """Statuses a live server rarely shows: a full queue is overloaded_error, which the SDK retries."""
    from inferno_plugins.anthropic_api.translate import error_body

    def kind(e: InfernoError) -> str:
        return error_body(e)["error"]["type"]

    assert kind(BusyError()) == "overloaded_error" and kind(UnavailableError("x")) == "api_error"
    assert kind(BadRequestError("x")) == "invalid_request_error" and kind(ModelNotFoundError("m")) == "not_found_error"
    assert kind(InfernoError("x")) == "api_error"


# A synthetic thinking model (Qwen3's switch), its output forced by a grammar to hold a think block.
THINKER = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
           "{% if add_generation_prompt %}<|assistant|>{% if enable_thinking is defined and enable_thinking is false %}"
           "<think>\n\n</think>\n\n{% endif %}{% endif %}")
THINK_GRAMMAR = 'root ::= "<think>" [a-z]{3,8} "</think>" [A-Z]{2,5}'


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Server]:
    """The tiny model and a thinking one, behind an API key."""
    home = tmp_path_factory.mktemp("anthropic-keyed")
    h = Inferno(load_settings({"INFERNO_HOME": str(home)}))
    h.import_file(tiny_gguf, "tiny", source="t")
    h.import_file(write_tiny_gguf(home.parent / "thinker.gguf", chat_template=THINKER), "thinker", source="t")
    s = start_server(home, {"INFERNO_API_KEY": "sekrit"})
    yield s
    stop_server(s)


def test_thinking_blocks(keyed_server: Server) -> None:
    claude = anthropic.Anthropic(base_url=keyed_server.url, api_key="sekrit", max_retries=0)
    kw: Any = {"model": "thinker", "max_tokens": 64, "thinking": {"type": "enabled", "budget_tokens": 1024},
               "messages": [{"role": "user", "content": "hi"}], "extra_body": {"grammar": THINK_GRAMMAR, **GREEDY}}
    msg = claude.messages.create(**kw)
    assert [b.type for b in msg.content] == ["thinking", "text"]
    thought, answer = msg.content
    assert thought.type == "thinking" and re.fullmatch(r"[a-z]{3,8}", thought.thinking)
    assert answer.type == "text" and re.fullmatch(r"[A-Z]{2,5}", answer.text)
    with claude.messages.stream(**kw) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert kinds[0] == "thinking_delta" and kinds[-1] == "text_delta"
    assert [b.to_dict() for b in final.content] == [b.to_dict() for b in msg.content]
    history: Any = [{"role": "user", "content": "hi"},  # the earlier reasoning goes back to the template
                    {"role": "assistant", "content": [b.to_dict() for b in msg.content]},
                    {"role": "user", "content": "more"}]
    again = claude.messages.create(**{**kw, "messages": history})
    assert [b.type for b in again.content] == ["thinking", "text"]


def test_x_api_key(keyed_server: Server) -> None:
    """The SDK sends its key as x-api-key (with anthropic-version): the server's key check accepts it."""
    good = anthropic.Anthropic(base_url=keyed_server.url, api_key="sekrit", max_retries=0)
    assert good.messages.create(model="tiny", max_tokens=2, messages=[{"role": "user", "content": "x"}]).content
    bad = anthropic.Anthropic(base_url=keyed_server.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as denied:
        bad.messages.create(model="tiny", max_tokens=2, messages=[{"role": "user", "content": "x"}])
    assert _error(denied.value)["type"] == "authentication_error"


# images ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eyes(eyes_server: Server) -> anthropic.Anthropic:
    """A client of the server with the vision model `eyes` and the same model without, `tiny`."""
    return anthropic.Anthropic(base_url=eyes_server.url, api_key="unused", max_retries=0)


def _b64(data: str, media_type: str = "image/png") -> dict[str, Any]:
    return {"type": "base64", "media_type": media_type, "data": data}


def _asking(source: dict[str, Any]) -> Any:
    return [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                         {"type": "image", "source": source}]}]


def _look(claude: anthropic.Anthropic, source: dict[str, Any], model: str = "eyes") -> anthropic.types.Message:
    return claude.messages.create(model=model, max_tokens=12, messages=_asking(source), extra_body=GREEDY)


def _prompt_tokens(msg: anthropic.types.Message) -> int:
    return msg.usage.input_tokens + (msg.usage.cache_read_input_tokens or 0)


def test_image_blocks(eyes: anthropic.Anthropic) -> None:
    red, again, blue = _look(eyes, _b64(RED)), _look(eyes, _b64(RED)), _look(eyes, _b64(BLUE))
    assert _text(red) and _text(red) == _text(again) != _text(blue)
    plain = eyes.messages.create(model="eyes", max_tokens=1, extra_body=GREEDY,
                                 messages=[{"role": "user", "content": "what is this?"}])
    assert IMAGE_TOKENS < _prompt_tokens(red) - _prompt_tokens(plain) <= IMAGE_TOKENS + 4
    assert eyes.messages.count_tokens(model="eyes", messages=_asking(_b64(RED))).input_tokens == _prompt_tokens(red)
    with eyes.messages.stream(model="eyes", max_tokens=12, messages=_asking(_b64(RED)), extra_body=GREEDY) as s:
        assert _text(s.get_final_message()) == _text(red)


def test_an_image_in_a_tool_result(eyes: anthropic.Anthropic) -> None:
    def turns(image: str) -> Any:
        return [{"role": "user", "content": "show me"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "camera", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                    {"type": "text", "text": "snap"}, {"type": "image", "source": _b64(image)}]}]}]

    tools: Any = [{"name": "camera", "description": "Takes a picture", "input_schema": {"type": "object"}}]
    red = eyes.messages.count_tokens(model="eyes", messages=turns(RED), tools=tools).input_tokens
    snap: Any = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "snap"}]}
    text_only = eyes.messages.count_tokens(model="eyes", tools=tools, messages=[*turns(RED)[:2], snap])
    assert red - text_only.input_tokens > IMAGE_TOKENS


def test_image_refusals_are_400_in_anthropic_shape(eyes: anthropic.Anthropic) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"type": "url", "url": "http://169.254.169.254/latest/meta-data"}, "eyes", "INFERNO_ALLOW_IMAGE_URLS"),
        ({"type": "file", "file_id": "file_1"}, "eyes", "file_id"),
        ({"type": "base64", "media_type": "image/png"}, "eyes", "needs data"),
        (_b64(RED), "tiny", "no vision"),
        (_b64(base64.b64encode(b"GIF89a\x01\x00\x01\x00-garbage").decode(), "image/gif"), "eyes", "cannot be decoded"),
        (_b64(base64.b64encode(b"RIFF\x00\x00\x00\x00WEBPVP8 ").decode(), "image/webp"), "eyes",
         "not a PNG, JPEG, GIF or BMP"),
    ]
    for source, model, words in cases:
        with pytest.raises(anthropic.BadRequestError, match=words) as bad:
            _look(eyes, source, model)
        assert _error(bad.value)["type"] == "invalid_request_error"


def test_image_urls_are_fetched_only_when_allowed() -> None:
    from inferno_plugins.anthropic_api import schemas, translate

    def body(url: str) -> Any:
        return schemas.CountTokensBody(model="eyes", messages=_asking({"type": "url", "url": url}))

    with pytest.raises(BadRequestError, match="INFERNO_ALLOW_IMAGE_URLS"):
        translate.core_request(body("http://127.0.0.1:9/never.png"))
    with serve_bytes(base64.b64decode(RED)) as url:
        [m] = translate.core_request(body(url), ImagePolicy(allow_urls=True)).messages or []
    assert m.images == [RED] and m.content == "what is this?\n" + IMAGE_MARKER
