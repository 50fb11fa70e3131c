"""The repeat penalty and the greedy choice that Inferno's Sampler (inferno.engine.sampling) makes in place of
llama.cpp's samplers: the same tokens as llama.cpp's own chain, the logits row left as it was, and llama.cpp's
sampler still used for frequency and presence penalties. Real llama.cpp on SmolLM2."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferno.engine.sampling import DEFAULT_SAMPLING, Sampler

PROMPT = "The cat sat on the mat. The cat sat on the mat. The cat sat on the mat. The cat"


@pytest.fixture(scope="module")
def llama(smollm2_path: Path) -> Iterator[tuple[Any, Any, Any, Any]]:
    import llama_cpp as lib

    lib.llama_backend_init()
    model = lib.llama_model_load_from_file(str(smollm2_path).encode(), lib.llama_model_default_params())
    params = lib.llama_context_default_params()
    params.n_ctx, params.n_threads, params.n_threads_batch = 512, 2, 2
    ctx = lib.llama_init_from_model(model, params)
    batch = lib.llama_batch_init(512, 0, 1)
    yield lib, model, ctx, batch
    lib.llama_batch_free(batch)
    lib.llama_free(ctx)
    lib.llama_model_free(model)


def _decode(lib: Any, ctx: Any, batch: Any, tokens: list[int], start: int) -> None:
    batch.n_tokens = len(tokens)
    for i, tok in enumerate(tokens):
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = tok, start + i, 1, int(i == len(tokens) - 1)
        batch.seq_id[i][0] = 0
    assert lib.llama_decode(ctx, batch) == 0


def _reference(lib: Any, model: Any, penalty: float, last_n: int, prompt: list[int]) -> Any:
    """llama.cpp's own chain for the same settings: its penalties sampler, then greedy, primed with the prompt."""
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    n_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_penalties(n_vocab, last_n, penalty, 0.0, 0.0))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
    penalties = lib.llama_sampler_chain_get(chain, 0)
    for tok in prompt[-last_n:]:
        lib.llama_sampler_accept(penalties, tok)
    return chain


def _penalized(lib: Any, chain: Any, logits: list[float]) -> list[float]:
    """The logits after llama.cpp's penalties sampler (the chain's first) alone."""
    data = (lib.llama_token_data * len(logits))(*((i, x, 0.0) for i, x in enumerate(logits)))
    cur = lib.llama_token_data_array(data=data, size=len(logits), selected=-1, sorted=False)
    lib.llama_sampler_apply(lib.llama_sampler_chain_get(chain, 0), ctypes.byref(cur))
    out = [0.0] * len(logits)
    for i in range(len(logits)):
        out[data[i].id] = data[i].logit
    return out


def _ours_penalized(ours: Sampler, row: Any, n_vocab: int) -> list[float]:
    saved = ours.penalize(row)
    try:
        return [row[i] for i in range(n_vocab)]
    finally:
        for tok, logit in saved:
            row[tok] = logit


@pytest.mark.parametrize(("penalty", "last_n"), [(1.1, 64), (1.5, 16), (0.8, 64), (1.0, 64)])
def test_the_same_tokens_as_llama_cpps_penalties_sampler(llama: tuple[Any, Any, Any, Any], penalty: float,
                                                         last_n: int) -> None:
    lib, model, ctx, batch = llama
    vocab = lib.llama_model_get_vocab(model)
    n_vocab = lib.llama_vocab_n_tokens(vocab)
    prompt_buf = (lib.llama_token * 256)()
    n = lib.llama_tokenize(vocab, PROMPT.encode(), len(PROMPT.encode()), prompt_buf, 256, True, False)
    prompt = list(prompt_buf[:n])
    settings = {**DEFAULT_SAMPLING, "temperature": 0, "repeat_penalty": penalty, "repeat_last_n": last_n}
    ours = Sampler(lib, vocab, n_vocab, 512, settings, None)
    assert ours.argmax  # greedy: the row's first largest logit, llama.cpp's greedy sampler's choice
    if penalty != 1.0:
        assert ours.repeat is not None and lib.llama_sampler_chain_n(ours.chain) == 1  # no llama.cpp penalties
    ours.prime(prompt)
    theirs = _reference(lib, model, penalty, last_n, prompt)
    lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
    _decode(lib, ctx, batch, prompt, 0)
    pos, differed = len(prompt), 0
    for step in range(48):
        row = lib.llama_get_logits_ith(ctx, -1)
        before = [row[i] for i in range(n_vocab)]
        if step % 8 == 0 and penalty != 1.0:  # every logit as llama.cpp's penalties leave it, positive or negative
            assert _penalized(lib, theirs, before) == _ours_penalized(ours, row, n_vocab)
        tok = ours.sample(ctx, -1)
        assert [row[i] for i in range(n_vocab)] == before  # the row is put back: log-probabilities read it raw
        assert lib.llama_sampler_sample(theirs, ctx, -1) == tok
        differed += tok != max(range(n_vocab), key=before.__getitem__)  # the penalty did change a choice
        _decode(lib, ctx, batch, [tok], pos)
        pos += 1
    ours.close()
    lib.llama_sampler_free(theirs)
    if penalty > 1:
        assert differed, "the penalty never changed a token: the test would not see a wrong penalty"


def test_frequency_and_presence_penalties_stay_with_llama_cpp(llama: tuple[Any, Any, Any, Any]) -> None:
    lib, model, _, _ = llama
    vocab = lib.llama_model_get_vocab(model)
    n_vocab = lib.llama_vocab_n_tokens(vocab)
    for extra in ({"frequency_penalty": 0.5}, {"presence_penalty": 0.5}):
        s = Sampler(lib, vocab, n_vocab, 512, {**DEFAULT_SAMPLING, "temperature": 0, **extra}, None)
        assert s.repeat is None and lib.llama_sampler_chain_n(s.chain) == 2  # llama.cpp's penalties, then greedy
        assert not s.argmax  # its greedy choice comes after llama.cpp's penalties
        s.close()
