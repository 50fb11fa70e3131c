"""Messages API bodies → core requests, and the engine's results → Anthropic messages and errors."""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from inferno.api import (
    IMAGE_MARKER,
    BadRequestError,
    Done,
    GenerateRequest,
    ImagePolicy,
    InfernoError,
    Message,
    SamplingOptions,
    Tool,
    ToolCall,
    ToolChoice,
    error_type,
    image_source,
    keep_alive,
    stop_list,
)

from .schemas import (
    ImageParam,
    MediaParam,
    MessageParam,
    MessagesBody,
    PromptBody,
    TextParam,
    ThinkingParam,
    ToolResultParam,
    ToolUseParam,
)

_ERROR_TYPES = {402: "billing_error", 413: "request_too_large", 429: "rate_limit_error", 504: "timeout_error",
                529: "overloaded_error"}  # where Anthropic's words differ from the shared ones
_THINK: dict[str, bool | None] = {"enabled": True, "disabled": False, "adaptive": None}
_CHOICE: dict[str, Literal["auto", "required", "function", "none"]] = {
    "auto": "auto", "any": "required", "tool": "function", "none": "none"}


def error_body(error: InfernoError) -> dict[str, Any]:
    """Anthropic's error shape; a full queue is `overloaded_error`, which the SDK retries."""
    if error.status == 503:
        kind = "overloaded_error" if error.code == "busy" else "api_error"
    else:
        kind = error_type(error, _ERROR_TYPES)
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def new_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


# requests ------------------------------------------------------------------------------------------


def _text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b.text for b in content if isinstance(b, TextParam))


def _image(b: ImageParam, where: str, policy: ImagePolicy) -> str:
    """An image block's image as Message.images holds it (the engine decodes and checks the bytes)."""
    src = b.source
    if src.type == "base64":
        if not src.data:
            raise BadRequestError(f"{where}: an image's base64 source needs data", param=where)
        return src.data
    if src.type == "url":
        if not src.url:
            raise BadRequestError(f"{where}: an image's url source needs a url", param=where)
        if not src.url.startswith(("http://", "https://")):
            raise BadRequestError(f"{where}: an image's url must be http(s); send other images as base64",
                                  param=where)
        return image_source(src.url, policy, param=where)
    raise BadRequestError(f"{where}: images by file_id are not supported here (there is no Files API); "
                          "send the image as a base64 source", param=where)


def _content(blocks: list[Any], where: str, policy: ImagePolicy) -> tuple[str, list[str]]:
    """Text and image blocks → the text (an image marker where each image was) and the images."""
    texts: list[str] = []
    images: list[str] = []
    for b in blocks:
        if isinstance(b, TextParam):
            texts.append(b.text)
        elif isinstance(b, ImageParam):
            images.append(_image(b, where, policy))
            texts.append(IMAGE_MARKER)
        elif isinstance(b, MediaParam):
            raise BadRequestError(f"{where}: document blocks are not supported here", param=where)
    return "\n".join(texts), images


def _messages(i: int, m: MessageParam, names: dict[str, str], policy: ImagePolicy) -> list[Message]:
    """One Anthropic turn as core messages: its tool results first (each a tool message), then its text,
    images and tool calls."""
    where = f"messages.{i}.content"
    blocks = [TextParam(type="text", text=m.content)] if isinstance(m.content, str) else m.content
    out: list[Message] = []
    shown: list[Any] = []  # the turn's text and image blocks, in order
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    if m.role == "system" and not all(isinstance(b, TextParam) for b in blocks):
        raise BadRequestError(f"{where}: a system message holds text blocks only", param=where)
    for b in blocks:
        if isinstance(b, TextParam | ImageParam | MediaParam):
            shown.append(b)
        elif isinstance(b, ToolUseParam):
            if m.role != "assistant":
                raise BadRequestError(f"{where}: tool_use blocks belong to assistant turns", param=where)
            calls.append(ToolCall(id=b.id, name=b.name, arguments=b.input))
            names[b.id] = b.name
        elif isinstance(b, ToolResultParam):
            if m.role != "user":
                raise BadRequestError(f"{where}: tool_result blocks belong to user turns", param=where)
            result, images = (b.content, []) if isinstance(b.content, str) else _content(b.content, where, policy)
            out.append(Message(role="tool", content=f"Error: {result}" if b.is_error else result,
                               images=images or None, tool_call_id=b.tool_use_id, name=names.get(b.tool_use_id)))
        elif isinstance(b, ThinkingParam) and b.thinking and m.role == "assistant":
            thoughts.append(b.thinking)
    text, images = _content(shown, where, policy)
    if text or images or calls or not out:
        out.append(Message(role=m.role, content=text, images=images or None, tool_calls=calls or None,
                           thinking="\n".join(thoughts) or None))
    return out


def _tools(body: PromptBody) -> tuple[list[Tool] | None, ToolChoice]:
    tools = [Tool(name=t.name, description=t.description, parameters=t.input_schema) for t in body.tools or []]
    choice = body.tool_choice
    if choice is None:
        return tools or None, ToolChoice()
    if choice.type in ("any", "tool") and not tools:
        raise BadRequestError(f"tool_choice {choice.type!r} needs tools", param="tool_choice")
    if choice.type == "tool":
        if not choice.name:
            raise BadRequestError("tool_choice of type 'tool' needs the tool's name", param="tool_choice.name")
        if choice.name not in {t.name for t in tools}:
            raise BadRequestError(f"tool_choice names {choice.name!r}, which is not among the tools",
                                  param="tool_choice.name")
    name = choice.name if choice.type == "tool" else None
    return tools or None, ToolChoice(mode=_CHOICE[choice.type], name=name)


def core_request(body: PromptBody, policy: ImagePolicy | None = None) -> GenerateRequest:
    """The core request of a body; sampling and keep_alive come from a full MessagesBody (count_tokens has none).
    Blocking when the policy lets http(s) image URLs be fetched: call it in a thread."""
    messages: list[Message] = []
    if body.system:
        messages.append(Message(role="system", content=_text(body.system)))
    names: dict[str, str] = {}
    for i, m in enumerate(body.messages):
        messages += _messages(i, m, names, policy or ImagePolicy())
    tools, choice = _tools(body)
    spec = body.output_config.format if body.output_config and body.output_config.format else body.output_format
    schema = spec.schema_ if spec is not None else None
    think = _THINK[body.thinking.type] if body.thinking else None
    if not isinstance(body, MessagesBody):
        return GenerateRequest(model=body.model, messages=messages, tools=tools, tool_choice=choice, format=schema,
                               think=think)
    stops = stop_list(body.stop_sequences)
    sampling = SamplingOptions(max_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p,
                               top_k=body.top_k, stop=stops)
    return GenerateRequest(model=body.model, messages=messages, tools=tools, tool_choice=choice, sampling=sampling,
                           format=schema, think=think, grammar=body.grammar, keep_alive=keep_alive(body.keep_alive))


# responses -----------------------------------------------------------------------------------------


def stop_reason(done: Done, max_tokens: int | None, stop_sequence: str | None) -> str:
    if done.reason == "tool_calls":
        return "tool_use"
    if done.reason == "length":  # max_tokens reached, or the context window filled up first
        full = max_tokens is not None and done.completion_tokens < max_tokens
        return "model_context_window_exceeded" if full else "max_tokens"
    return "stop_sequence" if stop_sequence else "end_turn"


def usage(done: Done | None) -> dict[str, Any]:
    """Token counts as Anthropic splits them: prompt tokens found in the KV cache are cache reads, so
    input_tokens + cache_read_input_tokens is the whole prompt."""
    if done is None:
        return {"input_tokens": 0, "output_tokens": 0}
    return {"input_tokens": done.prompt_tokens - done.cached_tokens, "output_tokens": done.completion_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": done.cached_tokens}


def tool_use(call: ToolCall, streamed: bool = False) -> dict[str, Any]:
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": {} if streamed else call.arguments}


def tool_input_json(call: ToolCall) -> str:
    return json.dumps(call.arguments, ensure_ascii=False)


def thinking_block(thinking: str) -> dict[str, Any]:
    """A reasoning block. Anthropic signs its own; a local model's has nothing to sign, so the signature is
    empty (clients send the block back as it is)."""
    return {"type": "thinking", "thinking": thinking, "signature": ""}


def message(mid: str, model: str, content: list[dict[str, Any]], stop: str | None, stop_sequence: str | None,
            done: Done | None) -> dict[str, Any]:
    return {"id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop, "stop_sequence": stop_sequence, "usage": usage(done)}


def content(text: str, calls: list[ToolCall], thinking: str = "") -> list[dict[str, Any]]:
    """A whole answer's blocks: its reasoning, its text (left out when it is only the whitespace before a tool
    call), then one tool_use block per call."""
    blocks: list[dict[str, Any]] = [thinking_block(thinking)] if thinking else []
    blocks += [{"type": "text", "text": text}] if text.strip() or not calls else []
    return blocks + [tool_use(c) for c in calls]
