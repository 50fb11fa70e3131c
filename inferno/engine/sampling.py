"""One sampler chain per sequence (llama.cpp's own samplers), and log-probabilities read from a logits row.

Nothing here is shared between sequences: each request owns its chain, its grammar state and its RNG, so
two concurrent requests with the same seed give the same text as each alone.
"""

from __future__ import annotations

import collections
import ctypes
import math
import os
from typing import Any

from inferno.errors import BadRequestError

DEFAULT_SAMPLING: dict[str, Any] = {
    "temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.1,
    "repeat_last_n": 64, "presence_penalty": 0.0, "frequency_penalty": 0.0}


class Sampler:
    """A llama.cpp sampler chain: penalties, logit bias, grammar, then greedy or top-k/typical/top-p/min-p/temp/dist —
    the order llama-cpp-python's own generate() uses, so a single stream samples as it did before.

    A repeat penalty on its own (Ollama's default 1.1, no frequency or presence penalty) is applied here instead
    of by llama.cpp's penalties sampler, which looks every token of the vocabulary up in its counts (49,152 hash
    lookups, ~0.3-0.5 ms a token on two EPYC cores, where a token takes ~10 ms; llama.h itself warns that it is
    slow on the whole vocabulary). Here only the logits of the tokens in the window (at most repeat_last_n) are
    changed in the row, with llama.cpp's arithmetic (x penalty when <= 0, / penalty above, in float32: a product
    or quotient of float32s computed in double and rounded once is the float32 result), the chain samples from
    the row, and the row is put back (log-probabilities read it raw): the same token as llama.cpp's sampler."""

    def __init__(self, llama_cpp: Any, vocab: Any, n_vocab: int, n_ctx: int, s: dict[str, Any],
                 grammar: str | None) -> None:
        self._lib = llama_cpp
        params = llama_cpp.llama_sampler_chain_default_params()
        params.no_perf = True
        self.chain = llama_cpp.llama_sampler_chain_init(params)
        add = llama_cpp.llama_sampler_chain_add
        last_n = int(s["repeat_last_n"])
        self.last_n = n_ctx if last_n < 0 else last_n
        repeat, freq, present = float(s["repeat_penalty"]), float(s["frequency_penalty"]), float(s["presence_penalty"])
        self.penalized = self.last_n > 0 and (repeat != 1.0 or freq != 0 or present != 0)
        # the repeat penalty alone: applied by sample() (see the class), as float32 like llama.cpp's
        self.repeat = ctypes.c_float(repeat).value if self.penalized and freq == 0 and present == 0 else None
        self.window: collections.deque[int] = collections.deque()  # the last last_n tokens, and their counts
        self.counts: dict[int, int] = {}
        if self.repeat is None:
            add(self.chain, llama_cpp.llama_sampler_init_penalties(n_vocab, self.last_n, repeat, freq, present))
        bias = s.get("logit_bias")
        if bias:
            add(self.chain, logit_bias_sampler(llama_cpp, n_vocab, bias))
        if grammar is not None:
            g = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
            if not g:
                self.close()
                raise BadRequestError("llama.cpp cannot parse the grammar made from this format", param="format")
            add(self.chain, g)
        temp = float(s["temperature"])
        # greedy with nothing before it but this class's repeat penalty: the token is the row's first largest
        # logit (llama.cpp's greedy sampler, without building its 49,152-entry candidate array: ~0.1 ms a token)
        self.n_vocab = n_vocab
        self.argmax = temp <= 0 and grammar is None and not bias and (self.repeat is not None or not self.penalized)
        if temp <= 0:
            add(self.chain, llama_cpp.llama_sampler_init_greedy())
        else:
            seed = s.get("seed")
            seed = seed if seed is not None and seed >= 0 else int.from_bytes(os.urandom(4), "little")
            add(self.chain, llama_cpp.llama_sampler_init_top_k(int(s["top_k"])))
            add(self.chain, llama_cpp.llama_sampler_init_typical(float(s["typical_p"]), 1))
            add(self.chain, llama_cpp.llama_sampler_init_top_p(float(s["top_p"]), 1))
            add(self.chain, llama_cpp.llama_sampler_init_min_p(float(s["min_p"]), 1))
            add(self.chain, llama_cpp.llama_sampler_init_temp(temp))
            add(self.chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def prime(self, prompt: list[int]) -> None:
        """Feed the prompt's last repeat_last_n tokens to the penalty sampler only (llama-server does so; the
        grammar must not see them), so penalties count repeats of the prompt too."""
        if not self.penalized:
            return
        if self.repeat is not None:
            for tok in prompt[-self.last_n:]:
                if tok >= 0:  # an image's placeholders are not tokens
                    self._remember(tok)
            return
        penalties = self._lib.llama_sampler_chain_get(self.chain, 0)
        accept = self._lib.llama_sampler_accept
        for tok in prompt[-self.last_n:]:
            if tok >= 0:  # an image's placeholders are not tokens
                accept(penalties, tok)

    def sample(self, ctx: Any, index: int) -> int:
        """The next token from the logits row `index` of the last decode; the chain accepts it."""
        if self.repeat is None and not self.argmax:
            return self._lib.llama_sampler_sample(self.chain, ctx, index)
        row = self._lib.llama_get_logits_ith(ctx, index)
        saved = self.penalize(row) if self.repeat is not None else []
        try:
            token = self._first_max(row) if self.argmax else None
            if token is None:  # sampled, or a NaN where llama.cpp's greedy would compare
                token = self._lib.llama_sampler_sample(self.chain, ctx, index)
        finally:
            for tok, logit in saved:
                row[tok] = logit
        if self.repeat is not None:
            self._remember(token)
        return token

    def _first_max(self, row: Any) -> int | None:
        import numpy as np

        logits = np.ctypeslib.as_array(row, shape=(self.n_vocab,))
        token = int(np.argmax(logits))  # the first of equal maxima, as llama.cpp's greedy sampler takes
        return None if math.isnan(float(logits[token])) else token

    def penalize(self, row: Any) -> list[tuple[int, float]]:
        """The repeat penalty on the window's tokens in a logits row (a float pointer), as llama.cpp computes it;
        their logits before, to put back."""
        saved = [(tok, row[tok]) for tok in self.counts]
        penalty = self.repeat
        assert penalty is not None
        for tok, logit in saved:
            row[tok] = logit * penalty if logit <= 0 else logit / penalty
        return saved

    def _remember(self, tok: int) -> None:
        """The penalty's window (llama.cpp's penalties accept): the last last_n tokens and how often each is in it."""
        self.window.append(tok)
        self.counts[tok] = self.counts.get(tok, 0) + 1
        if len(self.window) > self.last_n:
            old = self.window.popleft()
            if self.counts[old] == 1:
                del self.counts[old]
            else:
                self.counts[old] -= 1

    def close(self) -> None:
        if self.chain is not None:
            self._lib.llama_sampler_free(self.chain)
            self.chain = None

    def __del__(self) -> None:
        self.close()


def logit_bias_sampler(llama_cpp: Any, n_vocab: int, bias: dict[Any, float]) -> Any:
    """llama.cpp's logit-bias sampler for OpenAI's logit_bias (token id → bias added to its logit). -100 is a ban,
    as OpenAI documents it: llama.cpp adds the bias as it is, and a logit past +100 would survive -100, so -100
    becomes -inf. Token ids the vocabulary lacks are a 400 (the dialect has checked the rest)."""
    entries = []
    for key, value in bias.items():
        tok = int(key)
        if not 0 <= tok < n_vocab:
            raise BadRequestError(f"logit_bias names token {tok}; this model's token ids are 0 to {n_vocab - 1}",
                                  param="logit_bias")
        entries.append((tok, -math.inf if value <= -100 else float(value)))
    arr = (llama_cpp.llama_logit_bias * len(entries))(*entries)
    return llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(entries), arr)  # it copies the array


def logprobs_entry(llama_cpp: Any, ctx: Any, index: int, n_vocab: int, token: int, top: int | None,
                   piece: Any) -> list[dict[str, Any]]:
    """The chosen token's log-probability (and the `top` most likely) from the raw logits row it came from."""
    import numpy as np

    ptr = llama_cpp.llama_get_logits_ith(ctx, index)
    row = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float64)
    m = float(np.max(row))
    logz = m + math.log(float(np.sum(np.exp(row - m))))
    entry: dict[str, Any] = {"token": piece(token), "logprob": float(row[token]) - logz}
    if top:
        best = np.argpartition(-row, top)[:top]
        best = best[np.argsort(-row[best])]
        entry["top_logprobs"] = [{"token": piece(int(t)), "logprob": float(row[t]) - logz} for t in best]
    return [entry]
