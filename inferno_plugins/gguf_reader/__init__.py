"""Reads GGUF headers (header.py, a streaming reader): architecture, sizes, RoPE, quantization, chat template."""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

from inferno.api import hookimpl

_GGUF_MAGIC = b"GGUF"
# Arrays longer than this (token lists, merges) are not metadata anyone reads in /api/show.
_MAX_ARRAY = 64


@functools.cache
def _gguf_constants() -> ModuleType:
    """gguf-py's constants module (the names llama.cpp gives file and tensor types) on its own: `import gguf` runs
    the package's __init__, which imports numpy and its reader and writer, 0.2 s of a server's first model load."""
    import importlib.util

    package = importlib.util.find_spec("gguf")  # finds, does not import
    if package is None or package.origin is None:
        raise ImportError("the gguf package is not installed")
    constants = Path(package.origin).with_name("constants.py")
    spec = importlib.util.spec_from_file_location("inferno_gguf_constants", constants)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quantization_name(file_type: int | None, tensors: list[tuple[int, int, int]]) -> str | None:
    constants = _gguf_constants()
    GGMLQuantizationType, LlamaFileType = constants.GGMLQuantizationType, constants.LlamaFileType

    if file_type is not None:
        try:
            name = LlamaFileType(file_type).name
        except ValueError:
            name = None
        if name:
            return name.removeprefix("MOSTLY_").replace("ALL_", "")
    # no file_type key: name it after the most common type of the matrices
    kinds = Counter(ggml_type for _, ggml_type, n_dims in tensors if n_dims > 1)
    for ggml_type, _ in kinds.most_common(1):
        try:
            return GGMLQuantizationType(ggml_type).name
        except ValueError:
            return None
    return None


def read_gguf(path: Path) -> dict[str, Any]:
    from .header import read_header

    header = read_header(path, _MAX_ARRAY, ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"))
    kv = header.kv
    arch = kv.get("general.architecture")
    params = sum(elements for elements, _, _ in header.tensors)

    def a(suffix: str) -> Any:
        return kv.get(f"{arch}.{suffix}") if arch else None

    def token_text(token_id: Any) -> str | None:
        return header.tokens.get(token_id) if isinstance(token_id, int) else None

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
        "vocab_size": a("vocab_size") or header.array_lengths.get("tokenizer.ggml.tokens"),
        "rope_freq_base": a("rope.freq_base"),
        "rope_freq_scale": (1.0 / a("rope.scaling.factor")) if a("rope.scaling.factor") else None,
        "rope_scaling_type": scaling,
        "file_type": kv.get("general.file_type"),
        "quantization": quantization_name(kv.get("general.file_type"), header.tensors),
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
