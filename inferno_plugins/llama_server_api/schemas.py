"""Request bodies in llama-server's spelling. Unknown fields (cache_prompt, samplers, id_slot …) are ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from inferno.api import Samplers


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ExtraChunk(_Body):
    """One piece of input_extra: another file's text, laid out before the prefix."""

    text: str  # required, as llama-server requires it; filename is optional
    filename: str = Field("tmp", max_length=4096)


class LoraChoice(_Body):
    """A per-request adapter scale: an id of GET /lora-adapters."""

    id: int = Field(ge=0, le=1 << 16)
    scale: float = Field(ge=-1e4, le=1e4, allow_inf_nan=False)


class InfillRequest(_Body, Samplers):  # the sampler fields (temperature, top_k, …, seed) as the core takes them
    model: str = Field(min_length=1)  # llama-server serves one model; Inferno names it
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[ExtraChunk] = Field(default_factory=list, max_length=1024)
    prompt: str = ""  # follows the prefix: the part of the cursor's line typed so far
    stream: bool = False
    n_predict: int = Field(-1, ge=-1)  # -1: until end of text (or the context is full)
    stop: list[str] = Field(default_factory=list, max_length=16)
    ignore_eos: bool = False
    grammar: str | None = Field(None, max_length=100_000)
    keep_alive: str | float | None = None  # Inferno's: how long the model stays loaded
    lora: list[LoraChoice] | None = Field(None, max_length=64)


class RerankDocument(_Body):
    text: str


class RerankBody(_Body):
    """Jina's and Cohere's rerank body, as llama-server takes it."""

    model: str = Field(min_length=1)
    query: str
    documents: list[str | RerankDocument] = Field(min_length=1, max_length=4096)
    top_n: int | None = Field(None, ge=1)  # the best n; all by default
    return_documents: bool = False
    keep_alive: str | float | None = None
