"""POST /v1/messages: Messages API bodies → Inferno core requests; events → messages or SSE events."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from inferno.engine.types import (
    Done,
    GenerateRequest,
    Message,
    SamplingOptions,
    TextDelta,
    Tool,
    ToolCall,
    ToolCalls,
    ToolChoice,
)
from inferno.errors import BadRequestError, InfernoError
from inferno.server import body, read_json

from .schemas import ImageBlock, MessagesRequest, TextBlock, ToolResultBlock, ToolUseBlock

STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "cancelled": "end_turn"}


def error_body(error: InfernoError) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
            413: "request_too_large", 503: "overloaded_error"}.get(error.status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def _text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.text for b in content if isinstance(b, TextBlock))


def to_core(req: MessagesRequest) -> GenerateRequest:
    messages: list[Message] = []
    if req.system:
        messages.append(Message(role="system", content=_text(req.system)))
    names: dict[str, str] = {}
    for m in req.messages:
        blocks = [TextBlock(type="text", text=m.content)] if isinstance(m.content, str) else m.content
        if any(isinstance(b, ImageBlock) for b in blocks):
            raise BadRequestError("this server's models do not accept images or documents")
        calls = [ToolCall(id=b.id, name=b.name, arguments=b.input) for b in blocks if isinstance(b, ToolUseBlock)]
        names.update({c.id: c.name for c in calls})
        for result in (b for b in blocks if isinstance(b, ToolResultBlock)):
            messages.append(Message(role="tool", content=_text(result.content), tool_call_id=result.tool_use_id,
                                    name=names.get(result.tool_use_id)))
        text = "".join(b.text for b in blocks if isinstance(b, TextBlock))
        if text or calls:
            messages.append(Message(role=m.role, content=text, tool_calls=calls or None))
    tools = [Tool(name=t.name, description=t.description, parameters=t.input_schema) for t in req.tools or []]
    choice = ToolChoice()
    if req.tool_choice is not None:
        mode = {"auto": "auto", "none": "none", "any": "required", "tool": "function"}[req.tool_choice.type]
        choice = ToolChoice(mode=mode, name=req.tool_choice.name)
    return GenerateRequest(model=req.model, messages=messages, tools=tools or None, tool_choice=choice,
                           sampling=SamplingOptions(max_tokens=req.max_tokens, temperature=req.temperature,
                                                    top_p=req.top_p, top_k=req.top_k,
                                                    stop=req.stop_sequences or []))


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def make_blueprint(inferno: Any) -> Any:
    from quart import Blueprint, Response

    bp = Blueprint("anthropic_api", __name__)

    @bp.post("/v1/messages")
    @body(MessagesRequest)
    async def messages() -> Any:
        """Anthropic Messages API: a message, or its stream of server-sent events."""
        req: MessagesRequest = await read_json(MessagesRequest)
        handle = inferno.engine.submit(to_core(req))
        mid = f"msg_{uuid.uuid4().hex[:24]}"
        if req.stream:
            events = await handle.primed()
            response = Response(_stream(events, mid, req.model), content_type="text/event-stream")
            response.timeout = None
            return response
        text, calls, done = [], [], Done(reason="stop")
        async for event in handle:
            if isinstance(event, TextDelta):
                text.append(event.text)
            elif isinstance(event, ToolCalls):
                calls.extend(event.calls)
            elif isinstance(event, Done):
                done = event
        content: list[dict[str, Any]] = [{"type": "text", "text": "".join(text)}] if text or not calls else []
        content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in calls]
        return {"id": mid, "type": "message", "role": "assistant", "model": req.model, "content": content,
                "stop_reason": STOP.get(done.reason, "end_turn"), "stop_sequence": None,
                "usage": {"input_tokens": done.prompt_tokens, "output_tokens": done.completion_tokens}}

    return bp


async def _stream(events: AsyncIterator[Any], mid: str, model: str) -> AsyncIterator[bytes]:
    yield _sse("message_start", {"type": "message_start", "message": {
        "id": mid, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None,
        "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}})
    index, text_open = 0, False
    try:
        async for event in events:
            if isinstance(event, TextDelta) and event.text:
                if not text_open:
                    yield _sse("content_block_start", {"type": "content_block_start", "index": index,
                                                       "content_block": {"type": "text", "text": ""}})
                    text_open = True
                yield _sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "text_delta", "text": event.text}})
            elif isinstance(event, ToolCalls):
                if text_open:
                    yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
                    index, text_open = index + 1, False
                for call in event.calls:
                    yield _sse("content_block_start", {"type": "content_block_start", "index": index,
                                                       "content_block": {"type": "tool_use", "id": call.id,
                                                                         "name": call.name, "input": {}}})
                    yield _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
                        "type": "input_json_delta", "partial_json": json.dumps(call.arguments)}})
                    yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
                    index += 1
            elif isinstance(event, Done):
                if text_open:
                    yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
                yield _sse("message_delta", {"type": "message_delta", "delta": {
                    "stop_reason": STOP.get(event.reason, "end_turn"), "stop_sequence": None},
                    "usage": {"input_tokens": event.prompt_tokens, "output_tokens": event.completion_tokens}})
                yield _sse("message_stop", {"type": "message_stop"})
    except InfernoError as e:
        yield _sse("error", error_body(e))
