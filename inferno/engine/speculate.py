"""Speculative decoding with n-gram (prompt-lookup) drafts, verified in the batcher's own decode.

A generating sequence's last tokens are looked up in its prompt and what it generated so far; the tokens that
followed their latest earlier occurrence are its draft. The batcher puts the draft after the sequence's next
token in the same llama_decode as every other sequence's token, with logits on for each; then `verify` samples
the rows in order with the sequence's own sampler chain and keeps going while the sampled token is the drafted
one (llama.cpp's common_sampler_sample_and_accept_n). Every token is still sampled by the target model from the
logits of exactly the tokens before it, one sampler draw per token in the same order as without a draft: greedy
answers are the same tokens, a sampled answer keeps the target distribution (and its seed's draws), and
grammars, stop strings, logprobs and max_tokens see the tokens one by one through Sequence.accept. The cells of
the rejected draft tokens are removed from the KV cache (llama_memory_seq_rm).

Written here rather than taken from llama.cpp: its drafting code (common/speculative.cpp, common/ngram-cache.cpp)
lives in libcommon, which llama-cpp-python 0.3.36 neither builds into libllama nor binds; libllama only has the
memory and sampler calls used here. llama-cpp-python's own LlamaPromptLookupDecoding (llama_speculative.py)
rescans the whole history with numpy on every call and takes the oldest match; the index here is kept up to date
token by token and gives the latest one (what a repeated passage continues with).

Adaptive, so that a text that does not repeat costs next to nothing: the draft length follows the share of
drafted tokens the model agreed with lately (see COST), and a sequence whose drafts do not pay stops drafting
for a while (longer each time) and then tries again.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inferno.engine.batcher import Batcher
    from inferno.engine.draftmodel import DraftModel
    from inferno.engine.model import Model
    from inferno.engine.slots import Slot
    from inferno.engine.types import GenerateRequest

N_MAX = 16  # llama-server's speculative.n_max default
NGRAMS = (4, 3, 2)  # lookup keys, longest first: a longer match predicts better
# The draft length follows the acceptance: with p the chance that a drafted token is the model's (an estimate
# from the sequence's recent drafts) and COST what verifying one more row costs in decodes of a single token,
# the i-th draft token pays while p**i > COST, so the draft is log(COST) / log(p) long; below p = COST none is.
# Two AMD EPYC cores with SmolLM2: a decode of 1 token took 9.4 ms, of 17 tokens 97 ms, 5.5 ms a row (0.58).
COST = 0.5
PRIOR = (3.0, 1.0)  # drafted tokens accepted and rejected before any evidence: p = 0.75, a first draft of 2
DECAY = 0.8  # weight of the evidence of each earlier draft (the text changes: a copy starts or ends)
PAUSE = 16  # steps without drafts once p falls below COST; each pause after doubles, up to PAUSE_MAX
PAUSE_MAX = 512


def draft_model(model: Model, n_seq: int, n_ctx: int) -> DraftModel | None:
    """The draft model the batcher drafts with: --draft under `draft` or `auto`; None for n-gram drafts."""
    if model.settings.speculative == "draft" and not model.settings.draft:
        from inferno.errors import ModelLoadError

        raise ModelLoadError("speculative decoding `draft` needs a draft model (--draft / INFERNO_DRAFT)")
    if not model.settings.draft or model.settings.speculative not in ("auto", "draft"):
        return None
    if model.settings.speculative == "auto" and _draft_too_big(model):
        return None  # its drafts would cost about what the target's own decodes do: n-gram drafts pay better
    import warnings

    from inferno.engine.draftmodel import DraftModel
    from inferno.errors import ModelLoadError

    try:
        return DraftModel(model, model.settings.draft, n_seq, n_ctx)
    except ModelLoadError as e:
        if model.settings.speculative == "draft":
            raise
        # auto: --draft serves every model, and one whose vocabulary the draft lacks drafts from its context
        warnings.warn(f"{e}; {model.name} drafts from its context (n-gram) instead", UserWarning, stacklevel=1)
        return None


AUTO_MAX_SHARE = 0.5  # under `auto`, a draft model at most this share of the target's file size drafts


def _draft_too_big(model: Model) -> bool:
    from pathlib import Path

    draft = Path(model.settings.draft or "")
    try:
        return draft.stat().st_size > AUTO_MAX_SHARE * model.path.stat().st_size
    except OSError:
        return False  # a missing file: DraftModel says so


def drafter_for(model: Model, req: GenerateRequest) -> Drafter | None:
    """A request's drafter; None when the server (INFERNO_SPECULATIVE=off) or the request turned drafts off, and
    under `auto` when the model's contexts run without flash attention.

    Why flash attention: its CPU kernel computes each query row on its own, so a row of a draft gives the same
    numbers as that token decoded alone and greedy answers keep every token. Without it, the attention products
    of two or more tokens of one sequence take other kernels than one token's (most likely llamafile's sgemm,
    which ggml uses only for two or more columns, instead of its row dot products) and round differently: on
    SmolLM2 Q4_1 the log-probabilities moved by up to 0.07 within 40 tokens and the greedy text changed a few
    sentences in. `ngram` drafts there too, for speed at that price (as --kv-unified does)."""
    spec, mode = req.speculative, model.settings.speculative
    if mode == "off" or spec.enabled is False or spec.n_max == 0 or (mode == "auto" and model.flash() != "on"):
        return None
    n_max = spec.n_max if spec.n_max is not None else N_MAX
    return Drafter(n_max, min(spec.n_min or 0, n_max))


class Drafter:
    """One sequence's n-gram index and adaptive draft length."""

    def __init__(self, n_max: int = N_MAX, n_min: int = 0) -> None:
        self.n_max, self.n_min = n_max, n_min
        self.good, self.bad = PRIOR  # decayed counts of drafted tokens accepted / rejected
        self.k = self._length()
        self.index: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in NGRAMS}
        self.indexed = 0  # history positions entered in the index
        self.pause = 0  # steps left without drafting
        self.pauses = 0
        self.drafted = 0  # draft tokens proposed (llama-server's draft_n)
        self.accepted = 0  # of them, accepted (draft_n_accepted)

    def propose(self, history: list[int], limit: int) -> list[int]:
        """Up to min(k, limit) tokens that followed the latest earlier occurrence of history's last n-gram."""
        if self.pause > 0:
            self.pause -= 1
            return []
        # index every n-gram that ends before the last token: the last n-gram itself must be found earlier
        for end in range(max(self.indexed, 1), len(history)):
            for n, table in self.index.items():
                if end >= n:
                    table[tuple(history[end - n:end])] = end
        self.indexed = max(self.indexed, len(history))
        want = min(self.k, self.n_max, limit)
        if want <= 0:
            return []
        for n, table in self.index.items():
            at = table.get(tuple(history[-n:])) if len(history) > n else None
            if at is None:
                continue
            draft = history[at:at + want]
            if any(t < 0 for t in draft):  # an image's placeholders are not tokens
                draft = draft[:next(i for i, t in enumerate(draft) if t < 0)]
            if draft and len(draft) >= self.n_min:
                return draft
            return []
        return []

    def update(self, drafted: int, accepted: int) -> None:
        """What a draft gave: the next draft's length, or a pause when drafts do not pay."""
        if drafted == 0:
            return
        self.drafted += drafted
        self.accepted += accepted
        self.good = self.good * DECAY + accepted
        self.bad = self.bad * DECAY + (accepted < drafted)  # the run ended at one rejected token
        self.k = self._length()
        if accepted == drafted:
            self.pauses = 0
        if self.k == 0:  # pause, then try again afresh
            self.pause = min(PAUSE << self.pauses, PAUSE_MAX)
            self.pauses += 1
            self.good, self.bad = PRIOR
            self.k = self._length()

    def _length(self) -> int:
        p = self.good / (self.good + self.bad)
        if p <= COST:
            return 0
        return self.n_max if p >= 1 else max(0, min(self.n_max, int(math.log(COST) / math.log(p))))


def draft_for(batcher: Batcher, slot: Slot, others: int) -> list[int]:
    """The draft to verify after the slot's next token: room permitting in its KV stream (or the unified cache,
    without evicting anyone's cached prefix), in the batch (one row kept for each of `others` sequences still to
    add), and within the tokens the sequence may still generate."""
    seq = slot.seq
    if seq is None or seq.drafter is None:
        return []
    if batcher.unified:
        room = batcher.n_ctx - batcher._reserved() - 1
    else:
        room = batcher.n_ctx - len(slot.cache) - len(slot.pending) - 1
    room = min(room, batcher.n_batch - batcher.batch.n_tokens - 1 - others)
    limit = seq.max_tokens if seq.max_tokens is not None else batcher.model.n_ctx
    room = min(room, limit - len(seq.generated) - 1)  # the row after the last draft token samples one more
    if room <= 0:
        return []
    if batcher.drafts is not None:
        return batcher.drafts.draft(slot, room)
    return seq.drafter.propose(seq.prompt + seq.generated, room)


def verify(batcher: Batcher, slot: Slot, row: int, draft: list[int]) -> int:
    """Sample the slot's rows from `row` (its next token's) on while they agree with the draft; the tokens
    taken. The cells after the last token whose logits were used are removed."""
    seq = slot.seq
    assert seq is not None
    base = len(slot.cache) - len(draft)  # cells kept: up to the next token, plus the accepted draft tokens
    used = 0
    for r in range(len(draft) + 1):
        tok, lp = seq.sample(batcher.ctx, row + r)
        reason = seq.accept(tok, lp)
        used = r
        if reason is not None:
            _settle(batcher, slot, base + r, len(draft), r + (r < len(draft) and tok == draft[r]))
            batcher._release(slot, reason)
            return r + 1
        if r == len(draft) or tok != draft[r]:
            slot.next_token = tok
            break
    _settle(batcher, slot, base + used, len(draft), used)
    return used + 1


def _settle(batcher: Batcher, slot: Slot, keep: int, drafted: int, accepted: int) -> None:
    if drafted:
        batcher._forget(slot, keep)
        if slot.seq is not None and slot.seq.drafter is not None:
            slot.seq.drafter.update(drafted, accepted)
