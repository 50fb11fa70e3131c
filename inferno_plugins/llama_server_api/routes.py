"""llama-server's routes: POST /infill (fill-in-the-middle, answered in its /completion shape, SSE when streamed)
and POST /v1/rerank with its aliases (Jina's and Cohere's shape)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from inferno.api import (
    BadRequestError,
    Done,
    GenerateRequest,
    Inferno,
    InfernoError,
    InfillChunk,
    LoraScale,
    Ranked,
    RerankRequest,
    Samplers,
    SamplingOptions,
    TextDelta,
    Truncated,
    body,
    collect,
    error_type,
    keep_alive,
    primed,
    read_json,
    stream,
    submit_all,
)

from .schemas import InfillRequest, RerankBody

RERANK_PATHS = ("/v1/rerank", "/rerank", "/v1/reranking", "/reranking")  # llama-server's four

STOP_TYPE = {"stop": "eos", "length": "limit"}  # a stop string makes it "word"


def error_body(error: InfernoError) -> dict[str, Any]:
    """llama-server's error shape: the status as code, a message and OpenAI's type word."""
    return {"error": {"code": error.status, "message": error.message, "type": error_type(error)}}


def infill_request(req: InfillRequest) -> GenerateRequest:
    sampling = SamplingOptions(**req.model_dump(include=set(Samplers.model_fields)),
                               stop=[s for s in req.stop if s], max_tokens=req.n_predict, ignore_eos=req.ignore_eos)
    return GenerateRequest(model=req.model, prompt=req.input_prefix, suffix=req.input_suffix,
                           infill_prompt=req.prompt, sampling=sampling, grammar=req.grammar,
                           infill_extra=[InfillChunk(text=c.text, filename=c.filename) for c in req.input_extra],
                           keep_alive=keep_alive(req.keep_alive), truncate=True,  # cut as llama-server cuts
                           lora=None if req.lora is None else [LoraScale(id=x.id, scale=x.scale) for x in req.lora])


def final(req: InfillRequest, content: str, done: Done, truncated: bool) -> dict[str, Any]:
    """The last object: what llama-server's /completion reports at the end."""
    stop_type = "word" if done.stop_sequence else STOP_TYPE.get(done.reason, "eos")
    return {"index": 0, "content": content, "tokens": [], "id_slot": 0, "stop": True, "model": req.model,
            "tokens_predicted": done.completion_tokens, "tokens_evaluated": done.prompt_tokens,
            "tokens_cached": done.cached_tokens, "truncated": truncated, "stop_type": stop_type,
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
        return final(req, r.text, r.done, r.truncated is not None)

    async def rerank() -> Any:
        """Score documents against a query with a reranker; results sorted by relevance_score."""
        req: RerankBody = await read_json(RerankBody)
        info = inferno.lookup(req.model)  # 404 before anything loads
        caps = inferno.capabilities(info, await asyncio.to_thread(inferno.metadata, info.name))
        if "rerank" not in caps:
            kind = "an embedding model" if "embedding" in caps else "a text-generation model"
            raise BadRequestError(f"{req.model} is {kind}, not a reranker: reranking needs a model with rank "
                                  "pooling (bge-reranker, jina-reranker, Qwen3-Reranker …)", param="model")
        texts = [d if isinstance(d, str) else d.text for d in req.documents]
        core = RerankRequest(model=req.model, query=req.query, documents=texts, keep_alive=keep_alive(req.keep_alive))
        ranked: Ranked = (await inferno.engine.rerank(core).result())[-1]
        order = sorted(range(len(texts)), key=lambda i: -ranked.scores[i])[: req.top_n or len(texts)]
        results: list[dict[str, Any]] = []
        for i in order:
            item: dict[str, Any] = {"index": i, "relevance_score": ranked.scores[i]}
            if req.return_documents:
                item["document"] = {"text": texts[i]}
            results.append(item)
        return {"model": req.model, "object": "list", "results": results,
                "usage": {"prompt_tokens": ranked.prompt_tokens, "total_tokens": ranked.prompt_tokens}}

    @bp.get("/lora-adapters")
    async def lora_adapters() -> Any:
        """The adapters `serve --lora` loaded for the served model: id, path and global scale."""
        served = inferno.engine.served_lora
        return served.listing() if served is not None else []

    @bp.post("/lora-adapters")
    async def set_lora_adapters() -> Any:
        """Set the global scales: [{id, scale}] (the adapters not listed go to 0, as llama-server does)."""
        entries = await _lora_body()
        served = inferno.engine.served_lora
        if served is None:
            if entries:
                raise BadRequestError("no LoRA adapters are loaded (serve MODEL --lora FILE)", param="lora")
            return []
        served.set_scales(entries)
        return served.listing()

    for path in RERANK_PATHS:
        bp.add_url_rule(path, f"rerank{path.replace('/', '_')}", body(RerankBody)(rerank), methods=["POST"])
    return bp


async def _lora_body() -> list[LoraScale]:
    from pydantic import TypeAdapter, ValidationError
    from quart import request

    from .schemas import LoraChoice

    try:
        raw = await request.get_json(force=True, silent=False)
        items = TypeAdapter(list[LoraChoice]).validate_python(raw)
    except ValidationError as e:
        err = e.errors()[0]
        raise BadRequestError(f"lora-adapters: {err['msg']} at {list(err['loc'])}", param="lora") from None
    except Exception:  # not JSON
        raise BadRequestError("the body must be a JSON list of {id, scale}", param="lora") from None
    if len(items) > 64:
        raise BadRequestError("at most 64 adapters", param="lora")
    return [LoraScale(id=x.id, scale=x.scale) for x in items]


async def _chunks(req: InfillRequest, events: AsyncIterator[Any]) -> AsyncIterator[dict[str, Any]]:
    truncated = False
    async for event in events:
        if isinstance(event, TextDelta) and event.text:
            yield {"index": 0, "content": event.text, "tokens": [], "stop": False, "id_slot": 0}
        elif isinstance(event, Truncated):
            truncated = True
        elif isinstance(event, Done):
            yield final(req, "", event, truncated)
