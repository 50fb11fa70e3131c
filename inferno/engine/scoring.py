"""Scoring a text (each token's log-probability given those before it) in a free slot of the batcher's context."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

from inferno.errors import InfernoError

if TYPE_CHECKING:
    from inferno.engine.batcher import Batcher


def score(batcher: Batcher, tokens: list[int]) -> list[float] | None:
    """Each token's log-probability given those before it, in windows of at most n_batch tokens each
    starting afresh (as llama.cpp's perplexity tool does). None while no slot or room is free."""
    import numpy as np

    free = [s for s in batcher.slots if s.seq is None]
    window = min(batcher.n_ctx, batcher.n_batch)
    if not free:
        return None
    slot = min(free, key=lambda s: s.last_used)
    batcher._forget(slot, 0)
    slot.lora = ()  # scored with the base weights
    batcher.model.adapters.use(batcher.ctx, ())
    if not batcher._room(slot, window):
        return None
    out: list[float] = []
    n_vocab = batcher.model.n_vocab
    for start in range(0, len(tokens), window):
        chunk = tokens[start:start + window]
        if len(chunk) < 2:
            continue
        b = batcher.batch
        b.n_tokens = 0
        batcher._add(slot, chunk, True, prompt=True)
        for i in range(len(chunk)):
            b.logits[i] = 1
        rc = batcher.lib.llama_decode(batcher.ctx, b)
        batcher._added.clear()
        if rc != 0:
            batcher._forget(slot, 0)
            raise InfernoError(f"llama_decode failed ({rc}) while scoring")
        ptr = batcher.lib.llama_get_logits(batcher.ctx)
        logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                       shape=(len(chunk), n_vocab)).astype(np.float64)
        batcher._forget(slot, 0)
        m = logits.max(axis=1, keepdims=True)
        logz = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
        picked = logits[np.arange(len(chunk) - 1), chunk[1:]] - logz[:-1]
        out += [float(x) for x in picked]
    return out
