"""The batching engine through a real `inferno serve`, driven with the official clients, concurrently."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import ollama
from openai import AsyncOpenAI, OpenAI

from .conftest import Server, wait_for

QUESTIONS = {"What is the capital of France?": "paris", "What is the capital of Japan?": "tokyo",
             "Who wrote Romeo and Juliet?": "shakespeare", "What colour is a clear daytime sky?": "blue"}
TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
SCHEMA = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}


def ask(client: AsyncOpenAI, question: str, **kw: Any) -> Any:
    return client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": question}],
                                          temperature=0, max_tokens=kw.pop("max_tokens", 60), **kw)


async def stream_text(client: AsyncOpenAI, question: str) -> str:
    out = []
    async for chunk in await ask(client, question, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            out.append(chunk.choices[0].delta.content)
    return "".join(out)


def test_concurrent_streams_each_answer_their_own_question(server: Server) -> None:
    async def main() -> list[str]:
        client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        return await asyncio.gather(*(stream_text(client, q) for q in QUESTIONS))

    answers = asyncio.run(main())
    for (question, expected), answer in zip(QUESTIONS.items(), answers, strict=True):
        assert expected in answer.lower(), (question, answer)


def test_grammars_and_tool_calls_beside_plain_requests(server: Server) -> None:
    async def main() -> tuple[Any, ...]:
        client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        schema = {"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}}
        return tuple(await asyncio.gather(
            ask(client, "Reply with JSON: the colour of grass.", response_format=schema, max_tokens=200),
            ask(client, "What is the weather in Paris?", tools=TOOLS, tool_choice="required", max_tokens=200),
            ask(client, "What is the capital of France?"),
            ask(client, "What is the capital of Japan?")))

    structured, tool, plain1, plain2 = asyncio.run(main())
    assert structured.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(structured.choices[0].message.content)["colour"], str)
    calls = tool.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    assert isinstance(json.loads(calls[0].function.arguments)["city"], str)
    assert "paris" in plain1.choices[0].message.content.lower()
    assert "tokyo" in plain2.choices[0].message.content.lower()


def test_schema_strings_hold_no_raw_control_characters(server: Server) -> None:
    # The reproduction: llama-cpp-python's converter let a raw newline into the string.
    client = ollama.Client(host=server.url)
    stopped = 0
    for prompt in ("Pick a colour.", "Describe a colour in two lines.", "Give me a colour as JSON."):
        r = client.chat(model="smollm2", messages=[{"role": "user", "content": prompt}], format=SCHEMA,
                        options={"temperature": 0, "num_predict": 200})
        # the grammar's separators are spaces and its strings exclude control characters: none anywhere
        assert r.message.content and not any(ord(c) < 0x20 for c in r.message.content)
        if r.done_reason == "stop":  # every schema-constrained answer that stops parses
            stopped += 1
            assert isinstance(json.loads(r.message.content)["colour"], str)
    assert stopped  # (greedy: at least the last one does)


def test_n_choices_decode_together_and_differ_by_seed(server: Server) -> None:
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Tell me a story."}],
                                       n=3, temperature=1.0, seed=4, max_tokens=24)
    texts = [c.message.content for c in r.choices]
    assert [c.index for c in r.choices] == [0, 1, 2] and all(texts)
    assert len(set(texts)) > 1  # seed, seed + 1, seed + 2
    assert r.usage is not None and r.usage.completion_tokens >= 3


def test_ps_and_metrics_show_slots_in_use(server: Server) -> None:
    body = {"model": "tiny", "prompt": "go", "stream": True, "options": {"num_predict": 100000, "ignore_eos": True,
                                                                          "num_ctx": 2048}}
    with httpx.Client(timeout=60) as c, c.stream("POST", server.url + "/api/generate", json=body) as r:
        lines = r.iter_lines()
        next(lines)

        def tiny(path: str) -> dict[str, Any]:
            return next(m for m in c.get(server.url + path).json()["models"] if m["name"].startswith("tiny"))

        wait_for(lambda: tiny("/inferno/ps")["slots_in_use"] == 1, "a slot in use")
        assert tiny("/api/ps")["slots"] == 4
        metrics = c.get(server.url + "/metrics").text
        assert 'inferno_slots_in_use{model="tiny"} 1.0' in metrics and 'inferno_slots{model="tiny"} 4.0' in metrics
        assert tiny("/inferno/ps")["tokens_per_second"] > 0
    wait_for(lambda: tiny_free(server), "the slot to be freed when the client went away")


def tiny_free(server: Server) -> bool:
    models = httpx.get(server.url + "/inferno/ps", timeout=10).json()["models"]
    return all(m["slots_in_use"] == 0 for m in models if m["name"].startswith("tiny"))
