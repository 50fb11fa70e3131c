"""RAM a model needs: its weights plus an f16 KV cache at a context length (the `estimate`, `list` and
`show` figure). Weights are the file's size for its own quantization, parameters x bits per weight for others."""

from __future__ import annotations

from inferno.metadata import ModelMetadata

KV_BYTES = 2  # f16 K and V cache entries

# Approximate bits per weight on a 7-8B llama (llama.cpp's quantize table), for the per-quantization table.
COMMON_BITS: dict[str, float] = {"F16": 16.0, "Q8_0": 8.5, "Q6_K": 6.56, "Q5_K_M": 5.7, "Q4_K_M": 4.89,
                                 "Q4_0": 4.5, "Q3_K_M": 3.91, "Q2_K": 2.96}


def kv_cache_bytes(meta: ModelMetadata, n_ctx: int) -> int | None:
    """layers * kv heads * head dim * context * (K and V) * bytes per element; None when the file lacks them."""
    if not (meta.block_count and meta.embedding_length and meta.head_count):
        return None
    kv_heads = meta.head_count_kv or meta.head_count
    head_dim = meta.embedding_length // meta.head_count
    return meta.block_count * kv_heads * head_dim * n_ctx * 2 * KV_BYTES


def default_context(meta: ModelMetadata, server_default: int | None) -> int:
    """The context a model gets when nobody asks for one, memory permitting: its trained length, capped by the
    server's default (INFERNO_CONTEXT_LENGTH) when one is set. (A load lowers it further when the estimate
    does not fit the memory free then: inferno.engine.context.)"""
    trained = meta.context_length or 4096
    return min(trained, server_default) if server_default else trained


def ram_bytes(size: int, meta: ModelMetadata, n_ctx: int) -> int:
    """Weights (the file) + KV cache at n_ctx."""
    return size + (kv_cache_bytes(meta, n_ctx) or 0)


def ram_table(size: int, meta: ModelMetadata, n_ctx: int) -> list[tuple[str, int, int | None, int]]:
    """(quantization, weights, KV cache, total) for this file, then the common quantizations of the same model."""
    kv = kv_cache_bytes(meta, n_ctx)
    own = (meta.quantization or "?").upper()
    rows = [(f"{own} (this file)", size, kv, size + (kv or 0))]
    for label, bits in COMMON_BITS.items():
        if label != own and meta.parameter_count:
            weights = int(meta.parameter_count * bits / 8)
            rows.append((label, weights, kv, weights + (kv or 0)))
    return rows
