"""The /v1 routes: models, chat completions, completions, embeddings; SSE streaming."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from inferno.api import (
    BadRequestError,
    Chunk,
    Done,
    Embeddings,
    EmbedRequest,
    GenerateRequest,
    ImagePolicy,
    Inferno,
    TextDelta,
    ThinkingDelta,
    TokenizeRequest,
    ToolCalls,
    body,
    collect,
    display_name,
    dumps,
    keep_alive,
    primed,
    read_json,
    stream,
    submit_all,
)

from . import translate as t
from .schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest


def make_blueprint(inferno: Inferno) -> Any:
    from quart import Blueprint

    bp = Blueprint("openai_api", __name__, url_prefix="/v1")
    engine = inferno.engine

    def sse_stream(chunks: AsyncIterator[Chunk]) -> Any:
        return stream(chunks, kind="sse", error=t.error_body, end=b"data: [DONE]\n\n")

    def model_card(info: Any) -> dict[str, Any]:
        return {"id": display_name(info.name), "object": "model", "created": int(info.downloaded_at.timestamp()),
                "owned_by": "inferno"}

    @bp.get("/models")
    async def list_models() -> Any:
        """List the local models."""
        return {"object": "list", "data": [model_card(m) for m in inferno.store.list()]}

    @bp.get("/models/<path:model_id>")
    async def get_model(model_id: str) -> Any:
        """One local model."""
        return model_card(inferno.store.get(model_id))

    @bp.post("/chat/completions")
    @body(ChatCompletionRequest)
    async def chat_completions() -> Any:
        """Chat completion, streamed as server-sent events when stream is true."""
        req: ChatCompletionRequest = await read_json(ChatCompletionRequest)
        policy = ImagePolicy.of(inferno.settings)
        cores = _choices(await asyncio.to_thread(t.chat_request, req, policy), req.n)
        rid = t.new_id("chatcmpl")
        handles = submit_all(engine, cores)  # every choice at once: they decode together in one batch
        if req.stream:
            first = await primed(handles)
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return sse_stream(_chat_chunks(handles, first, req, rid, include_usage))
        choices, dones = [], []
        for index, r in enumerate(await asyncio.gather(*map(collect, handles))):
            message: dict[str, Any] = {"role": "assistant", "content": r.text if not r.calls or r.text else None}
            if r.thinking:
                message["reasoning_content"] = r.thinking
            if r.calls:
                message["tool_calls"] = t.tool_calls_out(r.calls)
            choices.append({"index": index, "message": message,
                            "logprobs": t.chat_logprobs(r.logprobs) if cores[0].logprobs is not None else None,
                            "finish_reason": t.FINISH[r.done.reason]})
            dones.append(r.done)
        return t.envelope("chat.completion", rid, req.model, choices, usage=_sum_usage(dones),
                          timings=t.timings(dones))

    @bp.post("/completions")
    @body(CompletionRequest)
    async def completions() -> Any:
        """Text completion of a prompt (legacy endpoint)."""
        req: CompletionRequest = await read_json(CompletionRequest)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not prompts:
            raise BadRequestError("prompt must not be empty", param="prompt")
        rid = t.new_id("cmpl")
        cores = [c for p in prompts for c in _choices(t.completion_request(req, p), req.n)]
        handles = submit_all(engine, cores)
        if req.stream:
            first = await primed(handles)
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return sse_stream(_completion_chunks(handles, cores, first, req, rid, include_usage))
        choices, dones = [], []
        for core, r in zip(cores, await asyncio.gather(*map(collect, handles)), strict=True):
            choices.append({"index": len(choices), "text": (core.prompt or "") + r.text if req.echo else r.text,
                            "logprobs": _completion_logprobs(r.logprobs) if req.logprobs is not None else None,
                            "finish_reason": t.FINISH[r.done.reason]})
            dones.append(r.done)
        return {"id": rid, "object": "text_completion", "created": int(time.time()),
                "model": req.model, "system_fingerprint": t.FINGERPRINT, "choices": choices,
                "usage": _sum_usage(dones), "timings": t.timings(dones)}

    @bp.post("/embeddings")
    @body(EmbeddingRequest)
    async def embeddings() -> Any:
        """Embeddings of one or many inputs (strings or token arrays)."""
        req: EmbeddingRequest = await read_json(EmbeddingRequest)
        inputs = await _texts(engine, req)
        if not inputs:
            raise BadRequestError("input must not be empty", param="input")
        handle = engine.embed(EmbedRequest(model=req.model, inputs=inputs, dimensions=req.dimensions,
                                           keep_alive=keep_alive(req.keep_alive)))
        result: Embeddings = (await handle.result())[-1]
        data = []
        for i, vec in enumerate(result.vectors):
            emb: Any = vec
            if req.encoding_format == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {"object": "list", "data": data, "model": req.model,
                "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}}

    return bp


async def _texts(engine: Any, req: EmbeddingRequest) -> list[str]:
    value = req.input
    if isinstance(value, str):
        return [value]
    if not value:
        return []
    if all(isinstance(v, str) for v in value):
        return list(value)  # type: ignore
    arrays = [value] if all(isinstance(v, int) for v in value) else value
    texts = []
    for tokens in arrays:
        if not isinstance(tokens, list) or not all(isinstance(x, int) for x in tokens):
            raise BadRequestError("input must be a string, a list of strings, or token arrays", param="input")
        ids = [int(x) for x in tokens]  # type: ignore
        out = (await engine.tokenize(TokenizeRequest(model=req.model, tokens=ids)).result())[-1]
        texts.append(out.text)
    return texts


def _choices(core: GenerateRequest, n: int) -> list[GenerateRequest]:
    """n requests for n choices; with a seed, choice i samples with seed + i so the choices differ."""
    seed = core.sampling.seed
    if n == 1 or seed is None:
        return [core] * n
    return [core.model_copy(update={"sampling": core.sampling.model_copy(update={"seed": seed + i})})
            for i in range(n)]


def _sum_usage(dones: list[Done]) -> dict[str, Any]:
    total = Done(reason="stop", prompt_tokens=dones[0].prompt_tokens if dones else 0,
                 completion_tokens=sum(d.completion_tokens for d in dones),
                 cached_tokens=dones[0].cached_tokens if dones else 0)
    return t.usage(total)


def _completion_logprobs(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{x["token"]: x["logprob"] for x in e.get("top_logprobs", [])} for e in entries],
            "text_offset": []}


async def _chat_chunks(handles: list[Any], first: AsyncIterator[Any], req: ChatCompletionRequest, rid: str,
                       include_usage: bool) -> AsyncIterator[dict[str, Any] | bytes]:
    dones: list[Done] = []
    for index, handle in enumerate(handles):  # all generate together; each is sent whole, in order
        events = first if index == 0 else await handle.primed()

        def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: Any = None,
                  index: int = index) -> dict[str, Any]:
            return t.envelope("chat.completion.chunk", rid, req.model,
                              [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}])

        # The per-token chunk differs only in its text: build it from two fixed halves instead of a dict.
        first_chunk = chunk({"role": "assistant", "content": ""})
        head, _, _ = dumps(first_chunk).partition('"delta":')
        prefix, suffix = f"data: {head}\"delta\":{{\"content\":", "},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        yield first_chunk
        async for event in events:
            if isinstance(event, TextDelta):
                if event.logprobs:
                    yield chunk({"content": event.text}, logprobs=t.chat_logprobs(event.logprobs))
                elif event.text:
                    yield (prefix + json.dumps(event.text, ensure_ascii=False) + suffix).encode()
            elif isinstance(event, ThinkingDelta):
                yield chunk({"reasoning_content": event.text})
            elif isinstance(event, ToolCalls):
                yield chunk({"tool_calls": t.tool_calls_out(event.calls, stream=True)})
            elif isinstance(event, Done):
                dones.append(event)
                yield chunk({}, t.FINISH[event.reason])
    if include_usage:
        yield t.envelope("chat.completion.chunk", rid, req.model, [], usage=_sum_usage(dones),
                         timings=t.timings(dones))


async def _completion_chunks(handles: list[Any], cores: list[GenerateRequest], first: AsyncIterator[Any],
                             req: CompletionRequest, rid: str, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    dones: list[Done] = []
    for index, (core, handle) in enumerate(zip(cores, handles, strict=True)):
        events = first if index == 0 else await handle.primed()

        def chunk(text: str, finish: str | None = None, index: int = index) -> dict[str, Any]:
            return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": req.model,
                    "system_fingerprint": t.FINGERPRINT,
                    "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}]}

        if req.echo:
            yield chunk(core.prompt or "")
        async for event in events:
            if isinstance(event, TextDelta) and event.text:
                yield chunk(event.text)
            elif isinstance(event, Done):
                dones.append(event)
                yield chunk("", t.FINISH[event.reason])
    if include_usage:
        yield {"id": rid, "object": "text_completion", "created": int(time.time()), "model": req.model, "choices": [],
               "usage": _sum_usage(dones), "timings": t.timings(dones)}
