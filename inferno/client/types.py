"""Response models: pydantic, attribute access, tolerant of fields this client does not know yet."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class FunctionCall(_Model):
    name: str | None = None
    arguments: str | None = None


class ToolCall(_Model):
    id: str | None = None
    type: str | None = "function"
    index: int | None = None
    function: FunctionCall | None = None


class ChatMessage(_Model):
    role: str = "assistant"
    content: str | None = None
    reasoning_content: str | None = None  # a thinking model's reasoning, apart from the answer
    tool_calls: list[ToolCall] | None = None


class Delta(_Model):
    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None


class PromptTokensDetails(_Model):
    cached_tokens: int = 0


class Usage(_Model):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None


class _Choice(_Model):
    """What every choice of the OpenAI shapes has."""

    index: int = 0
    finish_reason: str | None = None
    logprobs: Any = None


class _Answer(_Model):
    """What every chat or completion answer (and chunk) has."""

    id: str
    created: int = 0
    model: str
    usage: Usage | None = None


class ChatChoice(_Choice):
    message: ChatMessage


class ChatCompletion(_Answer):
    object: str = "chat.completion"
    choices: list[ChatChoice]


class ChunkChoice(_Choice):
    delta: Delta


class ChatCompletionChunk(_Answer):
    object: str = "chat.completion.chunk"
    choices: list[ChunkChoice]


class CompletionChoice(_Choice):
    text: str


class Completion(_Answer):
    object: str = "text_completion"
    choices: list[CompletionChoice]


class Embedding(_Model):
    index: int
    embedding: list[float] | str
    object: str = "embedding"


class EmbeddingsResponse(_Model):
    data: list[Embedding]
    model: str
    usage: Usage | None = None


class Model(_Model):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "inferno"


class ModelList(_Model):
    data: list[Model]
    object: str = "list"


class PullProgress(_Model):
    status: str
    completed: int | None = None
    total: int | None = None
    digest: str | None = None


class ShowResponse(_Model):
    modelfile: str = ""
    parameters: str = ""
    template: str = ""
    details: dict[str, Any] = {}
    model_info: dict[str, Any] = {}
    capabilities: list[str] = []
    system: str | None = None


class LoadedModel(_Model):
    name: str
    size: int = 0
    context_length: int | None = None
    context_reason: str = ""  # why the context has that size (asked for, trained, lowered to fit memory)
    expires_at: str | None = None
    busy: bool = False
    slots: int = 1
    slots_in_use: int = 0
    queued: int = 0
    tokens_per_second: float = 0.0
    devices: list[dict[str, Any]] = []  # where it lives: name, endpoint (an RPC worker's), memory in bytes
    state: str = "loaded"  # or "failed": its engine kept stopping (error says why)
    error: str | None = None
    repack: bool = True  # False: loaded without llama.cpp's repacked weights (--no-repack, or healed)
    extra_buffers: bool = False  # its weights sit in llama.cpp's extra buffer types (CPU_REPACK, AMX…)
    pid: int | None = None  # the model's runner process
    kv_cache: int = 0  # bytes of its KV cache (context x slots cells; shared by the slots when kv_unified)
    kv_unified: bool = False


class PsResponse(_Model):
    models: list[LoadedModel]


class TokenizeResponse(_Model):
    tokens: list[int]


class DetokenizeResponse(_Model):
    text: str


class RerankDocument(_Model):
    text: str


class RerankResult(_Model):
    index: int  # the document's place in the request
    relevance_score: float
    document: RerankDocument | None = None  # with return_documents


class RerankResponse(_Model):
    model: str
    results: list[RerankResult]  # best first
    usage: Usage | None = None
    object: str = "list"
