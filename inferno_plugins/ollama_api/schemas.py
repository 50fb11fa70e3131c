"""Request bodies of the Ollama dialect. `name` is accepted for `model` where Ollama accepts it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Named(_Body):
    model: str = Field("", max_length=512)
    name: str | None = Field(None, max_length=512)

    @model_validator(mode="after")
    def _alias(self) -> _Named:
        if not self.model and self.name:
            self.model = self.name
        if not self.model:
            raise ValueError("model is required")
        return self


Format = Literal["json", ""] | dict[str, Any] | None
KeepAlive = str | float | int | None


class GenerateBody(_Named):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    stream: bool = True
    raw: bool = False
    format: Format = None
    images: list[str] | None = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    think: bool | str | None = None
    truncate: bool | None = None  # None: true, as Ollama (drop the oldest turns of a prompt that does not fit)
    shift: bool | None = None  # None: true, as Ollama (context shift when a generation reaches the context end)


class FunctionCall(_Body):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCallIn(_Body):
    function: FunctionCall
    id: str | None = None


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_name: str | None = None
    thinking: str | None = None


class FunctionDef(_Body):
    name: str = Field(min_length=1, max_length=256)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolDef(_Body):
    type: Literal["function"] = "function"
    function: FunctionDef


class ChatBody(_Named):
    messages: list[ChatMessage] = Field(default_factory=list)
    tools: list[ToolDef] | None = None
    format: Format = None
    options: dict[str, Any] | None = None
    stream: bool = True
    keep_alive: KeepAlive = None
    think: bool | str | None = None
    truncate: bool | None = None
    shift: bool | None = None


class EmbedBody(_Named):
    input: str | list[str] = ""
    truncate: bool = True
    dimensions: int | None = Field(None, ge=1)
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None


class EmbeddingsBody(_Named):
    prompt: str = ""
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None


class ShowBody(_Named):
    verbose: bool = False


class PullBody(_Named):
    insecure: bool = False
    stream: bool = True


class DeleteBody(_Named):
    pass


class CopyBody(_Body):
    source: str = Field(min_length=1, max_length=512)
    destination: str = Field(min_length=1, max_length=512)


class CreateBody(_Named):
    from_: str | None = Field(None, alias="from", max_length=512)
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = Field(None, max_length=64)  # LoRA adapter GGUF blobs: file name → digest
    quantize: str | None = None
    draft: str | None = Field(None, max_length=512)  # Inferno's: a store model that drafts for this one
    system: str | None = None
    template: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[ChatMessage] | None = None
    license: str | list[str] | None = None
    stream: bool = True
