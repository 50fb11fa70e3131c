"""Request bodies of the Responses dialect, as the official API reference names them.

Unknown fields are ignored (newer SDKs send more than we use); fields we cannot honour (hosted tools, files,
background mode, conversations) are refused with a 400 naming them rather than silently dropped.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


# content parts -----------------------------------------------------------------------------------------


class TextPart(_Body):
    """input_text in what a user sends; output_text in an assistant message fed back."""

    type: Literal["input_text", "output_text", "text"]
    text: str


class RefusalPart(_Body):
    type: Literal["refusal"]
    refusal: str


class ImagePart(_Body):
    """An image: `image_url` a data: URL or base64 (an http(s) URL only where the server fetches URLs);
    `file_id` (the Files API) is refused. `detail` is ignored: the projector sets an image's tokens."""

    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class MediaPart(_Body):
    """Files and audio: part of the API, refused here."""

    type: Literal["input_file", "input_audio"]


Part = TextPart | RefusalPart | ImagePart | MediaPart


# input items -------------------------------------------------------------------------------------------


class MessageItem(_Body):
    """A message; `{"role", "content"}` without a type is one too (the SDK's EasyInputMessage)."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Part]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallItem(_Body):
    """A function call the model made, fed back in a later turn."""

    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str = "{}"
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(_Body):
    """The result of a function call, for the model to answer from."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[Part]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class ReasoningText(_Body):
    type: Literal["reasoning_text", "summary_text"]
    text: str


class ReasoningItem(_Body):
    """A thinking model's reasoning fed back: it reaches templates that show earlier turns' reasoning."""

    type: Literal["reasoning"]
    summary: list[ReasoningText] = Field(default_factory=list)
    content: list[ReasoningText] | None = None
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem


# tools and formats -------------------------------------------------------------------------------------


class FunctionTool(_Body):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class HostedTool(_Body):
    """web_search, file_search, code_interpreter, computer_use, mcp …: OpenAI runs those, we cannot."""

    type: str


class NamedFunction(_Body):
    type: Literal["function"]
    name: str = Field(min_length=1)


class OtherToolChoice(_Body):
    """allowed_tools, a hosted tool, mcp, custom: refused by name."""

    type: str


class TextFormat(_Body):
    type: Literal["text"]


class JsonObjectFormat(_Body):
    type: Literal["json_object"]
    # llama-server's extension, as in chat completions: json_object with a schema constrains by it
    schema_: dict[str, Any] | None = Field(None, alias="schema")


class JsonSchemaFormat(_Body):
    type: Literal["json_schema"]
    name: str = "response"
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(_Body):
    format: TextFormat | JsonObjectFormat | JsonSchemaFormat = Field(default_factory=lambda: TextFormat(type="text"))
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_Body):
    """Thinking models: "none" turns thinking off where the template can; an effort reaches templates that
    read one."""

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None


# bodies ------------------------------------------------------------------------------------------------


class PromptBody(_Body):
    """What makes a prompt: shared by creating a response and counting its input tokens."""

    model: str = Field(min_length=1, max_length=512)
    input: str | list[InputItem] = ""
    instructions: str | None = None
    previous_response_id: str | None = Field(None, max_length=128)
    tools: list[FunctionTool | HostedTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | OtherToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    truncation: Literal["auto", "disabled"] | None = None
    conversation: str | dict[str, Any] | None = None
    reasoning: ReasoningConfig | None = None


class CreateResponse(PromptBody):
    """POST /v1/responses. Besides the reference's fields, llama.cpp knobs clients may send in extra_body."""

    stream: bool = False
    store: bool = True
    background: bool = False
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    metadata: dict[str, str] | None = Field(None, max_length=16)
    user: str | None = None
    # extensions (extra_body)
    seed: int | None = None
    stop: str | list[str] | None = None
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, le=1)
    repeat_penalty: float | None = Field(None, ge=0, le=100)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    num_ctx: int | None = Field(None, ge=16, le=1 << 22)
    ignore_eos: bool = False
    grammar: str | None = Field(None, max_length=100_000)  # raw GBNF, as llama-server's `grammar`
    keep_alive: str | float | None = None


class InputTokens(PromptBody):
    """POST /v1/responses/input_tokens: how many tokens the prompt of such a request is."""
