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

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inferno.engine.lora import LoraKey
    from inferno.engine.promptcache import Entry, PromptCache
    from inferno.engine.sequence import Sequence

MIN_COPY = 16  # a copy from another slot pays when it saves at least this many tokens of evaluation
MIN_WAIT = 64  # wait for a running prompt's evaluation when it will give this many more cached tokens
MIX_MIN = 4  # prompt pieces this long or longer share a decode (below 4 columns some CPU kernels take other paths)
MIN_SEGMENT = 16  # a turn's end this close after the last cut is no cut: so small a chunk costs more than it saves


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

    `align` > 1: the reused prefix must end where a cold evaluation's chunk ends (seq.chunk_ends): the rest of the
    prompt then goes in the same chunks as without the cache, and the logits are the same numbers (a tail chunk of
    another length takes other kernel paths: a cached "Say hello" answered otherwise than a cold one). 1: any
    prefix (the unified cache, which is not invariant).
    `cache`: the prompt cache in RAM, used when one of its entries holds more of the prompt than any slot.
    """
    prompt = seq.prompt
    free = [s for s in slots if s.seq is None]
    assert free
    # the slot holding a conversation this prompt continues (its whole cache is a prefix of the prompt); else the
    # least recently used one, and what another slot shares with the prompt (a system prompt, a conversation's
    # earlier turns) is copied from it: a prompt that shares only part of a slot's cache (llama-server's slot
    # similarity would take that slot) never overwrites the rest, which another request may continue.
    # cells computed with another adapter set are no prefix of this prompt's
    similar = {s.id: common_prefix(s.cache, prompt) if s.lora == seq.lora else 0 for s in slots}
    own = max(free, key=lambda s: similar[s.id])
    if not similar[own.id] == len(own.cache) > 0:
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


def chunk_ends(tokens: list[int], chunk: int, turn_ends: set[int], images: dict[int, int]) -> list[int]:
    """Where a cold evaluation of these tokens ends its prompt chunks, with a KV stream per slot: every `chunk`
    tokens; before and after each image (`images`: start → its number of placeholder tokens); and after each
    token of `turn_ends` (the end-of-turn tokens a chat template closes a message with) past the first chunk and
    at least MIN_SEGMENT tokens after the last cut (a short prompt stays one decode: an extra one would cost more
    than the few tokens it could save). After a cut the count starts again. Each end depends only on the tokens
    before it, so two prompts sharing a prefix are cut alike within it: the cells of a cached prefix that ends
    at a cut are the numbers a cold evaluation computes (see plan), and a prompt that repeats a long system
    message or a conversation's earlier turns reuses all of them, not only their whole chunks."""
    marks = [(i + 1, 0) for i, t in enumerate(tokens) if t in turn_ends]  # (position, the image's length or 0)
    marks = sorted(marks + [(start, n) for start, n in images.items()])
    out: list[int] = []
    last = 0
    for at, image in marks:
        while at - last > chunk:
            last += chunk
            out.append(last)
        if image:
            if at > last:
                out.append(at)
            out.append(at + image)
            last = at + image
        elif at >= chunk and at - last >= MIN_SEGMENT:
            out.append(at)
            last = at
    while len(tokens) - last >= chunk:
        last += chunk
        out.append(last)
    return out

def pieces(chunks: dict[int, int], n_ubatch: int) -> dict[int, list[int]]:
    """How llama.cpp's split_equal (a KV stream per sequence) cuts a batch holding these chunks (sequence id →
    tokens, laid out in id order) into micro-batches: the piece lengths each sequence's chunk is computed in. A
    micro-batch takes sequences of consecutive ids only, the same number of tokens from each."""
    left = dict(chunks)
    out: dict[int, list[int]] = {sid: [] for sid in chunks}
    while any(left.values()):
        run: list[int] = []
        for sid in sorted(left):
            if left[sid] and (not run or sid == run[-1] + 1):
                run.append(sid)
        take = 0
        while all(left[sid] > take for sid in run):
            take += 1
            if (take + 1) * len(run) > n_ubatch:
                break
        for sid in run:
            out[sid].append(take)
            left[sid] -= take
    return out


def until_image(pending: list[int], n: int) -> int:
    """How many of the first n pending prompt tokens come before the next image (placeholder ids are negative)."""
    return next((i for i, t in enumerate(pending[:n]) if t < 0), min(n, len(pending)))


def next_chunk(slot: Slot, chunk: int) -> int:
    """How many prompt tokens the slot's next chunk holds (up to an image, a chunk end, the prompt's end)."""
    start = len(slot.cache)
    upto = until_image(slot.pending, chunk)
    ends = slot.seq.chunk_ends if slot.seq is not None else []
    k = bisect.bisect_right(ends, start)
    return min(upto, ends[k] - start) if k < len(ends) else upto


def join(group: dict[int, int], sid: int, n: int, n_ubatch: int) -> dict[int, int]:
    """The group (slot id → prompt tokens in this decode) with as many of slot sid's next n as keep every piece of
    llama.cpp's micro-batching (see pieces) and the rest of that chunk at MIX_MIN tokens or more."""
    for take in range(min(n, n_ubatch - sum(group.values())), MIX_MIN - 1, -1):
        if 0 < n - take < MIX_MIN:  # the chunk's rest would be a short piece
            continue
        trial = dict(sorted({**group, sid: take}.items()))
        if all(min(p, default=MIX_MIN) >= MIX_MIN for p in pieces(trial, n_ubatch).values()):
            return trial
    return group


def cut(seq: Sequence, reuse: int, align: int) -> int:
    """A cached prefix of `reuse` tokens cut to where the prompt's evaluation may start (see plan): with a stream
    per slot (align > 1) the last of its chunk ends (chunk_ends) within it; else anywhere outside an image."""
    if reuse >= len(seq.prompt):  # all cached: evaluate the last token again for its logits
        reuse = len(seq.prompt) - 1
    if seq.images is not None:  # a cached prefix ends before an image, never inside one
        reuse = seq.images.align(reuse)
    if align > 1:
        ends = seq.chunk_ends
        k = bisect.bisect_right(ends, reuse)
        reuse = ends[k - 1] if k else 0
    return reuse
