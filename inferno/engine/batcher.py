"""Continuous batching: N slots (sequences) in one llama.cpp context, decoded together step by step.

By default each slot has a KV stream of its own (llama-server's default, kv_unified false): n_ctx cells per slot,
so every request gets the whole context it asks for, and its attention runs over its own cells only, laid out as
they would be alone. With that, and with each prompt cut into chunks the same way as alone (at whole chunks and at
its messages' ends: inferno.engine.slots.chunk_ends), greedy output does not depend on what else runs. Each step
decodes one token of every generating sequence together (one row per sequence: the same numbers as alone), then
the next chunk of the earliest admitted prompt still evaluating (with mix_prompts and without flash attention, of
several prompts together, where llama.cpp's CPU kernels give each row the same numbers beside other sequences'
rows), so a long prompt delays the others by a chunk, not by the whole prompt; every sequence samples its own
logits row with its own sampler.
A generating sequence may add a draft after its token (inferno.engine.speculate), verified from the rows of the
same decode; `auto` drafts only with flash attention, whose rows are the numbers of one token at a time.

With --kv-unified the cache is one pool of n_ctx cells shared by every slot: one sequence may use all of it, and
prompt chunks ride in the same batch as the generating tokens; but attention then spans the other sequences'
masked cells and rounds differently, so greedy output varies with the load. There, idle slots' cells are
reclaimed (least recently used first) when a running request needs room, admission reserves room for a whole
prompt, and a sequence that finds the cache (or its own stream) full shifts its context when it asked for that
(Ollama's `shift`), else it ends with reason "length".

A finished slot keeps its tokens as a prefix cache. A new prompt whose prefix is in any slot (inferno.engine.slots)
gets those cells copied into its slot (llama_memory_seq_cp) and evaluates only the rest; one that shares a prefix
with a prompt being evaluated waits for that evaluation. Cells a new prompt takes a slot from are kept in RAM and
on disk first (inferno.engine.promptcache) for a prompt that continues them, when the new prompt loses most of
them. With a stream per slot only whole chunks evaluated as a cold run would are reused, so the answer is the same
as cold.
"""
from __future__ import annotations

import bisect
import collections
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from inferno.engine.ctxshift import shift_context
from inferno.engine.diskcache import disk_cache
from inferno.engine.promptcache import MIN_KEEP, PromptCache
from inferno.engine.sequence import Sequence
from inferno.engine.slots import MIX_MIN, Slot, join, next_chunk, plan, until_image
from inferno.engine.speculate import draft_for, draft_model, verify
from inferno.engine.types import FinishReason
from inferno.errors import InfernoError

if TYPE_CHECKING:
    from inferno.engine.lora import LoraKey
    from inferno.engine.model import Model


RATE_WINDOW = 5.0  # seconds of decode steps behind tokens_per_second


class Batcher:
    """The generation context of one model and its slots. Only the model's worker thread calls it."""

    def __init__(self, model: Model, n_parallel: int) -> None:
        self.model, self.lib = model, model.lib
        self.n_ctx, self.n_batch = model.n_ctx, model.n_batch  # n_ctx: per slot (all slots' with --kv-unified)
        self.unified = model.settings.kv_unified
        # prompt tokens per llama_decode: with a stream per slot, cached prefixes are cut to whole chunks (plan)
        self.chunk = self.n_batch if self.unified else model.prompt_chunk
        # several prompts' chunks in one decode (each cut as alone), when asked (INFERNO_MIX_PROMPTS): the same
        # numbers as each alone on the CPU kernels without flash attention (measured bit for bit); llama.cpp's
        # flash attention rounds a row differently beside other sequences' rows, so there each chunk goes alone.
        # Off by default: on a CPU, where prompt evaluation is compute-bound from ~16 tokens a decode, sharing
        # decodes delays the first prompts' first tokens more than it adds throughput (benchmarks/serve_vs_direct)
        self.mix = model.settings.mix_prompts and model.flash() == "off"
        self.ctx = model.new_context(n_ctx=self.n_ctx, n_seq=n_parallel, n_batch=self.n_batch, unified=self.unified)
        self.mem = self.lib.llama_get_memory(self.ctx)
        self.can_shift = bool(self.lib.llama_memory_can_shift(self.mem))
        self.batch = self.lib.llama_batch_init(self.n_batch, 0, 1)
        self.slots = [Slot(i) for i in range(n_parallel)]
        # cells of slots that other prompts take, kept in RAM (and on disk, across restarts)
        self.ram = PromptCache(self.lib, self.ctx, model.settings.cache_ram, exact=not self.unified,
                               disk=disk_cache(model, self.unified, self.n_ctx, self.chunk))
        self.waiting: collections.deque[tuple[Sequence, Callable[[], None]]] = collections.deque()
        self.rate: collections.deque[tuple[float, int]] = collections.deque()  # (time, tokens) of recent steps
        self._added: list[tuple[Slot, list[int], bool]] = []  # this step's additions, undone if decode fails
        self._admissions = 0
        self.broken = False  # a fatal decode error: the worker reloads the model before the next request
        self.drafts = draft_model(model, n_parallel, self.n_ctx)  # --draft (inferno.engine.draftmodel)

    def close(self) -> None:
        for s in self.slots:
            if s.seq is not None:
                s.seq.finish("cancelled")
                s.seq = None
        for seq, _ in self.waiting:
            seq.finish("cancelled")
        self.waiting.clear()
        if self.ctx is not None:
            self.ram.flush(self.slots)
            self.lib.llama_batch_free(self.batch)
            self.model.adapters.forget(self.ctx)
            self.lib.llama_free(self.ctx)
            self.ctx = None
        if self.drafts is not None:
            self.drafts.close()

    # state ----------------------------------------------------------------------------------------

    @property
    def in_use(self) -> int:
        return sum(s.seq is not None for s in self.slots)

    @property
    def busy(self) -> bool:
        return bool(self.waiting) or any(s.seq is not None for s in self.slots)

    def tokens_per_second(self) -> float:
        now = time.monotonic()
        while self.rate and self.rate[0][0] < now - RATE_WINDOW:
            self.rate.popleft()
        if not self.rate:
            return 0.0
        span = max(now - self.rate[0][0], 1e-3)
        return sum(n for _, n in self.rate) / span

    def enqueue(self, seq: Sequence, on_admit: Callable[[], None]) -> None:
        """Queue a sequence for a slot; on_admit runs when it gets one."""
        self.waiting.append((seq, on_admit))

    # room -----------------------------------------------------------------------------------------

    def _reserved(self) -> int:
        """Cells held or promised: every slot's cache (running or idle) plus the running prompts' rest."""
        return sum(len(s.cache) + len(s.pending) for s in self.slots)

    def _room(self, slot: Slot, need: int) -> bool:
        """Whether `need` more cells fit for the slot: in its own stream, or in the unified cache once idle slots'
        cells are freed (least recently used first)."""
        if not self.unified:
            return len(slot.cache) + len(slot.pending) + need <= self.n_ctx
        return self._make_room(need, keep=slot)

    def _make_room(self, need: int, keep: Slot | None = None) -> bool:
        idle = sorted((s for s in self.slots if s.seq is None and s.cache and s is not keep),
                      key=lambda s: s.last_used)
        for s in idle:
            if self._reserved() + need <= self.n_ctx:
                break
            self.ram.keep(s)
            self._forget(s, 0)
        return self._reserved() + need <= self.n_ctx

    def _forget(self, slot: Slot, keep: int) -> None:
        """Drop the slot's cells from position `keep` on."""
        if len(slot.cache) > keep:
            self.lib.llama_memory_seq_rm(self.mem, slot.id, slot.pos(keep), -1)
            del slot.cache[keep:]
            slot.images = [x for x in slot.images if x[0] + x[1] <= keep]
        slot.exact = min(slot.exact, keep)

    def _copy(self, source: Slot, slot: Slot, n: int) -> None:
        """Make the slot hold the source's first n tokens. Between streams llama.cpp copies the whole stream's
        buffers at the next decode (then the rest is dropped); in the unified cache the cells become shared."""
        self.lib.llama_memory_seq_rm(self.mem, slot.id, -1, -1)
        if self.unified:
            self.lib.llama_memory_seq_cp(self.mem, source.id, slot.id, -1, source.pos(n))
        else:
            self.lib.llama_memory_seq_cp(self.mem, source.id, slot.id, -1, -1)
            self.lib.llama_memory_seq_rm(self.mem, slot.id, source.pos(n), -1)
        slot.cache, slot.exact = source.cache[:n], min(source.exact, n)
        slot.images = [x for x in source.images if x[0] + x[1] <= n]

    # admission ------------------------------------------------------------------------------------

    def _admit(self) -> None:
        i = 0
        while i < len(self.waiting) and any(s.seq is None for s in self.slots):
            seq, on_admit = self.waiting[i]
            if seq.is_cancelled():
                del self.waiting[i]
                on_admit()
                seq.finish("cancelled")
                continue
            p = plan(self.slots, seq, 1 if self.unified else self.chunk, self.ram)
            if p is None:  # its prefix is being evaluated by a running prompt: later ones may go first
                i += 1
                continue
            slot, reuse = p.slot, p.reuse
            # the slot's cells are copied out (to RAM and disk) before they go only when the prompt loses most of
            # them, as llama-server does (f_keep < 0.5): a prompt that continues most of a slot (a shared preamble
            # and a question of its own) leaves those cells in place, and copying a whole state out for the short
            # tail it drops costs more than that tail (benchmarks/prompt_cache.py's round 2)
            lost = len(slot.cache) - (0 if p.restore is not None or p.source is not None else reuse)
            if lost >= MIN_KEEP and 2 * lost > len(slot.cache):
                self.ram.keep(slot)
            if p.restore is not None and not self.ram.restore(p.restore, slot):
                reuse = 0
            elif p.source is not None:
                self._copy(p.source, slot, reuse)
            self._forget(slot, reuse)
            if not self._room(slot, len(seq.prompt) - reuse + 1):
                self._forget(slot, 0)
                if not self._room(slot, len(seq.prompt) + 1):
                    return  # running sequences hold the unified cache: wait (first come, first served)
                reuse = 0
            del self.waiting[i]
            on_admit()
            seq.cached = reuse
            self._admissions += 1
            slot.seq, slot.pending, slot.next_token = seq, seq.prompt[reuse:], None
            slot.admitted, slot.lora = self._admissions, seq.lora

    # one step -------------------------------------------------------------------------------------

    def step(self) -> None:
        """Admit, decode (the generating tokens, then one prompt chunk), sample. Returns at once when idle."""
        self._admit()
        for slot in self.slots:
            if slot.seq is not None and slot.seq.is_cancelled():
                self._release(slot, "cancelled")
        for slot in self.slots:  # images first, each decoded for its own sequence by mtmd
            if slot.seq is not None and slot.pending and slot.pending[0] < 0:
                self._image(slot)
        n = 0
        # one decode per LoRA adapter set among the running sequences (llama.cpp applies adapters per context):
        # every set every step, so each sequence gets a token per step whichever set it runs with; the set the
        # context has now goes first (a switch costs llama.cpp a graph reserve: n_sets - 1 of them per step)
        for key in self.model.adapters.order(self.ctx, [s.lora for s in self.slots if s.seq is not None]):
            if self.broken:
                break
            self.model.adapters.use(self.ctx, key)
            n += self._run(lambda key=key: self._fill_tokens(key))
        if not self.unified and not self.broken:
            n += self._run(self._fill_prompt)
        if n:
            now = time.monotonic()
            self.rate.append((now, n))
            while self.rate[0][0] < now - RATE_WINDOW:  # bounded: only the last seconds count
                self.rate.popleft()

    def _run(self, fill: Callable[[], list[tuple[Slot, int]]]) -> int:
        """Fill the batch, decode it, sample the rows that output logits; the number of tokens sampled."""
        outputs = fill()
        if self.batch.n_tokens == 0:
            return 0
        while True:
            rc = self.lib.llama_decode(self.ctx, self.batch)
            if rc == 0:
                break
            if rc != 1 or not self._shed(outputs, fill):  # 1: no KV slot found; anything else is fatal
                self.fail_all(InfernoError(f"llama_decode failed ({rc}) for {self.model.name}"))
                return 0
        self._added.clear()
        n = 0
        for slot, index in outputs:  # a slot's rows: its next token's, then its draft's (inferno.engine.speculate)
            draft, slot.draft = slot.draft, []
            n += verify(self, slot, index - len(draft), draft)
        return n

    def _fill_tokens(self, key: LoraKey = ()) -> list[tuple[Slot, int]]:
        """One token of every generating sequence with this adapter set (in slot order: llama.cpp splits a batch
        over streams by consecutive sequence ids), and with the unified cache prompt chunks of that set after
        them up to n_batch; the (slot, batch row) pairs that output logits."""
        self.batch.n_tokens = 0
        self._added.clear()
        outputs: list[tuple[Slot, int]] = []
        generating = [s for s in self.slots if s.seq is not None and s.next_token is not None and s.lora == key]
        if self.drafts is not None:
            self.drafts.prepare(generating)
        for i, slot in enumerate(generating):  # generating sequences never wait on prompts
            if not self._room(slot, 1) and not shift_context(self, slot):  # its stream (or the unified cache) is full
                self._release(slot, "length")
                continue
            tok, draft = slot.next_token, draft_for(self, slot, len(generating) - i - 1)
            assert tok is not None
            outputs.append((slot, self._add(slot, [tok, *draft], True, prompt=False, every=bool(draft))))
            slot.draft = draft
        if self.unified:
            for slot in sorted((s for s in self.slots if s.seq is not None and s.pending and s.lora == key),
                               key=lambda s: s.last_used):
                if not self._chunk(slot, self.n_batch - self.batch.n_tokens, outputs):
                    break
        return outputs

    def _fill_prompt(self) -> list[tuple[Slot, int]]:
        """The next chunk of the earliest admitted prompt still evaluating, cut where its cold evaluation cuts it;
        with `mix`, beside it as much of the other such prompts' next chunks (same adapter set) as llama.cpp's
        micro-batching keeps in pieces of MIX_MIN tokens or more (see pieces), leaving no shorter rest of a chunk:
        from 2 (x86) or 4 (Arm) tokens up the CPU kernels compute a row the same in a piece of any length
        (measured bit for bit), but not in a shorter piece, which takes other kernels."""
        self.batch.n_tokens = 0
        self._added.clear()
        outputs: list[tuple[Slot, int]] = []
        prompts = [s for s in self.slots if s.seq is not None and s.pending and s.pending[0] >= 0]
        if prompts:
            first = min(prompts, key=lambda s: s.admitted)
            self.model.adapters.use(self.ctx, first.lora)
            group = {first.id: next_chunk(first, self.chunk)}
            if self.mix and group[first.id] >= MIX_MIN:
                for s in prompts:  # in slot order, as the batch is laid out
                    if s is not first and s.lora == first.lora:
                        group = join(group, s.id, next_chunk(s, self.chunk), self.n_batch)
            for sid, n in sorted(group.items()):
                self._chunk(self.slots[sid], n, outputs)
        return outputs

    def _chunk(self, slot: Slot, room: int, outputs: list[tuple[Slot, int]]) -> bool:
        """Add up to `room` of the slot's prompt tokens (up to its next image, and with a stream per slot up to its
        next chunk end); False when there is no room."""
        if room <= 0:
            return False
        # unified: text up to the next image (decoded on its own); with a stream per slot, up to its next chunk end
        upto = until_image(slot.pending, room) if self.unified else min(room, next_chunk(slot, self.chunk))
        if upto == 0:
            return True
        start = len(slot.cache)
        chunk, last = slot.pending[:upto], len(slot.pending) <= upto
        slot.pending = slot.pending[len(chunk):]
        row = self._add(slot, chunk, last, prompt=True)
        ends = slot.seq.chunk_ends if slot.seq is not None and not self.unified else []
        k = bisect.bisect_left(ends, start + len(chunk))
        if k < len(ends) and ends[k] == start + len(chunk) and slot.exact == (ends[k - 1] if k else 0):
            slot.exact = ends[k]  # a whole chunk (maybe in pieces, see _fill_prompt) as cold: a reusable prefix
        if last:
            outputs.append((slot, row))
        return True

    def _add(self, slot: Slot, tokens: list[int], logits_last: bool, *, prompt: bool, every: bool = False) -> int:
        """Append tokens of one slot to the batch at its next positions (logits for the last one, or for every one);
        the row of the last one."""
        b, start, pos = self.batch, self.batch.n_tokens, slot.pos(len(slot.cache))
        for i, tok in enumerate(tokens):
            j = start + i
            b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = tok, pos + i, 1, int(every)
            b.seq_id[j][0] = slot.id
        b.logits[start + len(tokens) - 1] = 1 if logits_last else 0
        b.n_tokens = start + len(tokens)
        slot.cache.extend(tokens)  # provisional until the decode succeeds (see _shed)
        slot.next_token, slot.draft = None, []
        slot.last_used = time.monotonic()
        self._added.append((slot, tokens, prompt))
        return b.n_tokens - 1

    def _shed(self, outputs: list[tuple[Slot, int]], fill: Callable[[], list[tuple[Slot, int]]]) -> bool:
        """The decode found no room (a fragmented cache): undo the step, end the longest generating sequence
        (or, with none, the largest prompt) with "length", refill; False when nothing is left to try."""
        for slot, tokens, prompt in reversed(self._added):
            del slot.cache[len(slot.cache) - len(tokens):]
            slot.exact = min(slot.exact, len(slot.cache))
            if prompt:
                slot.pending = tokens + slot.pending
            else:
                slot.next_token = tokens[0]
        self._added.clear()
        running = [s for s in self.slots if s.seq is not None]
        generating = [s for s in running if s.next_token is not None]
        if generating:
            self._release(max(generating, key=lambda s: len(s.cache)), "length")
        elif running:
            self._release(max(running, key=lambda s: len(s.pending)), "length")
        else:
            return False
        outputs[:] = fill()
        return self.batch.n_tokens > 0

    def _image(self, slot: Slot) -> None:
        """Decode the image the slot's prompt has next, with mtmd's helper, into the slot's sequence."""
        seq = slot.seq
        assert seq is not None and seq.images is not None and self.model.projector is not None
        chunk, n, n_pos = seq.images.spans[len(slot.cache)]
        self.model.adapters.use(self.ctx, slot.lora)
        if self.model.projector.eval(self.ctx, chunk, slot.pos(len(slot.cache)), slot.id, self.n_batch):
            slot.images.append((len(slot.cache), n, n_pos))
            if slot.exact == len(slot.cache):
                slot.exact += n
            slot.cache.extend(slot.pending[:n])
            slot.pending = slot.pending[n:]
            slot.last_used = time.monotonic()
            return
        self.lib.llama_memory_seq_rm(self.mem, slot.id, slot.pos(len(slot.cache)), -1)  # what mtmd decoded of it
        slot.seq, slot.pending, slot.next_token = None, [], None
        seq.fail(InfernoError(f"llama.cpp could not encode an image for {self.model.name}"))

    # leaving --------------------------------------------------------------------------------------

    def _release(self, slot: Slot, reason: FinishReason) -> None:
        """End the slot's sequence; its cached cells stay as a prefix cache until someone needs the room."""
        seq, slot.seq = slot.seq, None
        # an unfinished prompt's evaluated part is still a valid prefix
        slot.pending, slot.next_token, slot.draft = [], None, []
        slot.last_used = time.monotonic()
        if seq is not None:
            if seq.shifted:  # cells past the kept start were computed beside discarded ones: no prefix cache
                self._forget(slot, min(seq.n_keep, len(slot.cache)))
            seq.finish(reason)

    def fail_all(self, error: InfernoError) -> None:
        """A fatal decode error (a llama.cpp failure, an RPC worker gone): every running and waiting sequence
        fails with it, and the context is marked broken so the model reloads for the next request."""
        self.broken = True
        while self.waiting:
            seq, on_admit = self.waiting.popleft()
            on_admit()
            seq.fail(error)
        for slot in self.slots:
            seq, slot.seq = slot.seq, None
            slot.pending, slot.next_token, slot.cache, slot.images, slot.exact = [], None, [], [], 0
            if seq is not None:
                seq.fail(error)
