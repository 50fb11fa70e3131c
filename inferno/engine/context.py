"""The context a model is loaded with when nobody names one: its trained length, lowered only to fit memory.

Asked for (a request's `num_ctx`, `serve --n-ctx`) wins; then the operator's INFERNO_CONTEXT_LENGTH (capped at
the trained length); else the trained length (`<arch>.context_length` of the GGUF) when the estimate of weights
+ KV cache + compute buffers fits in the memory free now (the accelerators' when the layers go to local GPUs,
else the machine's MemAvailable), or the largest multiple of STEP below it that fits. Ollama sizes its default
from memory too (4k/32k/256k tiers); here the estimate is per model, so an 8k model on a roomy machine gets 8k.

By default each slot has a KV stream of its own (inferno.engine.batcher), n_ctx cells each, so the estimate holds
n_ctx x --parallel cells (Ollama sizes its cache the same way); with --kv-unified the slots share n_ctx cells.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inferno.engine.protocol import EngineSettings
    from inferno.engine.types import LoadOptions
    from inferno.metadata import ModelMetadata

UNKNOWN_TRAINED = 4096  # a GGUF that does not say its context length
STEP = 1024  # a lowered context is a multiple of this
FLOOR = 2048  # never lowered below this (or the trained length, when smaller): the load may fail instead
HEADROOM = 0.9  # of the free memory the estimate may take: the process, the page cache, the other models
F32 = 4
KV_ELEMENT_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}  # ggml's block sizes per element


def per_token_bytes(meta: ModelMetadata, kv_type: str, flash: bool, n_ubatch: int, slots: int = 1) -> int:
    """KV cache per context cell of each of `slots` streams, plus the compute buffer's share that grows with the
    context: without flash attention llama.cpp materialises K·Q for a micro-batch, n_ctx x n_ubatch x heads f32
    (and its softmax)."""
    if not (meta.block_count and meta.embedding_length and meta.head_count):
        return 0
    kv_heads = meta.head_count_kv or meta.head_count
    head_dim = meta.embedding_length // meta.head_count
    kv = meta.block_count * kv_heads * head_dim * 2 * KV_ELEMENT_BYTES.get(kv_type, 2.0)
    kq = 0 if flash else n_ubatch * meta.head_count * F32 * 2
    return int(kv * max(1, slots) + kq)


def fixed_bytes(size: int, meta: ModelMetadata, n_ubatch: int, n_vocab: int) -> int:
    """Weights (the file) and the compute buffer's part that does not grow with the context: the logits of a
    micro-batch and its activations."""
    width = meta.embedding_length or 0
    return size + n_ubatch * (n_vocab * F32 + width * F32 * 8)


def estimate(size: int, meta: ModelMetadata, n_ctx: int, *, kv_type: str = "f16", flash: bool = False,
             n_ubatch: int = 512, n_vocab: int = 0, slots: int = 1) -> int:
    """Bytes a model takes loaded with n_ctx cells per KV stream: weights + KV cache + compute buffers."""
    return fixed_bytes(size, meta, n_ubatch, n_vocab) + n_ctx * per_token_bytes(meta, kv_type, flash, n_ubatch,
                                                                                 slots)


def choose(meta: ModelMetadata, size: int, options: LoadOptions, settings: EngineSettings, *, trained: int,
           free: int | None, flash: bool, n_vocab: int) -> tuple[int, str]:
    """(n_ctx, why) for a model being loaded; `free` is the memory it may use, measured before its weights
    loaded (None: unknown)."""
    if options.n_ctx:
        return options.n_ctx, "asked for (num_ctx / --n-ctx)"
    if settings.default_context:
        n = min(trained, settings.default_context)
        capped = f", capped at the trained {trained}" if n < settings.default_context else ""
        return n, f"INFERNO_CONTEXT_LENGTH {settings.default_context}{capped}"
    n_ubatch = min(options.n_batch or 512, trained)
    slots = 1 if settings.kv_unified else settings.num_parallel
    need = estimate(size, meta, trained, kv_type=settings.kv_cache_type, flash=flash, n_ubatch=n_ubatch,
                    n_vocab=n_vocab, slots=slots)
    if free is None:
        return trained, "the trained context (free memory unknown)"
    budget = int(free * HEADROOM)
    gib = 1 << 30
    if need <= budget:
        return trained, f"the trained context (needs about {need / gib:.1f} of {free / gib:.1f} GiB free)"
    per = per_token_bytes(meta, settings.kv_cache_type, flash, n_ubatch, slots)
    room = budget - fixed_bytes(size, meta, n_ubatch, n_vocab)
    fits = room // per // STEP * STEP if per and room > 0 else 0
    n = max(min(FLOOR, trained), min(trained, fits))
    return n, (f"lowered from the trained {trained} to fit memory (the trained context needs about "
               f"{need / gib:.1f} GiB, {free / gib:.1f} GiB free)")
