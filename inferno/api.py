"""Inferno's public API: everything a plugin (first- or third-party) may import, and nothing else.

Plugins import from `inferno.api` only (tests/test_public_api.py enforces it for the first-party ones); the
modules behind these names may move, these names stay. Importing this module is cheap: no quart, no
llama_cpp, no huggingface_hub — those are imported inside the functions that need them.
"""

from __future__ import annotations

from inferno import __version__
from inferno.cli.models import human_size, table
from inferno.cli.progress import ProgressBar
from inferno.config import Settings, parse_duration
from inferno.dialect import (
    Chunk,
    Collected,
    ErrorShape,
    ImagePolicy,
    collect,
    count_tokens,
    dumps,
    error_response,
    image_source,
    keep_alive,
    ndjson,
    neutral_error,
    primed,
    register_error_shape,
    sse,
    stop_list,
    stream,
    submit_all,
    tool_call_id,
)
from inferno.engine.protocol import Engine, ModelDefaults, ResolvedModel
from inferno.engine.thinking import supports_thinking
from inferno.engine.types import (
    Done,
    Embeddings,
    EmbedRequest,
    Event,
    FinishReason,
    FormatSpec,
    GenerateRequest,
    LoadedModelInfo,
    LoadOptions,
    Message,
    SamplingOptions,
    ScoreRequest,
    Scores,
    TextDelta,
    ThinkingDelta,
    TokenizeRequest,
    Tokens,
    Tool,
    ToolCall,
    ToolCalls,
    ToolChoice,
)
from inferno.engine.vision import MARKER as IMAGE_MARKER
from inferno.errors import (
    AuthenticationError,
    BadRequestError,
    BusyError,
    ForbiddenError,
    InfernoError,
    ModelLoadError,
    ModelNotFoundError,
    NotFoundError,
    SourceError,
    UnavailableError,
)
from inferno.hookspecs import hookimpl
from inferno.host import Inferno
from inferno.metadata import ModelMetadata, format_parameter_size
from inferno.ram import default_context, kv_cache_bytes, ram_table
from inferno.server import body, read_json
from inferno.sources import Chooser, Fetched, ModelRef, name_from
from inferno.store import (
    ModelInfo,
    Progress,
    atomic_write,
    display_name,
    normalize_name,
    safe_filename,
    sha256_file,
)

__all__ = [
    "IMAGE_MARKER",
    "AuthenticationError", "BadRequestError", "BusyError", "Chooser", "Chunk", "Collected", "Done", "EmbedRequest",
    "Embeddings", "Engine", "ErrorShape", "Event", "Fetched", "FinishReason", "ForbiddenError", "FormatSpec",
    "GenerateRequest", "ImagePolicy", "Inferno", "InfernoError", "LoadOptions", "LoadedModelInfo", "Message",
    "ModelDefaults",
    "ModelInfo", "ModelLoadError", "ModelMetadata", "ModelNotFoundError", "ModelRef", "NotFoundError", "Progress",
    "ProgressBar", "ResolvedModel", "SamplingOptions", "ScoreRequest", "Scores", "Settings", "SourceError",
    "TextDelta", "ThinkingDelta", "TokenizeRequest", "Tokens", "Tool", "ToolCall", "ToolCalls", "ToolChoice",
    "UnavailableError",
    "__version__", "atomic_write", "body", "collect", "count_tokens", "default_context", "display_name", "dumps",
    "error_response",
    "format_parameter_size", "hookimpl", "human_size", "image_source", "keep_alive", "kv_cache_bytes", "name_from",
    "ndjson",
    "neutral_error", "normalize_name", "parse_duration", "primed", "ram_table", "read_json", "register_error_shape",
    "safe_filename", "sha256_file", "sse", "stop_list", "stream", "submit_all", "supports_thinking", "table",
    "tool_call_id",
]
