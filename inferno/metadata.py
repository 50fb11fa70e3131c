"""Model metadata: every read_model_metadata implementation answers, the host merges field by field.

Implementations are called in pluggy's order (the GGUF reader is trylast), and the first non-None value
of each field wins, so a plugin can correct one field without re-reading the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from inferno.errors import BadRequestError


class ModelMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    architecture: str | None = None
    model_name: str | None = None
    parameter_count: int | None = None
    context_length: int | None = None
    embedding_length: int | None = None
    block_count: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    vocab_size: int | None = None
    rope_freq_base: float | None = None
    rope_freq_scale: float | None = None
    rope_scaling_type: str | None = None
    file_type: int | None = None
    quantization: str | None = None
    chat_template: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pooling_type: str | None = None
    has_fim: bool | None = None  # fill-in-the-middle tokens: the model can "insert" (suffix)
    # The raw scalar key/values of the file (general.*, <arch>.*), for Ollama's /api/show model_info.
    model_info: dict[str, Any] = {}


def read_metadata(path: Path) -> ModelMetadata:
    from inferno.plugins import load_plugins, pm

    load_plugins()
    if not Path(path).is_file():
        raise BadRequestError(f"no such file: {path}")
    merged: dict[str, Any] = {}
    for answer in pm.hook.read_model_metadata(path=Path(path)):
        if not answer:
            continue
        for key, value in answer.items():
            if value is not None and merged.get(key) is None:
                merged[key] = value
    return ModelMetadata.model_validate(merged)


def format_parameter_size(count: int | None) -> str:
    """135_000_000 → "135M", 7_240_000_000 → "7.2B", as Ollama shows it."""
    if not count:
        return ""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            value = count / scale
            text = f"{value:.1f}".rstrip("0").rstrip(".") if value < 100 else f"{value:.0f}"
            return f"{text}{unit}"
    return str(count)
