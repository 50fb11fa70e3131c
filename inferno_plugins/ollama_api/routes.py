"""Ollama's generation routes: /api/generate, /api/chat, /api/embed, /api/embeddings (NDJSON streaming)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from inferno.api import (
    BadRequestError,
    Chunk,
    Done,
    Embeddings,
    EmbedRequest,
    GenerateRequest,
    Inferno,
    Message,
    TextDelta,
    ThinkingDelta,
    Tool,
    ToolCall,
    ToolCalls,
    Truncated,
    body,
    collect,
    keep_alive,
    read_json,
    stream,
    tool_call_id,
)

from . import translate as t
from .schemas import ChatBody, EmbedBody, EmbeddingsBody, GenerateBody


def ndjson_stream(chunks: AsyncIterator[Chunk]) -> Any:
    return stream(chunks, kind="ndjson", error=t.error_body)


def _think(value: Any) -> bool | str | None:
    """Ollama's think: true, false, or an effort ("low", "medium", "high")."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, str) and value.lower() in ("low", "medium", "high"):
        return value.lower()
    raise BadRequestError(f'think must be true, false, "low", "medium" or "high", not {value!r}', param="think")


async def _check_capabilities(inferno: Inferno, model: str, images: list[str] | None,
                              think: Any) -> bool | str | None:
    """An unknown model is a 404, images or thinking a 400, before any generation starts; the think value."""
    info = inferno.lookup(model)
    think = _think(think)
    if images or think not in (None, False):
        meta = await asyncio.to_thread(inferno.metadata, info.name)
        caps = inferno.capabilities(info, meta)
        if images and "vision" not in caps:
            raise BadRequestError(f'"{model}" does not support images: it has no vision projector (mmproj)',
                                  param="images")
        if think not in (None, False) and "thinking" not in caps:
            raise BadRequestError(f'"{model}" does not support thinking', param="think")
    return think


async def _load_or_unload(inferno: Inferno, model: str, keep_alive: float | None, key: str,
                          empty: Any) -> dict[str, Any]:
    """Empty prompt / messages: load the model (or unload it with keep_alive 0), as Open WebUI expects."""
    if keep_alive == 0:
        inferno.engine.unload(model)
        reason = "unload"
    else:
        await inferno.engine.load(model, keep_alive=keep_alive).result()
        reason = "load"
    return {"model": model, "created_at": t.now(), key: empty, "done": True, "done_reason": reason}


def make_blueprint(inferno: Inferno) -> Any:
    from quart import Blueprint

    bp = Blueprint("ollama_generate", __name__)
    engine = inferno.engine

    @bp.post("/api/generate")
    @body(GenerateBody)
    async def generate() -> Any:
        """Generate a completion for a prompt (streamed as NDJSON unless stream is false)."""
        req: GenerateBody = await read_json(GenerateBody)
        think = await _check_capabilities(inferno, req.model, req.images, req.think)
        sampling, load = t.options(req.options)
        keep = keep_alive(req.keep_alive)
        if not req.prompt and not req.suffix:
            return await _load_or_unload(inferno, req.model, keep, "response", "")
        core: dict[str, Any] = {"model": req.model, "sampling": sampling, "load": load, "keep_alive": keep,
                                "format": t.fmt(req.format), "context": req.context, "return_context": True,
                                "think": think, "grammar": t.grammar(req.options),
                                "speculative": t.speculative(req.options),
                                "truncate": req.truncate is not False, "shift": req.shift is not False}
        # a template's translation runs off the event loop (a big one must not stall every other request)
        filled = await asyncio.to_thread(t.go_template, req.template, req.system, req.prompt,
                                         inferno.settings.max_template_bytes) if req.template else None
        if req.raw or req.suffix or filled is not None:
            core.update(prompt=filled if filled is not None else req.prompt, suffix=req.suffix or None,
                        images=req.images or None)
        else:
            messages = ([Message(role="system", content=req.system)] if req.system else []) + \
                [Message(role="user", content=req.prompt, images=req.images or None)]
            core.update(messages=messages, template=req.template)
        handle = engine.submit(GenerateRequest(**core))
        if req.stream:
            events, headers = await _primed(handle)
            return ndjson_stream(_generate_chunks(req.model, events)), 200, headers
        r = await collect(handle)
        out: dict[str, Any] = {"model": req.model, "created_at": t.now(), "response": r.text}
        if r.thinking:
            out["thinking"] = r.thinking
        return ({**out, "done": True, "context": r.done.context or [], **t.final_metrics(r.done)}, 200,
                _truncated_header(r.truncated.messages if r.truncated else None))

    @bp.post("/api/chat")
    @body(ChatBody)
    async def chat() -> Any:
        """Chat with a model: messages, tools, format (streamed as NDJSON unless stream is false)."""
        req: ChatBody = await read_json(ChatBody)
        images = [i for m in req.messages for i in (m.images or [])]
        think = await _check_capabilities(inferno, req.model, images, req.think)
        sampling, load = t.options(req.options)
        keep = keep_alive(req.keep_alive)
        empty = {"role": "assistant", "content": ""}
        if not req.messages:
            return await _load_or_unload(inferno, req.model, keep, "message", empty)
        messages = [Message(role=m.role, content=m.content, name=m.tool_name, thinking=m.thinking,
                            images=m.images or None,
                            tool_calls=[ToolCall(id=c.id or tool_call_id(), name=c.function.name,
                                                 arguments=c.function.arguments)
                                        for c in m.tool_calls] if m.tool_calls else None)
                    for m in req.messages]
        tools = [Tool(name=x.function.name, description=x.function.description,
                      parameters=x.function.parameters) for x in req.tools or []]
        handle = engine.submit(GenerateRequest(model=req.model, messages=messages, sampling=sampling, load=load,
                                               keep_alive=keep, format=t.fmt(req.format), tools=tools or None,
                                               think=think, grammar=t.grammar(req.options),
                                               speculative=t.speculative(req.options),
                                               truncate=req.truncate is not False, shift=req.shift is not False))
        if req.stream:
            events, headers = await _primed(handle)
            return ndjson_stream(_chat_chunks(req.model, events)), 200, headers
        r = await collect(handle)
        message: dict[str, Any] = {"role": "assistant", "content": r.text}
        if r.thinking:
            message["thinking"] = r.thinking
        if r.calls:
            message["tool_calls"] = _calls(r.calls)
        return ({"model": req.model, "created_at": t.now(), "message": message, "done": True,
                 **t.final_metrics(r.done)}, 200, _truncated_header(r.truncated.messages if r.truncated else None))

    @bp.post("/api/embed")
    @body(EmbedBody)
    async def embed() -> Any:
        """Embeddings of one or many inputs, L2-normalised."""
        req: EmbedBody = await read_json(EmbedBody)
        inputs = [req.input] if isinstance(req.input, str) else list(req.input)
        inputs = [i for i in inputs if i != ""] if isinstance(req.input, str) else inputs
        _, load = t.options(req.options)
        keep = keep_alive(req.keep_alive)
        if not inputs:
            await engine.load(req.model, load, keep).result()
            return {"model": req.model, "embeddings": [], "total_duration": 0, "load_duration": 0,
                    "prompt_eval_count": 0}
        result: Embeddings = (await engine.embed(EmbedRequest(
            model=req.model, inputs=inputs, truncate=req.truncate, dimensions=req.dimensions, load=load,
            keep_alive=keep)).result())[-1]
        return {"model": req.model, "embeddings": result.vectors, "total_duration": result.total_ns,
                "load_duration": result.load_ns, "prompt_eval_count": result.prompt_tokens}

    @bp.post("/api/embeddings")
    @body(EmbeddingsBody)
    async def embeddings() -> Any:
        """Legacy single embedding, not normalised."""
        req: EmbeddingsBody = await read_json(EmbeddingsBody)
        _, load = t.options(req.options)
        if not req.prompt:
            await engine.load(req.model, load, keep_alive(req.keep_alive)).result()
            return {"embedding": []}
        result: Embeddings = (await engine.embed(EmbedRequest(
            model=req.model, inputs=[req.prompt], normalize=False, load=load,
            keep_alive=keep_alive(req.keep_alive))).result())[-1]
        return {"embedding": result.vectors[0]}

    return bp


TRUNCATED_HEADER = "X-Inferno-Truncated"  # the prompt did not fit: how many of its oldest messages were dropped


def _truncated_header(messages: int | None) -> dict[str, str]:
    return {} if messages is None else {TRUNCATED_HEADER: str(messages)}


async def _primed(handle: Any) -> tuple[AsyncIterator[Any], dict[str, str]]:
    """The stream once its first event came, and the headers that event calls for: a truncated prompt's
    Truncated comes first of all, before the status line goes out."""
    events = await handle.primed()
    first = await anext(events)
    if isinstance(first, Truncated):
        return events, _truncated_header(first.messages)

    async def again() -> AsyncIterator[Any]:
        yield first
        async for event in events:
            yield event

    return again(), {}


def _calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [{"id": c.id, "function": {"index": i, "name": c.name, "arguments": c.arguments}}
            for i, c in enumerate(calls)]


async def _generate_chunks(model: str, events: AsyncIterator[Any]) -> AsyncIterator[dict[str, Any]]:
    async for event in events:
        if isinstance(event, TextDelta) and event.text:
            yield {"model": model, "created_at": t.now(), "response": event.text, "done": False}
        elif isinstance(event, ThinkingDelta):
            yield {"model": model, "created_at": t.now(), "response": "", "thinking": event.text, "done": False}
        elif isinstance(event, Done):
            yield {"model": model, "created_at": t.now(), "response": "", "done": True,
                   "context": event.context or [], **t.final_metrics(event)}


async def _chat_chunks(model: str, events: AsyncIterator[Any]) -> AsyncIterator[dict[str, Any]]:
    async for event in events:
        if isinstance(event, TextDelta) and event.text:
            yield {"model": model, "created_at": t.now(), "message": {"role": "assistant", "content": event.text},
                   "done": False}
        elif isinstance(event, ThinkingDelta):
            yield {"model": model, "created_at": t.now(),
                   "message": {"role": "assistant", "content": "", "thinking": event.text}, "done": False}
        elif isinstance(event, ToolCalls):
            yield {"model": model, "created_at": t.now(),
                   "message": {"role": "assistant", "content": "", "tool_calls": _calls(event.calls)},
                   "done": False}
        elif isinstance(event, Done):
            yield {"model": model, "created_at": t.now(), "message": {"role": "assistant", "content": ""},
                   "done": True, **t.final_metrics(event)}


