"""Reads GGUF headers with the `gguf` package: architecture, sizes, RoPE, quantization, chat template."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from inferno.api import hookimpl

_GGUF_MAGIC = b"GGUF"
# Arrays longer than this (token lists, merges) are not metadata anyone reads in /api/show.
_MAX_ARRAY = 64


def _field_value(field: Any) -> Any:
    from gguf import GGUFValueType

    types = field.types
    if not types:
        return None
    if types[0] == GGUFValueType.ARRAY:
        if len(field.data) > _MAX_ARRAY:
            return None
        return [_part_value(field, i, types[-1]) for i in field.data]
    return _part_value(field, field.data[0], types[0])


def _part_value(field: Any, index: int, vtype: Any) -> Any:
    from gguf import GGUFValueType

    part = field.parts[index]
    if vtype == GGUFValueType.STRING:
        return bytes(part).decode("utf-8", errors="replace")
    value = part.tolist()
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def quantization_name(file_type: int | None, tensor_types: Counter[str]) -> str | None:
    from gguf import LlamaFileType

    if file_type is not None:
        try:
            name = LlamaFileType(file_type).name
        except ValueError:
            name = None
        if name:
            return name.removeprefix("MOSTLY_").replace("ALL_", "")
    if tensor_types:  # no file_type key: name it after the most common tensor type
        return tensor_types.most_common(1)[0][0]
    return None


def read_gguf(path: Path) -> dict[str, Any]:
    from gguf import GGUFReader

    reader = GGUFReader(path, "r")
    kv: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        value = _field_value(field)
        if value is not None:
            kv[key] = value
    arch = kv.get("general.architecture")
    params = sum(int(t.n_elements) for t in reader.tensors)
    tensor_types = Counter(t.tensor_type.name for t in reader.tensors if len(t.shape) > 1)

    def a(suffix: str) -> Any:
        return kv.get(f"{arch}.{suffix}") if arch else None

    tokens_field = reader.fields.get("tokenizer.ggml.tokens")

    def token_text(token_id: Any) -> str | None:
        if tokens_field is None or not isinstance(token_id, int) or token_id >= len(tokens_field.data):
            return None
        return bytes(tokens_field.parts[tokens_field.data[token_id]]).decode("utf-8", errors="replace")

    bos_id, eos_id = kv.get("tokenizer.ggml.bos_token_id"), kv.get("tokenizer.ggml.eos_token_id")
    scaling = a("rope.scaling.type")
    pooling = a("pooling_type")
    kv["general.parameter_count"] = params
    return {
        "architecture": arch,
        "model_name": kv.get("general.name"),
        "parameter_count": params,
        "context_length": a("context_length"),
        "embedding_length": a("embedding_length"),
        "block_count": a("block_count"),
        "head_count": a("attention.head_count"),
        "head_count_kv": a("attention.head_count_kv"),
        "vocab_size": a("vocab_size") or (len(tokens_field.data) if tokens_field is not None else None),
        "rope_freq_base": a("rope.freq_base"),
        "rope_freq_scale": (1.0 / a("rope.scaling.factor")) if a("rope.scaling.factor") else None,
        "rope_scaling_type": scaling,
        "file_type": kv.get("general.file_type"),
        "quantization": quantization_name(kv.get("general.file_type"), tensor_types),
        "chat_template": kv.get("tokenizer.chat_template"),
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "bos_token": token_text(bos_id),
        "eos_token": token_text(eos_id),
        "pooling_type": {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}.get(pooling)
        if isinstance(pooling, int) else None,
        "has_fim": any(f"tokenizer.ggml.{k}_token_id" in kv for k in ("fim_pre", "prefix")),
        "model_info": {k: v for k, v in kv.items() if not k.startswith("tokenizer.")},
    }


@hookimpl(trylast=True)
def read_model_metadata(path: Path) -> dict[str, Any] | None:
    with Path(path).open("rb") as f:
        if f.read(4) != _GGUF_MAGIC:
            return None
    try:
        return read_gguf(path)
    except Exception as e:  # a truncated or corrupt header: say so instead of crashing every caller
        from inferno.api import BadRequestError

        raise BadRequestError(f"{path} is not a readable GGUF file: {e}") from e
