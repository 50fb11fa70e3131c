"""Chat templates (sandboxed) and tool-call parsing, without a model."""

from __future__ import annotations

import pytest

from inferno.engine.chat import parse_tool_calls, render_chat, tool_call_schema, uses_tools
from inferno.engine.types import Message, Tool, ToolCall, ToolChoice
from inferno.errors import BadRequestError

TOOLS = [Tool(name="get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}}),
         Tool(name="add", parameters={"type": "object", "properties": {"a": {"type": "number"}}})]


@pytest.mark.parametrize("text, calls", [
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     [("get_weather", {"city": "Paris"})]),
    ('Let me check. <tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>'
     '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>',
     [("add", {"a": 1}), ("get_weather", {"city": "Rome"})]),
    ('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}}]', [("get_weather", {"city": "Oslo"})]),
    ('<|python_tag|>{"name": "add", "parameters": {"a": 2}}', [("add", {"a": 2})]),
    ('{"name": "get_weather", "arguments": "{\\"city\\": \\"Lima\\"}"}', [("get_weather", {"city": "Lima"})]),
])
def test_tool_call_formats(text: str, calls: list[tuple[str, dict[str, object]]]) -> None:
    _, parsed = parse_tool_calls(text, TOOLS)
    assert [(c.name, c.arguments) for c in parsed] == calls
    assert all(c.id.startswith("call_") for c in parsed)


@pytest.mark.parametrize("text", ["Just an answer.", '{"name": "unknown_tool", "arguments": {}}',
                                  '<tool_call>{not json}</tool_call>', '{"a": 1}'])
def test_text_that_is_not_a_call_stays_text(text: str) -> None:
    assert parse_tool_calls(text, TOOLS) == (text, [])


def test_forced_tool_schema() -> None:
    one = tool_call_schema(TOOLS, ToolChoice(mode="function", name="add"))
    assert one and one["properties"]["name"] == {"const": "add"}
    anyof = tool_call_schema(TOOLS, ToolChoice(mode="required"))
    assert anyof and len(anyof["anyOf"]) == 2
    assert tool_call_schema(TOOLS, ToolChoice(mode="auto")) is None
    with pytest.raises(BadRequestError):
        tool_call_schema(TOOLS, ToolChoice(mode="function", name="missing"))


def test_template_gets_tools_and_tool_calls() -> None:
    template = ("{% for m in messages %}[{{ m.role }}]{{ m.content }}{% if m.tool_calls %}"
                "{{ m.tool_calls[0].function.arguments | tojson }}{% endif %}{% endfor %}"
                "{% if tools %}TOOLS={{ tools | length }}{% endif %}")
    out = render_chat(template, [
        Message(role="user", content="hi"),
        Message(role="assistant", tool_calls=[ToolCall(id="c1", name="add", arguments={"a": 1})]),
        Message(role="tool", content="1", tool_call_id="c1"),
    ], tools=TOOLS, bos_token="", eos_token="")
    assert out == '[user]hi[assistant]{"a": 1}[tool]1TOOLS=2'


def test_template_without_tool_support_gets_tools_in_the_system_prompt() -> None:
    template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    out = render_chat(template, [Message(role="user", content="hi")], tools=TOOLS, bos_token="", eos_token="")
    assert out.startswith("<system>You may call one of these functions") and "get_weather" in out


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages.__class__.__init__.__globals__ }}",
    "{% for m in messages %}{{ m.content.__class__.__base__ }}{% endfor %}",
])
def test_templates_run_sandboxed(template: str) -> None:
    with pytest.raises(BadRequestError):
        render_chat(template, [Message(role="user", content="x")], tools=None, bos_token="", eos_token="")


def test_raise_exception_in_a_template_is_a_bad_request() -> None:
    template = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(BadRequestError, match="roles must alternate"):
        render_chat(template, [Message(role="user", content="x")], tools=None, bos_token="", eos_token="")


@pytest.mark.parametrize("template, tools", [
    ("{% if tools %}{{ tools | tojson }}{% endif %}{{ messages[0].content }}", True),
    ("{% for t in tools %}{{ t.function.name }}{% endfor %}", True),
    ("{# no tools here #}{{ messages[0].content }}", False),
    ("You have no tools. {{ messages[0].content }}", False),
    ("{% set tools = [] %}{{ tools }}", False),  # its own variable, not the caller's tools
    ("{% if %}", False),  # does not parse: claims nothing
    ("", False),
])
def test_the_tools_capability_is_the_template_reading_tools(template: str, tools: bool) -> None:
    assert uses_tools(template) is tools
