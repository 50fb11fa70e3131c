"""Request bodies of Anthropic's Messages API. Unknown fields are ignored (newer SDKs send more than we use:
metadata, service_tier, cache_control …); unknown content block types are refused with a 400."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextParam(_Body):
    type: Literal["text"]
    text: str


class ImageSource(_Body):
    """Where an image is: `base64` data (`media_type` as the client says; the engine reads the bytes and takes
    PNG, JPEG, GIF and BMP), a `url` (fetched only where the server allows it), or a `file` (refused)."""

    type: Literal["base64", "url", "file"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    file_id: str | None = None


class ImageParam(_Body):
    type: Literal["image"]
    source: ImageSource


class MediaParam(_Body):
    """A document: understood, and refused with a clear 400."""

    type: Literal["document"]


class ThinkingParam(_Body):
    """An earlier turn's reasoning, which goes back to the template (a redacted one has none to show)."""

    type: Literal["thinking", "redacted_thinking"]
    thinking: str = ""


class ToolUseParam(_Body):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)


class ToolResultParam(_Body):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[Annotated[TextParam | ImageParam | MediaParam, Field(discriminator="type")]] = ""
    is_error: bool = False


ContentParam = Annotated[TextParam | ImageParam | MediaParam | ThinkingParam | ToolUseParam | ToolResultParam,
                         Field(discriminator="type")]


class MessageParam(_Body):
    role: Literal["user", "assistant", "system"]  # system: an instruction mid-conversation (text blocks only)
    content: str | list[ContentParam]


class ToolSpec(_Body):
    """A client tool. Anthropic's server tools (web search, code execution …) have a versioned `type`
    and are refused: nothing here can run them."""

    type: Literal["custom"] | None = None
    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9_-]{1,128}$")
    description: str = ""
    input_schema: dict[str, Any]


class ToolChoiceParam(_Body):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class OutputFormatParam(_Body):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfigParam(_Body):
    """Structured outputs: the answer follows the JSON schema (enforced by grammar). `effort` is ignored."""

    format: OutputFormatParam | None = None


class ThinkingConfigParam(_Body):
    """Extended thinking: on, off, or the model's own default (adaptive). The budget is not enforced."""

    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(None, ge=0)


class PromptBody(_Body):
    """What both /v1/messages and /v1/messages/count_tokens read."""

    model: str = Field(min_length=1, max_length=512)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[TextParam] | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: ToolChoiceParam | None = None
    output_config: OutputConfigParam | None = None
    output_format: OutputFormatParam | None = None  # the beta's spelling of output_config.format
    thinking: ThinkingConfigParam | None = None


class MessagesBody(PromptBody):
    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = Field(None, max_length=64)
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    stream: bool = False
    # Inferno's own, as in the other dialects: how long the model stays loaded; a raw GBNF grammar
    keep_alive: str | float | None = None
    grammar: str | None = Field(None, max_length=100_000)


class CountTokensBody(PromptBody):
    pass
