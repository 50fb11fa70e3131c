"""The batcher's slots (one llama.cpp sequence id each) and where a new prompt's cached prefix comes from.

A prompt's prefix may already sit in the KV cache: in the slot it lands in (the same conversation's last turn),
in another slot (a running request or a finished one's kept cells with the same system prompt), or it is being
evaluated right now by a running request that arrived a moment earlier. `plan` picks, for a waiting prompt, the
free slot it takes, the slot whose cells are copied into it (llama_memory_seq_cp) and how many tokens need no
evaluation; or says to wait while a running prompt evaluates a longer shared prefix, so that concurrent
requests with one preamble evaluate it once. The slots are few (--parallel), so a scan of their token lists
is the index: a prefix match is one comparison per slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inferno.engine.lora import LoraKey
    from inferno.engine.promptcache import Entry, PromptCache
    from inferno.engine.sequence import Sequence

SIMILARITY = 0.1  # llama-server's --slot-prompt-similarity default
MIN_COPY = 16  # a copy from another slot pays when it saves at least this many tokens of evaluation
MIN_WAIT = 64  # wait for a running prompt's evaluation when it will give this many more cached tokens


class Slot:
    __slots__ = ("admitted", "cache", "draft", "exact", "id", "images", "last_used", "lora", "next_token",
                 "pending", "seq")

    def __init__(self, sid: int) -> None:
        self.id = sid
        self.cache: list[int] = []  # tokens whose KV cells hold positions 0..len-1 of this sequence id
        # the first `exact` of them were evaluated as a cold evaluation of a prompt starting with them would: in
        # whole prompt chunks (or up to an image). Only those are reused with a stream per slot; the cells of a
        # prompt's last, shorter chunk and of generated tokens (one at a time) hold other roundings.
        self.exact = 0
        self.seq: Sequence | None = None
        self.pending: list[int] = []  # prompt tokens still to evaluate
        self.next_token: int | None = None  # sampled, to be decoded in the next step
        self.draft: list[int] = []  # guessed tokens after next_token, decoded with it to be verified
        self.last_used = 0.0
        self.lora: LoraKey = ()  # the LoRA adapter set its cached cells were computed with
        self.admitted = 0  # admission order: prompts are evaluated first come, first served
        # images in the cache as (start index, tokens, positions): with M-RoPE an image takes fewer positions
        # than tokens, so a token's position is its index less what the images before it saved
        self.images: list[tuple[int, int, int]] = []

    def pos(self, index: int) -> int:
        """The position of the token at index (at an image boundary or after the images)."""
        return index + sum(n_pos - n_tok for start, n_tok, n_pos in self.images if start + n_tok <= index)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:  # the common case (a conversation's next turn) in one C-level comparison
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]: bisect on slice equality, C-speed per probe
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass
class Plan:
    slot: Slot  # the free slot the prompt takes
    source: Slot | None  # the slot whose first `reuse` tokens are copied into it (None: its own cells)
    reuse: int  # prompt tokens already in the KV cache
    restore: Entry | None = None  # the prompt cache's entry copied into the slot first (then source is None)


def plan(slots: list[Slot], seq: Sequence, align: int = 1, cache: PromptCache | None = None) -> Plan | None:
    """Where a waiting prompt goes; None while a running prompt evaluates a longer shared prefix (wait for it).

    `align`: the prompt chunk size when the reused prefix must end where a cold evaluation's chunk ends (chunks
    start at 0 and after each image): the rest of the prompt then goes in the same chunks as without the cache,
    and the logits are the same numbers (a tail chunk of another length takes other kernel paths: a cached
    "Say hello" answered otherwise than a cold one). 1: any prefix (the unified cache, which is not invariant).
    `cache`: the prompt cache in RAM, used when one of its entries holds more of the prompt than any slot.
    """
    prompt = seq.prompt
    free = [s for s in slots if s.seq is None]
    assert free
    # llama-server's slot similarity: the slot holding a conversation this prompt continues (its whole cache is
    # a prefix of the prompt, or at least a tenth of the prompt matches it); else the least recently used one,
    # so a short common start (a chat template's first tokens) never overwrites another conversation's cache.
    # cells computed with another adapter set are no prefix of this prompt's
    similar = {s.id: common_prefix(s.cache, prompt) if s.lora == seq.lora else 0 for s in slots}
    own = max(free, key=lambda s: similar[s.id])
    if not (similar[own.id] == len(own.cache) > 0 or similar[own.id] >= SIMILARITY * len(prompt)):
        own = min(free, key=lambda s: s.last_used)
    matches = {s.id: min(similar[s.id], s.exact) if align > 1 else similar[s.id] for s in slots}
    best = max(slots, key=lambda s: matches[s.id])
    reuse, source = matches[own.id], None
    if matches[best.id] >= reuse + MIN_COPY:
        reuse, source = matches[best.id], best
    # a running prompt that will hold more of this one once evaluated: wait for it rather than evaluate it twice
    ahead = max((common_prefix(s.cache + s.pending, prompt) for s in slots
                 if s.seq is not None and s.pending and s.lora == seq.lora),
                default=0)
    if ahead >= reuse + MIN_WAIT:
        return None
    reuse = cut(seq, reuse, align)
    if source is not None and reuse < MIN_COPY:
        source = None
    found = cache.find(prompt) if cache is not None and seq.images is None and not seq.lora else None
    if found is not None and (n := cut(seq, found[1], align)) >= reuse + MIN_COPY:
        return Plan(own, None, n, found[0])
    return Plan(own, source, reuse)


def cut(seq: Sequence, reuse: int, align: int) -> int:
    """A cached prefix of `reuse` tokens cut to where the prompt's evaluation may start (see plan)."""
    if reuse >= len(seq.prompt):  # all cached: evaluate the last token again for its logits
        reuse = len(seq.prompt) - 1
    if seq.images is not None:  # a cached prefix ends before an image, never inside one
        reuse = seq.images.align(reuse)
    spans = seq.images.spans if seq.images is not None else {}
    if reuse not in spans:  # an image's start is a chunk's end in a cold evaluation too
        segment = max((start + n for start, (_, n, _) in spans.items() if start + n <= reuse), default=0)
        reuse -= (reuse - segment) % max(1, align)  # segment: where the text the prefix ends in began
    return reuse
