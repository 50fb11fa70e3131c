"""Request bodies of the OpenAI dialect. Unknown fields are ignored, as newer SDKs send more than we use."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ImageURL(_Body):
    url: str
    detail: str | None = None


class ImagePart(_Body):
    type: Literal["image_url", "input_image", "input_audio", "file"]
    image_url: ImageURL | str | None = None  # a data: URL, bare base64, or (when allowed) an http(s) URL


class FunctionCall(_Body):
    name: str
    arguments: str = "{}"


class ToolCallIn(_Body):
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart | ImagePart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None  # an earlier answer's reasoning, as we send it (llama-server, DeepSeek)
    reasoning: str | None = None  # the same, in vLLM's and LM Studio's newer name


class FunctionDef(_Body):
    name: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class ToolDef(_Body):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"] = "function"
    function: NamedFunction


class JsonSchemaSpec(_Body):
    name: str = "response"
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None
    # llama-server's extension (llama-cpp-python's server too): json_object with a schema constrains by it
    schema_: dict[str, Any] | None = Field(None, alias="schema")


class StreamOptions(_Body):
    include_usage: bool = False


class LoraChoice(_Body):
    """llama-server's per-request adapter scale: an id of GET /lora-adapters."""

    id: int = Field(ge=0, le=1 << 16)
    scale: float = Field(ge=-1e4, le=1e4, allow_inf_nan=False)


class _Sampling(_Body):
    """Fields both completion endpoints share, plus llama.cpp knobs clients may send in extra_body."""

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int = Field(1, ge=1, le=8)
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    user: str | None = None
    logit_bias: dict[str, float] | None = None  # token id (as a string) → -100 (ban) to 100; checked in translate
    lora: list[LoraChoice] | None = Field(None, max_length=64)  # llama-server's: `serve --lora` adapters' scales
    # extensions (extra_body): what Ollama users miss in its OpenAI dialect
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, le=1)
    typical_p: float | None = Field(None, ge=0, le=1)
    repeat_penalty: float | None = Field(None, ge=0, le=100)
    num_ctx: int | None = Field(None, ge=16, le=1 << 22)
    ignore_eos: bool = False
    keep_alive: str | float | None = None
    grammar: str | None = Field(None, max_length=100_000)  # raw GBNF, as llama-server takes it
    response_format: ResponseFormat | None = None  # on completions too, as llama-server takes it
    json_schema: dict[str, Any] | None = None  # llama-server's top-level schema (response_format wins)
    # speculative decoding: false turns drafts off for this request; llama-server's draft lengths (p_min is
    # checked and has no effect: n-gram drafts have no probabilities)
    speculative: bool | None = None
    speculative_n_max: int | None = Field(None, alias="speculative.n_max", ge=0, le=64)
    speculative_n_min: int | None = Field(None, alias="speculative.n_min", ge=0, le=64)
    speculative_p_min: float | None = Field(None, alias="speculative.p_min", ge=0, le=1)
    # load options, in Ollama's spelling (num_*) or llama.cpp's (n_*): a change reloads the model
    n_ctx: int | None = Field(None, ge=16, le=1 << 22)
    num_batch: int | None = Field(None, ge=1, le=1 << 16)
    n_batch: int | None = Field(None, ge=1, le=1 << 16)
    num_gpu: int | None = Field(None, ge=-1)
    n_gpu_layers: int | None = Field(None, ge=-1)
    num_thread: int | None = Field(None, ge=1, le=1024)
    n_threads: int | None = Field(None, ge=1, le=1024)
    use_mlock: bool | None = None
    use_mmap: bool | None = None
    rope_freq_base: float | None = Field(None, gt=0)
    rope_frequency_base: float | None = Field(None, gt=0)
    rope_freq_scale: float | None = Field(None, gt=0)
    rope_frequency_scale: float | None = Field(None, gt=0)

    def load_options(self) -> dict[str, Any]:
        """The load options this body sets, under LoadOptions' names (llama.cpp's spelling wins a tie)."""
        pairs = {"n_ctx": (self.n_ctx, self.num_ctx), "n_batch": (self.n_batch, self.num_batch),
                 "n_gpu_layers": (self.n_gpu_layers, self.num_gpu), "n_threads": (self.n_threads, self.num_thread),
                 "use_mlock": (self.use_mlock, None), "use_mmap": (self.use_mmap, None),
                 "rope_freq_base": (self.rope_freq_base, self.rope_frequency_base),
                 "rope_freq_scale": (self.rope_freq_scale, self.rope_frequency_scale)}
        return {k: a if a is not None else b for k, (a, b) in pairs.items() if a is not None or b is not None}


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[ToolDef] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    # thinking models: "none" turns thinking off where the template can; an effort reaches templates that read it
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] = Field(...)
    suffix: str | None = None
    max_tokens: int | None = Field(16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=5)


class EmbeddingRequest(_Body):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    keep_alive: str | float | None = None
