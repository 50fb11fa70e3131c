"""Draft models for speculative decoding: a small model of the same vocabulary proposes the next tokens greedily.

It loads in the target's runner, with its own llama_model and a llama_context of one sequence per slot (a KV
stream each). Before the target's decode of a step, every generating slot's draft context is brought in step with
the slot's history (cells past the longest common prefix are removed with llama_memory_seq_rm, the rest of the
history decoded), then the draft tokens are made one position at a time, all slots' tokens of one position in one
llama_decode. The draft goes to the target after the slot's next token and `inferno.engine.speculate.verify`
accepts it unchanged: the target still samples every token, so the answer does not depend on the draft.

Written here rather than taken from llama.cpp: common_speculative_gen_draft lives in libcommon, which
llama-cpp-python neither builds into libllama nor binds. The compatibility check follows
common_speculative_are_compatible (common/speculative.cpp) using libllama's vocab functions.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inferno.engine.slots import common_prefix
from inferno.errors import ModelLoadError

if TYPE_CHECKING:
    from inferno.engine.model import Model
    from inferno.engine.slots import Slot

N_DRAFT = 8  # draft tokens per step at most: each costs a decode of the draft model
VOCAB_SLACK = 128  # llama.cpp's SPEC_VOCAB_MAX_SIZE_DIFFERENCE
VOCAB_CHECK_START = 5  # SPEC_VOCAB_CHECK_START_TOKEN_ID


def incompatible(lib: Any, target: Any, draft: Any) -> str | None:
    """Why two vocabularies cannot share drafts (common_speculative_are_compatible's checks), or None."""
    if lib.llama_vocab_type(target) != lib.llama_vocab_type(draft):
        return "vocabulary types differ"
    for what in ("bos", "eos"):
        t, d = getattr(lib, f"llama_vocab_{what}")(target), getattr(lib, f"llama_vocab_{what}")(draft)
        ta, da = getattr(lib, f"llama_vocab_get_add_{what}")(target), getattr(lib, f"llama_vocab_get_add_{what}")(draft)
        if t != d or bool(ta) != bool(da):
            return f"{what.upper()} tokens differ (id {t} vs {d}, added {bool(ta)} vs {bool(da)})"
    nt, nd = lib.llama_vocab_n_tokens(target), lib.llama_vocab_n_tokens(draft)
    if abs(nt - nd) > VOCAB_SLACK:
        return f"vocabulary sizes differ by more than {VOCAB_SLACK} ({nt} vs {nd})"
    for i in range(VOCAB_CHECK_START, min(nt, nd)):
        a, b = lib.llama_vocab_get_text(target, i), lib.llama_vocab_get_text(draft, i)
        if a != b:
            return f"token {i} differs ({a!r} vs {b!r})"
    return None


class DraftModel:
    """A draft model's weights and context, one sequence per slot of the target's batcher."""

    def __init__(self, target: Model, path: str, n_seq: int, n_ctx: int) -> None:
        from llama_cpp import _internals

        lib = self.lib = target.lib
        file = Path(path)
        if not file.is_file():
            raise ModelLoadError(f"draft model for {target.name} not found: {path}")
        mp = lib.llama_model_default_params()
        mp.n_gpu_layers = -1
        try:
            self._model = _internals.LlamaModel(path_model=str(file), params=mp, verbose=False)
        except Exception as e:
            raise ModelLoadError(f"cannot load the draft model {file.name} for {target.name}: {e}") from e
        self.vocab = self._model.vocab
        why = incompatible(lib, target.vocab, self.vocab)
        if why is not None:
            self._model.close()
            raise ModelLoadError(f"draft model {file.name} cannot draft for {target.name} ({target.path.name}): "
                                 f"{why}")
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        self.n_ctx, self.n_batch = n_ctx, min(512, n_ctx)
        self.chunk = min(target.prompt_chunk, self.n_batch)  # prompts cut as the target cuts them: the same numbers
        p = lib.llama_context_default_params()
        p.n_ctx, p.n_batch, p.n_ubatch, p.n_seq_max = n_ctx * n_seq, self.n_batch, self.n_batch, n_seq
        p.n_threads = p.n_threads_batch = target.threads
        p.kv_unified, p.no_perf = False, True
        # the target's attention kernel: the draft then rounds as the target would (a model drafting for itself
        # is then right every time)
        p.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if target.flash() == "on" else \
            lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = lib.llama_init_from_model(self._model.model, p)
        if not self.ctx:
            self._model.close()
            raise ModelLoadError(f"cannot create a context for the draft model {file.name}")
        self.mem = lib.llama_get_memory(self.ctx)
        self.batch = lib.llama_batch_init(self.n_batch, 0, 1)
        self.cache: list[list[int]] = [[] for _ in range(n_seq)]  # tokens in each sequence's draft cells
        self.drafts: dict[int, list[int]] = {}  # this step's draft per slot id

    def close(self) -> None:
        if self.ctx is not None:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None
            self._model.close()

    def _sync(self, sid: int, history: list[int]) -> bool:
        """Bring sequence sid's cells to history[:-1] and decode history's last token with logits... in chunks.
        False when the history has images or does not fit."""
        if any(t < 0 for t in history) or len(history) + N_DRAFT >= self.n_ctx:
            return False
        cache = self.cache[sid]
        common = common_prefix(cache, history[:-1])
        if len(cache) > common:
            self.lib.llama_memory_seq_rm(self.mem, sid, common, -1)
            del cache[common:]
        rest = history[common:-1]
        for i in range(0, len(rest), self.chunk):
            self._decode([(sid, t) for t in rest[i:i + self.chunk]], logits=False)
        return True

    def _decode(self, rows: list[tuple[int, int]], *, logits: bool) -> bool:
        b = self.batch
        for j, (sid, tok) in enumerate(rows):
            b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = tok, len(self.cache[sid]), 1, int(logits)
            b.seq_id[j][0] = sid
            self.cache[sid].append(tok)
        b.n_tokens = len(rows)
        if self.lib.llama_decode(self.ctx, b) != 0:
            for sid in {s for s, _ in rows}:  # start that sequence afresh next time
                self.lib.llama_memory_seq_rm(self.mem, sid, -1, -1)
                self.cache[sid] = []
            return False
        return True

    def _argmax(self, row: int) -> int:
        import numpy as np

        ptr = self.lib.llama_get_logits_ith(self.ctx, row)
        return int(np.argmax(np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                                   shape=(self.n_vocab,))))

    def prepare(self, slots: list[Slot]) -> None:
        """Draft for every generating slot that drafts: up to N_DRAFT greedy tokens each, after its next token,
        one decode of the draft context per draft position."""
        self.drafts = {}
        live: list[tuple[int, int]] = []  # (slot id, its last token) still drafting
        for slot in slots:
            seq = slot.seq
            if seq is None or seq.drafter is None or slot.next_token is None or seq.drafter.n_max == 0:
                continue
            history = seq.prompt + seq.generated
            if self._sync(slot.id, history):
                live.append((slot.id, history[-1]))
                self.drafts[slot.id] = []
        want = max((s.seq.drafter.n_max for s in slots if s.seq and s.seq.drafter), default=0)
        for _ in range(min(N_DRAFT, want)):
            if not live or len(live) > self.n_batch or not self._decode(live, logits=True):
                break
            live = [(sid, self._argmax(j)) for j, (sid, _) in enumerate(live)]
            for sid, tok in live:
                self.drafts[sid].append(tok)

    def draft(self, slot: Slot, room: int) -> list[int]:
        return self.drafts.pop(slot.id, [])[:room]
