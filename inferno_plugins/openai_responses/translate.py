"""Responses bodies and stored conversations → core requests; core results → Responses objects.

A conversation is kept as Responses items (plain dicts, as the wire has them): the input items of every turn
and the output items the model answered with. Stored that way it is what `previous_response_id` continues
from, and the same function turns fresh input and stored history into core messages.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from inferno.api import (
    IMAGE_MARKER,
    BadRequestError,
    Collected,
    Done,
    GenerateRequest,
    ImagePolicy,
    InfernoError,
    LoadOptions,
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
    CreateResponse,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    ImagePart,
    JsonObjectFormat,
    JsonSchemaFormat,
    MediaPart,
    MessageItem,
    NamedFunction,
    Part,
    PromptBody,
    ReasoningItem,
    TextPart,
)

Item = dict[str, Any]


def error_body(error: InfernoError) -> dict[str, Any]:
    """OpenAI's error shape, as its SDK reads it."""
    kind = error_type(error, {503: "server_busy"})
    code = "model_not_found" if error.status == 404 and error.param == "model" else error.code
    return {"error": {"message": error.message, "type": kind, "param": error.param, "code": code}}


def item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


# input ----------------------------------------------------------------------------------------------


def input_items(body: PromptBody) -> list[Item]:
    """The request's input as items (a string is one user message); what gets stored as this turn's input."""
    if isinstance(body.input, str):
        return [{"type": "message", "id": item_id("msg"), "role": "user", "content": body.input}] if body.input \
            else []
    prefix = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
    return [{"id": item_id(prefix[i.type]), **i.model_dump(by_alias=True, exclude_none=True)} for i in body.input]


def _content(content: str | list[Part], where: str, policy: ImagePolicy) -> tuple[str, list[str]]:
    """The text of a message or function output (an image marker where each input_image was) and its images."""
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    for p in content:
        if isinstance(p, MediaPart):
            raise BadRequestError(f"{where}: {p.type} parts are not supported here (text and input_image only)",
                                  param="input")
        if isinstance(p, ImagePart):
            if p.file_id is not None and p.image_url is None:
                raise BadRequestError(f"{where}: input_image by file_id is not supported here (there is no Files "
                                      "API); send image_url as a data: URL or base64", param="input")
            if not p.image_url:
                raise BadRequestError(f"{where}: input_image needs an image_url", param="input")
            images.append(image_source(p.image_url, policy, param="input"))
            texts.append(IMAGE_MARKER)
        else:
            texts.append(p.text if isinstance(p, TextPart) else p.refusal)
    return "".join(texts), images


def _arguments(raw: str, where: str) -> dict[str, Any]:
    try:
        args = json.loads(raw or "{}")
    except json.JSONDecodeError:
        raise BadRequestError(f"{where}: arguments are not JSON", param="input") from None
    if not isinstance(args, dict):
        raise BadRequestError(f"{where}: arguments must be a JSON object", param="input")
    return args


def messages(items: list[Item], instructions: str | None, policy: ImagePolicy | None = None) -> list[Message]:
    """Items (stored history and new input alike) as core messages, with the images they hold. Consecutive
    function calls join the assistant message before them, as chat templates show one assistant turn with
    several calls; reasoning goes to the assistant message after it, where templates that show earlier
    reasoning find it."""
    from pydantic import TypeAdapter, ValidationError

    policy = policy or ImagePolicy()
    out: list[Message] = [Message(role="system", content=instructions)] if instructions else []
    names: dict[str, str] = {}  # call_id -> function name, for the tool results that answer them
    thinking: list[str] = []  # reasoning waiting for the assistant message it belongs to
    adapter: TypeAdapter[Any] = TypeAdapter(MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem)
    for n, raw in enumerate(items):
        where = f"input[{n}]"
        try:
            item = adapter.validate_python(raw)
        except ValidationError:  # a stored record written by a different version: not worth a 500
            raise BadRequestError(f"{where}: not an input item this server understands", param="input") from None
        if isinstance(item, ReasoningItem):
            thinking += [p.text for p in item.content or item.summary]
        elif isinstance(item, MessageItem):
            role = "system" if item.role == "developer" else item.role
            text, images = _content(item.content, where, policy)
            out.append(Message(role=role, content=text, images=images or None))
        elif isinstance(item, FunctionCallItem):
            call = ToolCall(id=item.call_id, name=item.name, arguments=_arguments(item.arguments, where))
            names[item.call_id] = item.name
            last = out[-1] if out else None
            if last is not None and last.role == "assistant" and not thinking:
                last.tool_calls = [*(last.tool_calls or []), call]
            else:
                out.append(Message(role="assistant", content="", tool_calls=[call]))
        else:
            text, images = _content(item.output, where, policy)
            out.append(Message(role="tool", content=text, images=images or None, tool_call_id=item.call_id,
                               name=names.get(item.call_id)))
        if thinking and out and out[-1].role == "assistant" and not isinstance(item, ReasoningItem):
            out[-1].thinking, thinking = "\n".join(thinking), []
    if not any(m.role != "system" for m in out):
        raise BadRequestError("input must not be empty", param="input")
    return out


def _tools(body: PromptBody) -> list[Tool]:
    tools = []
    for i, t in enumerate(body.tools or []):
        if not isinstance(t, FunctionTool):
            if t.type == "function":
                raise BadRequestError(f"tools[{i}]: a function needs a name of letters, digits, _ . -",
                                      param=f"tools[{i}].name")
            raise BadRequestError(f"tools[{i}]: {t.type!r} tools are not available here, only function tools",
                                  param=f"tools[{i}].type")
        tools.append(Tool(name=t.name, description=t.description or "",
                          parameters=t.parameters or {"type": "object", "properties": {}}))
    return tools


def _tool_choice(body: PromptBody, tools: list[Tool]) -> ToolChoice:
    value = body.tool_choice
    if value is None:
        return ToolChoice()
    if isinstance(value, NamedFunction):
        choice = ToolChoice(mode="function", name=value.name)
    elif isinstance(value, str):
        choice = ToolChoice(mode=value)
    else:
        raise BadRequestError(f"tool_choice of type {value.type!r} is not supported here", param="tool_choice")
    if choice.mode in ("required", "function") and not tools:
        raise BadRequestError("tool_choice needs tools", param="tool_choice")
    if choice.mode == "function" and choice.name not in {t.name for t in tools}:
        raise BadRequestError(f"tool_choice names {choice.name!r}, which is not among the tools",
                              param="tool_choice")
    return choice


def _format(body: PromptBody) -> Any:
    fmt = body.text.format if body.text else None
    if isinstance(fmt, JsonObjectFormat):
        return fmt.schema_ if fmt.schema_ is not None else "json"
    if isinstance(fmt, JsonSchemaFormat):
        return fmt.schema_
    return None


def _think(body: PromptBody) -> Any:
    """reasoning.effort → the core's think: "none" off, "minimal" the lowest effort a template knows."""
    effort = body.reasoning.effort if body.reasoning else None
    if effort is None:
        return None
    return False if effort == "none" else {"minimal": "low", "xhigh": "high"}.get(effort, effort)


def _refuse_unsupported(body: PromptBody) -> None:
    if body.conversation is not None:
        raise BadRequestError("conversations are not supported here; continue with previous_response_id",
                              param="conversation")
    if isinstance(body, CreateResponse) and body.background:
        raise BadRequestError("background responses are not supported here", param="background")


def core_request(body: PromptBody, history: list[Item],
                 policy: ImagePolicy | None = None) -> tuple[GenerateRequest, list[Item]]:
    """The core request for a body after a stored history, and this turn's input items. Blocking when the
    policy lets http(s) image URLs be fetched: call it in a thread."""
    _refuse_unsupported(body)
    new = input_items(body)
    tools = _tools(body)
    choice = _tool_choice(body, tools)
    sampling, load, alive, grammar = SamplingOptions(), LoadOptions(), None, None
    if isinstance(body, CreateResponse):
        stop = stop_list(body.stop)
        if len(stop) > 16:
            raise BadRequestError("at most 16 stop sequences", param="stop")
        sampling = SamplingOptions(temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=stop,
                                   top_k=body.top_k, min_p=body.min_p, repeat_penalty=body.repeat_penalty,
                                   presence_penalty=body.presence_penalty,
                                   frequency_penalty=body.frequency_penalty, max_tokens=body.max_output_tokens,
                                   ignore_eos=body.ignore_eos)
        load, alive, grammar = LoadOptions(n_ctx=body.num_ctx), keep_alive(body.keep_alive), body.grammar
    core = GenerateRequest(model=body.model, messages=messages([*history, *new], body.instructions, policy),
                           sampling=sampling, format=_format(body), tools=tools or None, tool_choice=choice,
                           load=load, keep_alive=alive, truncate=body.truncation == "auto", grammar=grammar,
                           think=_think(body))
    return core, new


# output ---------------------------------------------------------------------------------------------


def message_item(text: str, status: str, mid: str | None = None) -> Item:
    return {"type": "message", "id": mid or item_id("msg"), "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def reasoning_item(text: str, status: str, rid: str | None = None) -> Item:
    """A thinking model's reasoning, in full (our models' reasoning is ours to show; there is no summary)."""
    return {"type": "reasoning", "id": rid or item_id("rs"), "status": status, "summary": [],
            "content": [{"type": "reasoning_text", "text": text}]}


def call_item(call: ToolCall) -> Item:
    return {"type": "function_call", "id": item_id("fc"), "call_id": call.id, "name": call.name,
            "arguments": json.dumps(call.arguments, ensure_ascii=False), "status": "completed"}


def output_items(result: Collected) -> list[Item]:
    """A whole generation's output: reasoning, then the answer (always one message unless only functions were
    called), then the function calls — the order and the rule the streamed events follow too."""
    status = status_of(result.done)[0]
    items = [reasoning_item(result.thinking, status)] if result.thinking else []
    if result.text or not result.calls:
        items.append(message_item(result.text, status))
    return items + [call_item(c) for c in result.calls]


def usage(done: Done) -> dict[str, Any]:
    return {"input_tokens": done.prompt_tokens, "input_tokens_details": {"cached_tokens": done.cached_tokens},
            "output_tokens": done.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def status_of(done: Done) -> tuple[str, dict[str, Any] | None]:
    if done.reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    return "completed", None


def response_object(rid: str, body: CreateResponse, *, created_at: int, status: str = "in_progress",
                    output: list[Item] | None = None, done: Done | None = None) -> dict[str, Any]:
    """The Response object, as `response.created` announces it and `response.completed` finishes it."""
    incomplete = None
    if done is not None:
        status, incomplete = status_of(done)
    choice = body.tool_choice
    effort = body.reasoning.effort if body.reasoning else None
    fmt = body.text.format.model_dump(by_alias=True, exclude_none=True) if body.text else {"type": "text"}
    return {
        "id": rid, "object": "response", "created_at": created_at, "status": status,
        "completed_at": int(time.time()) if done is not None else None, "error": None,
        "incomplete_details": incomplete, "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens, "model": body.model, "output": output or [],
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id, "reasoning": {"effort": effort, "summary": None},
        "store": body.store, "temperature": body.temperature, "text": {"format": fmt},
        "tool_choice": choice.model_dump(exclude_none=True) if isinstance(choice, NamedFunction) else choice or "auto",
        "tools": [t.model_dump(exclude_none=True) for t in body.tools or []], "top_p": body.top_p,
        "truncation": body.truncation or "disabled", "usage": usage(done) if done is not None else None,
        "user": body.user, "metadata": body.metadata or {},
    }
