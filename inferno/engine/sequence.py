"""One generation request inside the batch: its prompt, sampler, limits, streamed text and timings.

The decode loop owns the KV cache and the batch; a Sequence owns everything that is per request, so no
state is shared between two requests that run together.
"""

from __future__ import annotations

import codecs
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from inferno.engine import chat
from inferno.engine.fit import fit, keep_count
from inferno.engine.grammar import check_grammar, grammar_for
from inferno.engine.lora import lora_key
from inferno.engine.output import StreamedText
from inferno.engine.sampling import DEFAULT_SAMPLING, Sampler, logprobs_entry
from inferno.engine.slots import chunk_ends
from inferno.engine.speculate import drafter_for
from inferno.engine.thinking import HarmonySplitter, ThinkSplitter, is_harmony, opens_inside, supports_thinking
from inferno.engine.types import Done, FinishReason, GenerateRequest, ThinkingDelta, ToolCalls, Truncated

if TYPE_CHECKING:
    from inferno.engine.model import Model
    from inferno.errors import InfernoError

log = logging.getLogger("inferno.engine")


class Sequence:
    """A request admitted to a slot: prompt tokens still to evaluate, then one sampled token per step."""

    def __init__(self, model: Model, req: GenerateRequest, emit: Callable[[Any], None],
                 cancelled: Callable[[], bool], load_ns: int = 0) -> None:
        self.t0 = time.perf_counter_ns()
        self.model, self.req, self.emit, self.is_cancelled, self.load_ns = model, req, emit, cancelled, load_ns
        fitted = fit(model, req)
        self.prompt, text, self.images = fitted.tokens, fitted.text, fitted.images
        self.truncated = fitted.dropped
        if fitted.truncated:
            log.info("%s: the prompt was %d tokens, more than the context of %d: %s, %d tokens left", model.name,
                     fitted.original, model.n_ctx, f"dropped its {fitted.dropped} oldest messages" if
                     req.messages is not None else "dropped its middle", len(self.prompt))
            emit(Truncated(messages=fitted.dropped, prompt_tokens=len(self.prompt), original_tokens=fitted.original))
        self.lora = lora_key(req.adapters)  # the adapter set it decodes with (engine/lora.py)
        # where its prompt chunks end with a KV stream per slot (inferno.engine.slots.chunk_ends): at its messages'
        # ends too, so the next request with the same system prompt or earlier turns reuses all of them
        turn_ends = {t for t in set(self.prompt) if t >= 0 and model.is_eog(t)}
        images = {start: n for start, (_, n, _) in self.images.spans.items()} if self.images is not None else {}
        self.chunk_ends = chunk_ends(self.prompt, model.prompt_chunk, turn_ends, images)
        self.shifted = 0  # tokens discarded by context shifts
        self._n_keep: int | None = None
        own = model.defaults.parameters
        params = own.model_dump(exclude_defaults=True) if own is not None else {}
        s = DEFAULT_SAMPLING | params | req.sampling.model_dump(exclude_none=True)
        if not req.sampling.stop and params.get("stop"):
            s["stop"] = params["stop"]
        forced = chat.tool_call_schema(req.tools, req.tool_choice) if req.tools else None
        grammar = check_grammar(req.grammar, model.settings) if req.grammar and forced is None else grammar_for(
            forced if forced is not None else req.format, model.settings)
        self.sampler = Sampler(model.lib, model.vocab, model.n_vocab, model.n_ctx, s, grammar)
        self.sampler.prime(self.prompt)
        max_tokens = s.get("max_tokens")
        self.max_tokens = None if max_tokens is None or max_tokens < 0 else int(max_tokens)
        watch_tools = bool(req.tools) and req.tool_choice.mode in ("auto", "required", "function")
        self.out = StreamedText([x for x in s.get("stop") or [] if x], watch_tools, emit)
        # A thinking model's chat: its reasoning is split off before the answer reaches stops and tool calls.
        template = model.chat_template(req)
        # gpt-oss' harmony: its channels are special tokens, so its pieces are read with them
        self.harmony = req.messages is not None and is_harmony(template)
        self.think: ThinkSplitter | HarmonySplitter | None = None
        if self.harmony:
            self.think = HarmonySplitter()
        elif req.messages is not None and supports_thinking(template):
            self.think = ThinkSplitter(inside=opens_inside(text))
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.generated: list[int] = []
        self.drafter = drafter_for(model, req)  # n-gram drafts to verify (inferno.engine.speculate)
        self.cached = 0  # prompt tokens found in the slot's cache
        self.t_first = 0
        self.done = False

    @property
    def n_keep(self) -> int:
        """Tokens a context shift keeps at the start (worked out when a shift first needs it)."""
        if self._n_keep is None:
            self._n_keep = keep_count(self.model, self.req, self.prompt)
        return self._n_keep

    def sample(self, ctx: Any, index: int) -> tuple[int, list[dict[str, Any]] | None]:
        if not self.t_first:
            self.t_first = time.perf_counter_ns()
        tok = self.sampler.sample(ctx, index)
        m = self.model
        # The sampler copies the row, so it still holds the raw logits the token was chosen from.
        lp = (logprobs_entry(m.lib, ctx, index, m.n_vocab, tok, self.req.logprobs, m.piece)
              if self.req.logprobs is not None else None)
        return tok, lp

    def accept(self, tok: int, lp: list[dict[str, Any]] | None) -> FinishReason | None:
        """Take a sampled token; the finish reason when the sequence ends with it, else None (it continues).

        An end-of-generation token is not kept (it never enters the cache or the context)."""
        if self.model.is_eog(tok) and not self.req.sampling.ignore_eos:
            return "stop"
        self.generated.append(tok)
        piece = self.decoder.decode(self.model.special_piece_bytes(tok) if self.harmony
                                    else self.model.piece_bytes(tok))
        if self.think is not None:
            thought, piece = self.think.feed(piece)
            if thought:
                self.emit(ThinkingDelta(thought))
        if self.out.feed(piece, lp):
            return "stop"
        if self.max_tokens is not None and len(self.generated) >= self.max_tokens:
            return "length"
        if self.max_tokens is None and len(self.generated) >= self.model.n_ctx:
            return "length"  # no limit asked: a context's worth of tokens, however many shifts that took
        return None

    def fail(self, error: InfernoError) -> None:
        """End with an error instead of a Done (free the sampler); nothing if it has ended already."""
        if self.done:
            return
        from inferno.engine.handle import Failure

        self.done = True
        self.sampler.close()
        self.emit(Failure(error))

    def finish(self, reason: FinishReason) -> None:
        """Emit the tail, tool calls and the final Done; free the sampler. Called once."""
        if self.done:
            return
        self.done = True
        t_end = time.perf_counter_ns()
        if reason != "cancelled":
            tail = self.decoder.decode(b"", final=True)
            if self.think is not None:  # an unterminated block (max_tokens) is still reasoning
                thought, rest = self.think.finish(tail)
                if thought:
                    self.emit(ThinkingDelta(thought))
                # what the splitter held (a harmony tool call that ended on its <|call|> end-of-generation
                # token) goes through the output filter, which spots tool calls as they stream
                tail = ""
                if rest:
                    self.out.feed(rest, None)
            calls = self.out.finish(tail, self.req.tools or [])
            if calls:
                self.emit(ToolCalls(calls))
                reason = "tool_calls"
        self.sampler.close()
        t_first = self.t_first or t_end
        self.emit(Done(reason=reason, prompt_tokens=len(self.prompt),
                       completion_tokens=len(self.generated), load_ns=self.load_ns,
                       prompt_eval_ns=t_first - self.t0, eval_ns=t_end - t_first,
                       total_ns=t_end - self.t0 + self.load_ns,
                       context=self.context() if self.req.return_context else None,
                       cached_tokens=self.cached, stop_sequence=self.out.stopped_by if reason == "stop" else None,
                       truncated=self.truncated, shifted=self.shifted,
                       draft_n=self.drafter.drafted if self.drafter else 0,
                       draft_n_accepted=self.drafter.accepted if self.drafter else 0))

    def context(self) -> list[int]:
        """Ollama's generate context: the exchange's tokens (an image's placeholders are not tokens)."""
        tokens = self.prompt + self.generated
        return [t for t in tokens if t >= 0] if self.images is not None else tokens
