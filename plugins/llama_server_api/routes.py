"""POST /infill: llama-server's fill-in-the-middle, answered in its /completion shape (SSE when streamed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from inferno.api import (
    Done,
    GenerateRequest,
    Inferno,
    InfernoError,
    InfillChunk,
    SamplingOptions,
    TextDelta,
    body,
    collect,
    error_type,
    keep_alive,
    primed,
    read_json,
    stream,
    submit_all,
)

from .schemas import InfillRequest

STOP_TYPE = {"stop": "eos", "length": "limit"}  # a stop string makes it "word"


def error_body(error: InfernoError) -> dict[str, Any]:
    """llama-server's error shape: the status as code, a message and OpenAI's type word."""
    return {"error": {"code": error.status, "message": error.message, "type": error_type(error)}}


def infill_request(req: InfillRequest) -> GenerateRequest:
    sampling = SamplingOptions(
        temperature=req.temperature, top_k=req.top_k, top_p=req.top_p, min_p=req.min_p, typical_p=req.typical_p,
        repeat_penalty=req.repeat_penalty, repeat_last_n=req.repeat_last_n, presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty, seed=req.seed, stop=[s for s in req.stop if s],
        max_tokens=req.n_predict, ignore_eos=req.ignore_eos)
    return GenerateRequest(model=req.model, prompt=req.input_prefix, suffix=req.input_suffix,
                           infill_prompt=req.prompt, sampling=sampling, grammar=req.grammar,
                           infill_extra=[InfillChunk(text=c.text, filename=c.filename) for c in req.input_extra],
                           keep_alive=keep_alive(req.keep_alive))


def final(req: InfillRequest, content: str, done: Done) -> dict[str, Any]:
    """The last object: what llama-server's /completion reports at the end."""
    stop_type = "word" if done.stop_sequence else STOP_TYPE.get(done.reason, "eos")
    return {"index": 0, "content": content, "tokens": [], "id_slot": 0, "stop": True, "model": req.model,
            "tokens_predicted": done.completion_tokens, "tokens_evaluated": done.prompt_tokens,
            "tokens_cached": done.cached_tokens, "truncated": False, "stop_type": stop_type,
            "stopped_eos": stop_type == "eos", "stopped_limit": stop_type == "limit",
            "stopped_word": stop_type == "word", "stopping_word": done.stop_sequence or "",
            "timings": {"prompt_n": done.prompt_tokens - done.cached_tokens,
                        "prompt_ms": done.prompt_eval_ns / 1e6, "predicted_n": done.completion_tokens,
                        "predicted_ms": done.eval_ns / 1e6, "cache_n": done.cached_tokens}}


def make_blueprint(inferno: Inferno) -> Any:
    from quart import Blueprint

    bp = Blueprint("llama_server_api", __name__)

    @bp.post("/infill")
    @body(InfillRequest)
    async def infill() -> Any:
        """Fill in the middle: the model's FIM tokens around input_prefix (+ prompt) and input_suffix."""
        req: InfillRequest = await read_json(InfillRequest)
        handles = submit_all(inferno.engine, [infill_request(req)])
        if req.stream:
            events = await primed(handles)
            return stream(_chunks(req, events), kind="sse", error=error_body)
        r = await collect(handles[0])
        return final(req, r.text, r.done)

    return bp


async def _chunks(req: InfillRequest, events: AsyncIterator[Any]) -> AsyncIterator[dict[str, Any]]:
    async for event in events:
        if isinstance(event, TextDelta) and event.text:
            yield {"index": 0, "content": event.text, "tokens": [], "stop": False, "id_slot": 0}
        elif isinstance(event, Done):
            yield final(req, "", event)
