"""Thinking models through a real `inferno serve`: a synthetic model whose template has a thinking switch,
its output forced by a grammar to hold a think block, through both dialects, streamed and not."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import ollama
import pytest
from openai import OpenAI

from inferno.config import load_settings
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_gguf

from .conftest import Server, start_server, stop_server

# Qwen3's switch: with enable_thinking false the template writes an empty block itself.
QWEN_LIKE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% if enable_thinking is defined and enable_thinking is false %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
# DeepSeek-R1's distills: the generation prompt opens the block; the output starts inside it.
R1_LIKE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}"
)
# gpt-oss' harmony: channels, and the effort in the system part
HARMONY_LIKE = (
    "<|start|>system<|message|>Reasoning: {{ reasoning_effort | default('medium') }}<|end|>"
    "{% for m in messages %}<|start|>{{ m['role'] }}{% if m['role'] == 'assistant' %}<|channel|>final{% endif %}"
    "<|message|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant{% endif %}"
)
GRAMMAR = 'root ::= "<think>" [a-z]{3,8} "</think>" [A-Z]{2,5}'
HARMONY_GRAMMAR = ('root ::= "<|channel|>analysis<|message|>" [a-z]{3,8} "<|end|><|start|>assistant<|channel|>final'
                   '<|message|>" [A-Z]{2,5}')
R1_GRAMMAR = 'root ::= [a-z]{3,8} "</think>" [A-Z]{2,5}'
LONG_GRAMMAR = 'root ::= "<think>" [a-z]{30,40} "</think>" [A-Z]{2,5}'
TOOL_GRAMMAR = ('root ::= "<think>" [a-z]{3,8} "</think>" "<tool_call>{\\"name\\": \\"get_weather\\", '
                '\\"arguments\\": {\\"city\\": \\"Paris\\"}}</tool_call>"')
TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("thinking")
    home = d / "home"
    h = Inferno(load_settings({"INFERNO_HOME": str(home)}))
    h.import_file(write_tiny_gguf(d / "qwen.gguf", chat_template=QWEN_LIKE), "thinker", source="test")
    h.import_file(write_tiny_gguf(d / "r1.gguf", chat_template=R1_LIKE), "r1", source="test")
    h.import_file(write_tiny_gguf(d / "oss.gguf", chat_template=HARMONY_LIKE), "oss", source="test")
    h.import_file(tiny_gguf, "tiny", source="test")
    s = start_server(home)
    yield s
    stop_server(s)


def oai(server: Server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def chat(server: Server, model: str = "thinker", grammar: str = GRAMMAR, **kw: Any) -> Any:
    kw.setdefault("max_tokens", 64)
    return oai(server).chat.completions.create(model=model, messages=MSG, temperature=0,  # type: ignore
                                               extra_body={"grammar": grammar}, **kw)


def test_capability_is_reported(server: Server) -> None:
    caps = httpx.post(f"{server.url}/api/show", json={"model": "thinker"}).json()["capabilities"]
    assert "thinking" in caps
    assert "thinking" not in httpx.post(f"{server.url}/api/show", json={"model": "tiny"}).json()["capabilities"]
    r = httpx.post(f"{server.url}/api/chat", json={"model": "tiny", "messages": MSG, "think": True})
    assert r.status_code == 400 and "does not support thinking" in r.json()["error"]
    r = httpx.post(f"{server.url}/api/chat", json={"model": "thinker", "messages": MSG, "think": "maybe"})
    assert r.status_code == 400


def test_openai_separates_reasoning_streamed_and_not(server: Server) -> None:
    r = chat(server)
    msg = r.choices[0].message
    reasoning = (msg.model_extra or {})["reasoning_content"]
    assert re.fullmatch(r"[a-z]{3,8}", reasoning) and re.fullmatch(r"[A-Z]{2,5}", msg.content or "")
    assert r.choices[0].finish_reason == "stop"
    thought, text = [], []
    for chunk in chat(server, stream=True):
        if chunk.choices:
            delta = chunk.choices[0].delta
            thought.append((delta.model_extra or {}).get("reasoning_content") or "")
            text.append(delta.content or "")
    assert ("".join(thought), "".join(text)) == (reasoning, msg.content)


def test_ollama_separates_thinking_streamed_and_not(server: Server) -> None:
    client = ollama.Client(host=server.url)
    opts = {"temperature": 0, "num_predict": 64, "grammar": GRAMMAR}
    r = client.chat(model="thinker", messages=MSG, options=opts, think=True)
    assert re.fullmatch(r"[a-z]{3,8}", r.message.thinking or "")
    assert re.fullmatch(r"[A-Z]{2,5}", r.message.content or "")
    parts = list(client.chat(model="thinker", messages=MSG, options=opts, think=True, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == r.message.thinking
    assert "".join(p.message.content or "" for p in parts) == r.message.content
    g = client.generate(model="thinker", prompt="hi", options=opts, think="high")
    assert re.fullmatch(r"[a-z]{3,8}", g.thinking or "") and re.fullmatch(r"[A-Z]{2,5}", g.response or "")
    streamed = list(client.generate(model="thinker", prompt="hi", options=opts, stream=True))
    assert "".join(p.thinking or "" for p in streamed) == g.thinking


def test_think_false_reaches_the_template(server: Server) -> None:
    def count(think: Any) -> int:
        body: dict[str, Any] = {"model": "thinker", "messages": MSG, "stream": False,
                                "options": {"num_predict": 1, "temperature": 0}}
        if think is not None:
            body["think"] = think
        return httpx.post(f"{server.url}/api/chat", json=body).json()["prompt_eval_count"]

    # byte-level vocabulary: the empty block the template writes is one token per character
    assert count(False) - count(None) == len("<think>\n\n</think>\n\n")
    assert count(True) == count(None)
    r = chat(server, reasoning_effort="none", grammar='root ::= [A-Z]{2,5}')
    assert r.usage.prompt_tokens == count(False)


def test_unterminated_block_at_max_tokens_is_thinking(server: Server) -> None:
    r = chat(server, grammar=LONG_GRAMMAR, max_tokens=12)
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "length"
    assert re.fullmatch(r"[a-z]{5}", (msg.model_extra or {})["reasoning_content"]) and not msg.content


def test_prompt_that_opens_the_block(server: Server) -> None:
    r = chat(server, model="r1", grammar=R1_GRAMMAR)
    msg = r.choices[0].message
    assert re.fullmatch(r"[a-z]{3,8}", (msg.model_extra or {})["reasoning_content"])
    assert re.fullmatch(r"[A-Z]{2,5}", msg.content or "")


def test_tool_call_after_thinking(server: Server) -> None:
    r = chat(server, grammar=TOOL_GRAMMAR, tools=TOOLS, max_tokens=128)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls and choice.message.tool_calls[0].function.name == "get_weather"
    assert re.fullmatch(r"[a-z]{3,8}", (choice.message.model_extra or {})["reasoning_content"])
    r2 = ollama.Client(host=server.url).chat(
        model="thinker", messages=MSG, tools=TOOLS, options={"temperature": 0, "grammar": TOOL_GRAMMAR})
    assert r2.message.tool_calls and r2.message.tool_calls[0].function.arguments == {"city": "Paris"}
    assert r2.message.thinking


def test_history_reasoning_is_accepted(server: Server) -> None:
    messages: Any = [{"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "HI", "reasoning_content": "greet"},
                     {"role": "user", "content": "again"}]
    r = oai(server).chat.completions.create(model="thinker", messages=messages, temperature=0, max_tokens=64,
                                            extra_body={"grammar": GRAMMAR})
    assert r.choices[0].message.content


def test_repl_toggles_thinking(home: Path, tmp_path: Path) -> None:
    import io

    from inferno.cli.runcmd import Session

    h = Inferno()
    h.import_file(write_tiny_gguf(tmp_path / "qwen.gguf", chat_template=QWEN_LIKE), "thinker", source="test")
    try:
        session = Session(h, "thinker", {"temperature": 0, "max_tokens": 1}, {}, None, None, False)
        session.command("/set nothink")
        assert session.think is False
        session.ask("hi", out=io.StringIO())
        session.command("/set think")
        assert session.think is True
        session.ask("hi", out=io.StringIO())
        assert [m.role for m in session.history] == ["user", "assistant"] * 2
    finally:
        h.engine.close()


def test_cli_frames_or_hides_the_reasoning(home: Path, tmp_path: Path) -> None:
    import io

    from click.testing import CliRunner

    from inferno.cli import build_cli
    from inferno.cli.runcmd import Session

    h = Inferno()
    h.import_file(write_tiny_gguf(tmp_path / "r1.gguf", chat_template=R1_LIKE), "r1", source="test")
    try:  # the template opens the block: with 4 tokens, everything said is reasoning
        session = Session(h, "r1", {"temperature": 0, "max_tokens": 4}, {}, None, None, False)
        out = io.StringIO()
        session.ask("hi", out=out)
        reasoning = session.history[-1].thinking
        assert reasoning and session.history[-1].content == ""
        assert out.getvalue() == f"Thinking...\n{reasoning}\n...done thinking.\n\n\n"
        session.hide_thinking = True
        out = io.StringIO()
        session.ask("hi", out=out)
        assert out.getvalue() == "\n" and session.history[-1].thinking
    finally:
        h.engine.close()
    r = CliRunner().invoke(build_cli(), ["run", "r1", "hi", "--max-tokens", "4", "--temperature", "0",
                                         "--hidethinking", "--no-think"])
    assert r.exit_code == 0 and "Thinking" not in r.output


def test_harmony_channels_through_both_dialects(server: Server) -> None:
    assert "thinking" in httpx.post(f"{server.url}/api/show", json={"model": "oss"}).json()["capabilities"]
    r = chat(server, model="oss", grammar=HARMONY_GRAMMAR, max_tokens=128)  # a byte vocabulary: tags are long
    msg = r.choices[0].message
    assert re.fullmatch(r"[a-z]{3,8}", (msg.model_extra or {})["reasoning_content"])
    assert re.fullmatch(r"[A-Z]{2,5}", msg.content or "")
    client = ollama.Client(host=server.url)
    opts = {"temperature": 0, "num_predict": 128, "grammar": HARMONY_GRAMMAR}
    parts = list(client.chat(model="oss", messages=MSG, options=opts, think=True, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == (msg.model_extra or {})["reasoning_content"]
    assert "".join(p.message.content or "" for p in parts) == msg.content

    def count(effort: str | None) -> int:  # the whole prompt's length (prompt_eval_count leaves out cached cells)
        r = OpenAI(base_url=server.url + "/v1", api_key="x").chat.completions.create(
            model="oss", messages=cast(Any, MSG), max_tokens=1,
            extra_body={"reasoning_effort": effort} if effort else None)
        assert r.usage is not None
        return r.usage.prompt_tokens

    assert count("low") == count("high") - 1 == count(None) - 3  # "low", "high", the default "medium"

    tool_grammar = ('root ::= "<|channel|>analysis<|message|>" [a-z]{3,8} "<|end|><|start|>assistant<|channel|>'
                    'commentary to=functions.get_weather <|constrain|>json<|message|>{\\"city\\": \\"Paris\\"}"')
    r = chat(server, model="oss", grammar=tool_grammar, tools=TOOLS, max_tokens=200)
    assert r.choices[0].finish_reason == "tool_calls"
    calls = r.choices[0].message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in calls] == [("get_weather", '{"city": "Paris"}')]
