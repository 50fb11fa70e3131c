"""Dialect-neutral core requests and the events the engine answers with.

Requests are pydantic models (they are the boundary every dialect translates into); events are small
slotted dataclasses because one is made per generated token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    role: Role
    content: str = ""
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None  # the tool's name on a tool result
    images: list[str] | None = None  # base64 (or data: URLs) of PNG, JPEG, GIF or BMP images, for vision models
    thinking: str | None = None  # an assistant turn's reasoning (the template sees it as reasoning_content)


class Tool(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolChoice(BaseModel):
    mode: Literal["auto", "none", "required", "function"] = "auto"
    name: str | None = None

    @model_validator(mode="after")
    def _named(self) -> ToolChoice:
        if self.mode == "function" and not self.name:
            raise ValueError("tool_choice of a function needs the function's name")
        return self


class Samplers(BaseModel):
    """llama.cpp's sampler settings with the ranges the engine takes: SamplingOptions' own, and a body's that
    spells them as llama.cpp does (llama-server's /infill takes them flat, with these names)."""

    temperature: float | None = Field(None, ge=0, le=100)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, ge=0, le=1)
    min_p: float | None = Field(None, ge=0, le=1)
    typical_p: float | None = Field(None, ge=0, le=1)
    repeat_penalty: float | None = Field(None, ge=0, le=100)
    repeat_last_n: int | None = Field(None, ge=-1)
    presence_penalty: float | None = Field(None, ge=-100, le=100)
    frequency_penalty: float | None = Field(None, ge=-100, le=100)
    seed: int | None = None


class SamplingOptions(Samplers):
    model_config = ConfigDict(extra="forbid")

    stop: list[str] = Field(default_factory=list)
    max_tokens: int | None = Field(None, description="None or negative: until the context is full")
    ignore_eos: bool = False  # keep going past end-of-generation tokens (benchmarks, load tests)
    # OpenAI's logit_bias: token id → added to its logit, -100 bans (see sampling.logit_bias_sampler)
    logit_bias: dict[int, float] | None = Field(None, max_length=4096)

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, v: dict[int, float] | None) -> dict[int, float] | None:
        for tok, bias in (v or {}).items():
            if tok < 0 or not -100 <= bias <= 100:
                raise ValueError(f"logit_bias: token ids are >= 0 and biases -100 to 100 (token {tok}: {bias})")
        return v


class LoadOptions(BaseModel):
    """Options fixed when a model is loaded; changing one reloads the model. None = the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_ctx: int | None = Field(None, ge=16, le=1 << 22)
    n_batch: int | None = Field(None, ge=1, le=1 << 16)
    n_gpu_layers: int | None = Field(None, ge=-1)
    n_threads: int | None = Field(None, ge=1, le=1024)
    use_mlock: bool | None = None
    use_mmap: bool | None = None
    flash_attn: bool | None = None
    rope_freq_base: float | None = Field(None, gt=0)
    rope_freq_scale: float | None = Field(None, gt=0)

    def satisfied_by(self, loaded: LoadOptions, n_ctx: int | None) -> bool:
        """Whether a model loaded with `loaded` (its context n_ctx tokens, None while not known yet) serves a
        request asking for these options without a reload: every option but the context the same, and a context
        asked for (None: whatever the model has) no larger than the loaded one. The one reload rule: the host's
        proxy and the runner's worker both ask it."""
        if self.model_copy(update={"n_ctx": None}) != loaded.model_copy(update={"n_ctx": None}):
            return False
        if self.n_ctx is None or self.n_ctx == loaded.n_ctx:
            return True
        return n_ctx is not None and self.n_ctx <= n_ctx

    def merged(self, base: LoadOptions | None) -> LoadOptions:
        """These options over base: a field set here wins."""
        if base is None:
            return self
        return base.model_copy(update=self.model_dump(exclude_none=True))


class InfillChunk(BaseModel):
    """One piece of context for fill-in-the-middle (llama-server's input_extra): another file's text."""

    text: str = ""
    filename: str = "tmp"


class SpeculativeOptions(BaseModel):
    """Speculative decoding for one request (inferno.engine.speculate); None: the server's choice."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None  # False: no drafts for this request (True cannot turn on what the server has off)
    n_max: int | None = Field(None, ge=0, le=64)  # llama-server's speculative.n_max: the longest draft
    n_min: int | None = Field(None, ge=0, le=64)  # speculative.n_min: a shorter draft is not verified


FormatSpec = Literal["json"] | dict[str, Any] | None


class LoraAdapter(BaseModel):
    """A LoRA adapter a generation runs with: its GGUF file and scale. Filled in by the host (the store's adapter
    models, `serve --lora`), never taken from a request body: paths from outside never reach the engine."""

    path: str
    scale: float = Field(1.0, ge=-1e4, le=1e4, allow_inf_nan=False)


class LoraScale(BaseModel):
    """llama-server's per-request `lora` entry: the id of an adapter `serve --lora` loaded, and its scale."""

    id: int = Field(ge=0)
    scale: float = Field(ge=-1e4, le=1e4, allow_inf_nan=False)


class GenerateRequest(BaseModel):
    """A chat (messages) or a completion (prompt [+ suffix]); exactly one of the two."""

    model: str
    messages: list[Message] | None = None  # rendered with the chat template
    prompt: str | None = None  # goes to the model verbatim (Ollama's raw mode and templates are the dialect's)
    images: list[str] | None = None  # a prompt's images (a chat's are on its messages); base64 or data: URLs
    # fill-in-the-middle (engine/infill.py): prompt is the text before the cursor, suffix the text after it
    suffix: str | None = None
    infill_prompt: str | None = None  # llama-server /infill's `prompt`: follows the prefix, before the cursor
    infill_extra: list[InfillChunk] | None = Field(None, max_length=1024)  # /infill's input_extra: other files
    template: str | None = None  # a Jinja chat template overriding the model's own
    sampling: SamplingOptions = Field(default_factory=SamplingOptions)
    format: FormatSpec = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice = Field(default_factory=ToolChoice)
    logprobs: int | None = Field(None, ge=0, le=20)
    load: LoadOptions = Field(default_factory=LoadOptions)
    keep_alive: float | None = None  # seconds; negative = forever; None = the server's default
    context: list[int] | None = None  # Ollama's generate context: tokens of an earlier exchange
    return_context: bool = False
    # A prompt longer than the context: a chat drops its oldest turns (never the system prompt, the tools or the
    # last user turn), a plain prompt keeps its first token and newest half; False (or nothing left to drop): 400.
    truncate: bool = False
    shift: bool = False  # at the context's end, discard the oldest half past the system prompt and go on
    # Thinking models: None = the template's default; False = off where the template has a switch; True or an
    # effort = on (the effort reaches templates that read `reasoning_effort`).
    think: bool | Literal["low", "medium", "high"] | None = None
    grammar: str | None = Field(None, max_length=1 << 24)  # raw GBNF, as llama-server's `grammar` (wins over format)
    speculative: SpeculativeOptions = Field(default_factory=SpeculativeOptions)
    lora: list[LoraScale] | None = Field(None, max_length=64)  # scales of the served adapters for this request
    adapters: list[LoraAdapter] = Field(default_factory=list)  # set by the host (engine/lora.py), not a dialect

    @model_validator(mode="after")
    def _one_input(self) -> GenerateRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give either messages or prompt")
        return self


class EmbedRequest(BaseModel):
    model: str
    inputs: list[str]
    truncate: bool = True
    dimensions: int | None = Field(None, ge=1)
    normalize: bool = True
    load: LoadOptions = Field(default_factory=LoadOptions)
    keep_alive: float | None = None


class RerankRequest(BaseModel):
    """Score documents against a query with a reranker (a model with rank pooling), as llama-server's /rerank."""

    model: str
    query: str
    documents: list[str] = Field(min_length=1)
    load: LoadOptions = Field(default_factory=LoadOptions)
    keep_alive: float | None = None


@dataclass(slots=True)
class Ranked:
    """A reranker's relevance score per document, in the documents' order (not sorted)."""

    scores: list[float]
    prompt_tokens: int
    load_ns: int = 0
    total_ns: int = 0


@dataclass(slots=True)
class TextDelta:
    text: str
    logprobs: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class ThinkingDelta:
    """Reasoning of a thinking model, separated from the answer (which comes as TextDelta)."""

    text: str


@dataclass(slots=True)
class Truncated:
    """The prompt did not fit the context: `messages` of its oldest messages were dropped (a chat), or its
    middle (a plain prompt). Sent before any text, so a dialect can say so in its response headers."""

    messages: int
    prompt_tokens: int  # what was left (and is evaluated)
    original_tokens: int


@dataclass(slots=True)
class ToolCalls:
    calls: list[ToolCall]


FinishReason = Literal["stop", "length", "tool_calls", "load", "unload", "cancelled"]


@dataclass(slots=True)
class Done:
    reason: FinishReason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    load_ns: int = 0
    prompt_eval_ns: int = 0
    eval_ns: int = 0
    total_ns: int = 0
    context: list[int] | None = None
    cached_tokens: int = 0
    stop_sequence: str | None = None  # the stop string that ended the generation, when one did
    truncated: int = 0  # messages dropped from the prompt to fit the context
    shifted: int = 0  # tokens discarded by context shifts during the generation
    draft_n: int = 0  # draft tokens verified (speculative decoding; llama-server's timings.draft_n)
    draft_n_accepted: int = 0  # of them, the tokens the model agreed with (each is one of completion_tokens)


@dataclass(slots=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int
    load_ns: int = 0
    total_ns: int = 0


@dataclass(slots=True)
class Tokens:
    tokens: list[int]
    text: str


class TokenizeRequest(BaseModel):
    model: str
    text: str | None = None
    tokens: list[int] | None = None  # given: detokenize them instead
    prompt_of: GenerateRequest | None = None  # given: the prompt tokens this request makes (template, tools, system)
    load: LoadOptions = Field(default_factory=LoadOptions)
    keep_alive: float | None = None


class ScoreRequest(BaseModel):
    """Log-probabilities of a given text under the model (perplexity, evaluation)."""

    model: str
    text: str
    load: LoadOptions = Field(default_factory=LoadOptions)
    keep_alive: float | None = None


@dataclass(slots=True)
class Scores:
    tokens: list[int]
    logprobs: list[float]  # one per token after the first

    @property
    def perplexity(self) -> float:
        import math

        return math.exp(-sum(self.logprobs) / len(self.logprobs))


Event = TextDelta | ThinkingDelta | ToolCalls | Truncated | Done


@dataclass
class LoadedModelInfo:
    """One row of `ps`."""

    name: str
    path: str
    size: int
    context_length: int
    expires_at: float | None  # epoch seconds; None = never
    busy: bool
    load_options: dict[str, Any] = field(default_factory=dict)
    slots: int = 1  # sequences decoded together (--parallel)
    slots_in_use: int = 0
    queued: int = 0  # requests for this model waiting for a slot
    tokens_per_second: float = 0.0  # generated, all slots together, over the last seconds
    devices: list[dict[str, Any]] = field(default_factory=list)  # where it lives: name, endpoint, bytes per kind
    repack: bool = True  # llama.cpp's extra (repacked) buffer types allowed; False: --no-repack or healed
    extra_buffers: bool = False  # weights sit in such a buffer now (CPU_REPACK, AMX…)
    state: Literal["loaded", "loading", "failed"] = "loaded"
    error: str | None = None  # a failed model's cause
    pid: int | None = None  # its runner process
    kv_cache: int = 0  # bytes of its generation context's KV cache (context x slots cells, or shared: kv_unified)
    kv_unified: bool = False  # one KV cache shared by the slots (--kv-unified) instead of a stream per slot
    context_reason: str = ""  # why the context has its size (asked for, the trained length, lowered to fit memory)
    prompt_cache_bytes: int = 0  # KV cells kept in RAM for prompts that continue them (inferno.engine.promptcache)
    prompt_cache_entries: int = 0
    prompt_cache_hits: int = 0  # prompts served from it since the model loaded
