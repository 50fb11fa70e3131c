"""Chat prompts from the GGUF's own Jinja template (sandboxed), and tool calls parsed out of the output."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from inferno.engine import sandbox
from inferno.engine.types import Message, Tool, ToolCall, ToolChoice
from inferno.errors import BadRequestError

if TYPE_CHECKING:
    from inferno.engine.protocol import EngineSettings

# Used when a model ships no template: ChatML is what most small instruct models were tuned on.
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TemplateError(BadRequestError):
    pass


def tool_call_id() -> str:
    """A fresh tool-call id, one form for every dialect (the toolkit re-exports it)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def _raise(message: str) -> None:
    raise TemplateError(f"chat template: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=32)
def _compile(source: str) -> Any:
    from jinja2 import TemplateSyntaxError
    from jinja2.ext import loopcontrols

    # Sandboxed: a template comes from a downloaded file or a request and must not reach Python internals, nor
    # loop or allocate without bound (sandbox.py: every render has a step, time and size budget).
    env = sandbox.make_environment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = sandbox.bounded_filter(lambda v, indent=None, ensure_ascii=False: json.dumps(
        v, indent=indent, ensure_ascii=ensure_ascii))
    env_globals: dict[str, Any] = env.globals
    env_globals["raise_exception"] = _raise
    env_globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except TemplateSyntaxError as e:
        raise TemplateError(f"chat template does not compile: {e}") from e


@lru_cache(maxsize=32)
def uses_tools(template: str | None) -> bool:
    """Whether a chat template reads the caller's `tools` (Ollama's `tools` capability). Parsed, not searched:
    the word in a comment or in text does not count, nor a template that only sets a `tools` of its own."""
    if not template:
        return False
    from jinja2 import Environment, TemplateSyntaxError, meta
    from jinja2.ext import loopcontrols

    try:
        return "tools" in meta.find_undeclared_variables(Environment(extensions=[loopcontrols]).parse(template))
    except TemplateSyntaxError:
        return False


def _tool_spec(tool: Tool) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool.name, "description": tool.description,
                                             "parameters": tool.parameters}}


def _message_dict(m: Message) -> dict[str, Any]:
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        d["tool_calls"] = [{"id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
    if m.tool_call_id:
        d["tool_call_id"] = m.tool_call_id
    if m.name:
        d["name"] = m.name
    if m.thinking:
        d["reasoning_content"] = m.thinking  # Qwen3's and DeepSeek's templates read it
    return d


def tools_system_text(tools: list[Tool]) -> str:
    """For templates that know nothing of tools: describe them in the system prompt (Hermes style)."""
    specs = "\n".join(json.dumps(_tool_spec(t)) for t in tools)
    return ("You may call one of these functions. To call one, answer only with "
            "<tool_call>{\"name\": <function name>, \"arguments\": <arguments object>}</tool_call>\n"
            f"<tools>\n{specs}\n</tools>")


def check_template_size(source: str, limit: int, param: str = "template") -> None:
    if len(source) > limit:
        raise TemplateError(f"the chat template is {len(source)} characters; at most {limit} are accepted "
                            "(INFERNO_MAX_TEMPLATE_BYTES)", param=param)


def render_chat(template: str | None, messages: list[Message], *, tools: list[Tool] | None,
                bos_token: str, eos_token: str, add_generation_prompt: bool = True,
                extra: dict[str, Any] | None = None, limits: EngineSettings | None = None) -> str:
    """The prompt text; `extra` are more template variables (a thinking switch: enable_thinking …)."""
    from inferno.engine.protocol import EngineSettings

    limits = limits or EngineSettings()
    source = template or CHATML
    check_template_size(source, limits.max_template_bytes)
    msgs = [_message_dict(m) for m in messages]
    if tools and "tools" not in source:
        described = tools_system_text(tools)
        if msgs and msgs[0]["role"] == "system":
            msgs[0] = {**msgs[0], "content": msgs[0]["content"] + "\n\n" + described}
        else:
            msgs.insert(0, {"role": "system", "content": described})
    if "tool_calls" not in source:  # a template that cannot show tool calls: show them as text
        for d in msgs:
            if d.get("tool_calls"):
                calls = "".join(f"<tool_call>{json.dumps(c['function'])}</tool_call>" for c in d["tool_calls"])
                d["content"] = (d["content"] or "") + calls
            if d["role"] == "tool" and "'tool'" not in source and '"tool"' not in source:
                d["role"] = "user"
                d["content"] = f"<tool_response>{d['content']}</tool_response>"
    try:
        with sandbox.budget(limits.template_max_steps, limits.template_timeout, limits.template_max_string):
            return sandbox.render(_compile(source), dict(
                messages=msgs, tools=[_tool_spec(t) for t in tools] if tools else None,
                add_generation_prompt=add_generation_prompt, bos_token=bos_token, eos_token=eos_token,
                **(extra or {})))
    except BadRequestError:
        raise
    except RecursionError:
        raise TemplateError("chat template: nested or recursive too deeply") from None
    except MemoryError:
        raise TemplateError("chat template: out of memory while rendering") from None
    except Exception as e:  # includes SecurityError from the sandbox
        raise TemplateError(f"chat template failed: {type(e).__name__}: {e}") from e


def tool_call_schema(tools: list[Tool], choice: ToolChoice) -> dict[str, Any] | None:
    """The JSON schema a forced tool call must follow: {"name": ..., "arguments": {...}}."""
    if choice.mode == "function":
        chosen = [t for t in tools if t.name == choice.name]
        if not chosen:
            raise BadRequestError(f"tool_choice names {choice.name!r}, which is not among the tools",
                                  param="tool_choice")
    elif choice.mode == "required":
        chosen = tools
    else:
        return None

    def one(t: Tool) -> dict[str, Any]:
        params = t.parameters if t.parameters.get("type") == "object" else {"type": "object"}
        return {"type": "object", "properties": {"name": {"const": t.name}, "arguments": params},
                "required": ["name", "arguments"]}

    return one(chosen[0]) if len(chosen) == 1 else {"anyOf": [one(t) for t in chosen]}


_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_MISTRAL = "[TOOL_CALLS]"
_LLAMA_TAG = "<|python_tag|>"
TOOL_MARKERS = ("<tool_call>", _MISTRAL, _LLAMA_TAG, "{", "[")


def _call(obj: Any, names: set[str]) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    name = obj.get("name") or (obj.get("function") or {}).get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or name not in names or not isinstance(args, dict):
        return None
    return ToolCall(id=tool_call_id(), name=name, arguments=args)


def _json_values(text: str) -> list[Any]:
    """Every top-level JSON value in text, in order (models put several calls back to back)."""
    decoder = json.JSONDecoder()
    out, i = [], 0
    while i < len(text):
        while i < len(text) and text[i] in " \t\r\n,;":
            i += 1
        if i >= len(text):
            break
        try:
            value, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return []
        out.extend(value if isinstance(value, list) else [value])
    return out


def parse_tool_calls(text: str, tools: list[Tool]) -> tuple[str, list[ToolCall]]:
    """(text before the calls, calls) for Hermes/Qwen, Mistral, Llama 3.x and bare JSON formats."""
    names = {t.name for t in tools}
    if "<tool_call>" in text:
        before = text[: text.index("<tool_call>")]
        calls = [c for body in _HERMES.findall(text) for v in _json_values(body) if (c := _call(v, names))]
        return (before, calls) if calls else (text, [])
    body = text.strip()
    for marker in (_MISTRAL, _LLAMA_TAG):
        if body.startswith(marker):
            body = body[len(marker):]
    calls = [c for v in _json_values(body) if (c := _call(v, names))]
    return ("", calls) if calls else (text, [])
