"""llama-server's context shift for a sequence whose KV stream (or the unified cache) is full."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inferno.engine.batcher import Batcher
    from inferno.engine.slots import Slot


def shift_context(b: Batcher, slot: Slot) -> bool:
    """For a sequence that asked for it (`shift`): keep its first n_keep cells (the system prompt and tools),
    discard half of the rest, move the newer half down with llama.cpp's own seq_rm / seq_add (RoPE re-applied to the
    moved keys), until one more cell fits. False when it cannot: the model's memory cannot shift (M-RoPE,
    recurrent), images are cached, or nothing is left to discard. Only the batcher's decode thread calls it."""
    seq = slot.seq
    if seq is None or not seq.req.shift or not b.can_shift or slot.images:
        return False
    while not b._room(slot, 1):
        keep = min(seq.n_keep, len(slot.cache))
        discard = (len(slot.cache) - keep) // 2
        if discard <= 0:
            return False
        b.lib.llama_memory_seq_rm(b.mem, slot.id, keep, keep + discard)
        b.lib.llama_memory_seq_add(b.mem, slot.id, keep + discard, len(slot.cache), -discard)
        del slot.cache[keep:keep + discard]
        slot.exact = min(slot.exact, keep)
        seq.shifted += discard
    return True
