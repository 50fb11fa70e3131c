"""The thinking splitter and template switch, unit by unit (no model)."""

from __future__ import annotations

from typing import Any

from inferno.engine import chat
from inferno.engine.thinking import (
    ThinkSplitter,
    can_switch_off,
    opens_inside,
    supports_thinking,
    template_vars,
)
from inferno.engine.types import Message


def split(pieces: list[str], inside: bool = False) -> tuple[str, str]:
    return run(ThinkSplitter(inside), pieces)


def run(s: Any, pieces: list[str]) -> tuple[str, str]:
    """Feed the pieces to a splitter: (all the thinking, all the answer)."""
    thought, text = "", ""
    for p in pieces:
        a, b = s.feed(p)
        thought, text = thought + a, text + b
    a, b = s.finish()
    return thought + a, text + b


def test_a_block_then_the_answer() -> None:
    assert split(["<think>\nI reason.\n</think>\n\nThe answer."]) == ("I reason.", "The answer.")


def test_tags_split_across_tokens() -> None:
    pieces = ["<", "th", "ink", ">", "step ", "one", "\n", "</", "thi", "nk", ">", "\n", "\n", "Yes", "."]
    assert split(pieces) == ("step one", "Yes.")
    assert split(list("<think>abc</think>xyz")) == ("abc", "xyz")


def test_reasoning_streams_before_the_block_closes() -> None:
    s = ThinkSplitter()
    assert s.feed("<think>hello ") == ("hello", "")
    assert s.feed("world</") == (" world", "")
    assert s.feed("think>ok") == ("", "ok")


def test_no_closing_tag_is_all_reasoning() -> None:
    assert split(["<think>", "still going", "</thi"]) == ("still going</thi", "")


def test_no_block_is_all_answer() -> None:
    assert split(["Plain ", "answer."]) == ("", "Plain answer.")
    assert split(["<"]) == ("", "<")  # a lone start of a tag at the very end is the answer's
    assert split(["  <b>bold</b>"]) == ("", "  <b>bold</b>")


def test_prompt_that_opens_the_block() -> None:
    assert opens_inside("<|assistant|><think>\n")
    assert not opens_inside("<|assistant|><think>\n\n</think>\n\n")
    assert split(["reasoning", "</think>", "answer"], inside=True) == ("reasoning", "answer")


def test_a_tool_call_after_thinking_reaches_the_parser() -> None:
    from inferno.engine.output import StreamedText
    from inferno.engine.types import Tool

    events: list[object] = []
    out = StreamedText([], True, events.append)
    s = ThinkSplitter()
    tool = Tool(name="get_weather")
    for piece in ["<think>need the weather", "</think>\n", '<tool_call>{"name": "get_weather", ',
                  '"arguments": {"city": "Paris"}}</tool_call>']:
        _, text = s.feed(piece)
        out.feed(text, None)
    calls = out.finish(s.finish()[1], [tool])
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris"})]


def test_capability_and_switch_from_the_template() -> None:
    qwen = "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>{% endif %}"
    assert supports_thinking(qwen) and can_switch_off(qwen)
    r1 = "{{ '<|Assistant|><think>\\n' }}"
    assert supports_thinking(r1) and not can_switch_off(r1)
    assert not supports_thinking("{{ messages }}") and not supports_thinking(None)


def test_switch_reaches_the_template() -> None:
    assert template_vars(None) == {}
    assert template_vars(False) == {"enable_thinking": False}
    assert template_vars("high") == {"enable_thinking": True, "reasoning_effort": "high"}
    tpl = ("{% for m in messages %}{{ m.content }}{% if m.reasoning_content %}[{{ m.reasoning_content }}]"
           "{% endif %}{% endfor %}{% if enable_thinking is defined and enable_thinking is false %}<think></think>"
           "{% endif %}{{ reasoning_effort | default('') }}")
    msgs = [Message(role="user", content="q"), Message(role="assistant", content="a", thinking="why")]
    render = lambda think: chat.render_chat(tpl, msgs, tools=None, bos_token="", eos_token="",  # noqa: E731
                                            extra=template_vars(think))
    assert render(None) == "qa[why]"
    assert render(False) == "qa[why]<think></think>"
    assert render("low") == "qa[why]low"


def harmony(pieces: list[str]) -> tuple[str, str]:
    from inferno.engine.thinking import HarmonySplitter

    return run(HarmonySplitter(), pieces)


def test_harmony_channels() -> None:
    out = "<|channel|>analysis<|message|>User says hi.<|end|><|start|>assistant<|channel|>final<|message|>Hello!"
    assert harmony([out]) == ("User says hi.", "Hello!")
    assert harmony(list(out)) == ("User says hi.", "Hello!")  # every tag split across pieces
    assert harmony(["<|channel|>analysis<|message|>cut sh", "ort"]) == ("cut short", "")  # max_tokens
    assert harmony(["Just text."]) == ("", "Just text.")


def test_harmony_tool_call_reaches_the_parser() -> None:
    out = ('<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary '
           'to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>')
    thought, text = harmony([out[i:i + 5] for i in range(0, len(out), 5)])
    assert thought == "Need weather."
    from inferno.engine.types import Tool

    _, calls = chat.parse_tool_calls(text, [Tool(name="get_weather")])
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris"})]
