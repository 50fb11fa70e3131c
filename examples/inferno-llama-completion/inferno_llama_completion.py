"""An API dialect in one file: llama-server's native `POST /completion` (a raw prompt continued, streamed as
server-sent events or not) with llama-server's own error shape, written against `inferno.api` only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from inferno.api import (
    Done,
    GenerateRequest,
    InfernoError,
    SamplingOptions,
    TextDelta,
    body,
    collect,
    hookimpl,
    primed,
    read_json,
    register_error_shape,
    stop_list,
    stream,
)

if TYPE_CHECKING:
    from quart import Quart

    from inferno.api import Inferno


class CompletionBody(BaseModel):
    """The fields of llama-server's /completion body this example reads; the others are ignored."""

    model_config = ConfigDict(extra="ignore")

    prompt: str
    model: str | None = None  # llama-server serves one model; here it is the default model unless named
    n_predict: int = Field(-1, ge=-1)  # -1: until the model stops or the context is full
    temperature: float | None = Field(None, ge=0)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    stream: bool = False


def error_body(error: InfernoError) -> dict[str, Any]:
    """llama-server's error shape, for every error under /completion (also a mid-stream one)."""
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
            503: "unavailable_error"}.get(error.status, "server_error")
    return {"error": {"code": error.status, "message": error.message, "type": kind}}


def final(model: str, done: Done, content: str = "") -> dict[str, Any]:
    """The last object of a completion, with llama-server's counters and timings (ms)."""
    return {"content": content, "stop": True, "model": model,
            "stop_type": "limit" if done.reason == "length" else "eos",  # a stop string counts as "eos" here
            "tokens_predicted": done.completion_tokens, "tokens_evaluated": done.prompt_tokens,
            "timings": {"prompt_n": done.prompt_tokens, "prompt_ms": done.prompt_eval_ns / 1e6,
                        "predicted_n": done.completion_tokens, "predicted_ms": done.eval_ns / 1e6}}


async def chunks(events: AsyncIterator[Any], model: str) -> AsyncIterator[dict[str, Any]]:
    """One `{"content": piece, "stop": false}` per piece of text, then the final object."""
    async for event in events:
        if isinstance(event, TextDelta) and event.text:
            yield {"content": event.text, "stop": False}
        elif isinstance(event, Done):
            yield final(model, event)


@hookimpl
def register_routes(app: Quart, inferno: Inferno) -> None:
    from quart import Blueprint

    bp = Blueprint("llama_completion", __name__)

    @bp.post("/completion")
    @body(CompletionBody)  # the body's schema goes into /openapi.json
    async def completion() -> Any:
        """llama-server's /completion: a raw prompt continued, as server-sent events when stream is true."""
        req: CompletionBody = await read_json(CompletionBody)  # a bad body is a 400, in error_body's shape
        model = req.model or inferno.settings.default_model
        handle = inferno.engine.submit(GenerateRequest(
            model=model, prompt=req.prompt,  # a prompt goes to the model as it is: no chat template
            sampling=SamplingOptions(max_tokens=req.n_predict, temperature=req.temperature, top_k=req.top_k,
                                     top_p=req.top_p, seed=req.seed, stop=stop_list(req.stop))))
        if req.stream:  # primed: an unknown model is still a 404 here, before the stream's 200
            return stream(chunks(await primed([handle]), model), kind="sse", error=error_body)
        result = await collect(handle)
        return final(model, result.done, result.text)

    app.register_blueprint(bp)
    register_error_shape(app, "/completion", error_body)
