"""One evaluation per prefix, on real llama.cpp (the tiny synthetic model: exact, fast).

A prompt prefix already in the KV cache (a running sequence, a finished one's kept cells) is copied into the new
sequence's slot with llama_memory_seq_cp, and requests arriving together with one preamble evaluate it once:
Done.cached_tokens counts what was not evaluated.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from inferno.engine.types import Done, GenerateRequest, LoadOptions, SamplingOptions, TextDelta
from inferno.host import Inferno
from tests.test_batching import make_host

PREAMBLE = "You are a careful assistant. Tools: search(query), fetch(url), sum(a, b). " * 8  # ~600 byte tokens
LOAD = LoadOptions(n_ctx=2048)  # a reused prefix is cut to whole prompt chunks (64 tokens on the CPU)


@pytest.fixture(params=["streams", "unified"])
def par(request: pytest.FixtureRequest, home: Path, tiny_gguf: Path) -> Any:
    h = make_host(home, tiny_gguf, INFERNO_NUM_PARALLEL="4",
                  INFERNO_KV_UNIFIED="1" if request.param == "unified" else "0")
    yield h
    h.engine.close()


def req(prompt: str, tokens: int = 16) -> GenerateRequest:
    return GenerateRequest(model="tiny", prompt=prompt, load=LOAD,
                           sampling=SamplingOptions(temperature=0, max_tokens=tokens, ignore_eos=True))


def collect(handle: Any) -> tuple[str, Done]:
    events = list(handle)
    assert isinstance(events[-1], Done)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def test_requests_arriving_together_evaluate_their_shared_preamble_once(par: Inferno) -> None:
    questions = [f"Question {i}: what is {i} plus {i}?" for i in range(4)]
    handles = [par.engine.submit(req(PREAMBLE + q)) for q in questions]  # all queued before any is read
    out: list[Any] = [None] * 4
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, collect(handles[i]))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dones = [d for _, d in out]
    evaluated = sum(d.prompt_tokens - d.cached_tokens for d in dones)
    longest = max(d.prompt_tokens for d in dones)
    assert evaluated < longest + 3 * 2 * 64  # the preamble once, then each other question and its last chunk
    cached = sorted(d.cached_tokens for d in dones)
    # one evaluated it, three copied it (all but the last chunk, or less than MIN_WAIT tokens short of it)
    assert cached[0] == 0 and all(c >= 0.85 * longest for c in cached[1:])
    cold = Inferno(par.settings)  # a fresh engine: nothing cached, each request evaluated whole
    try:
        assert [collect(cold.engine.submit(req(PREAMBLE + q)))[0] for q in questions] == [t for t, _ in out]
    finally:
        cold.engine.close()


def test_a_running_sequences_prefix_is_copied_into_a_new_slot(par: Inferno) -> None:
    running = par.engine.submit(req(PREAMBLE + "Tell me everything.", 2000))
    it = iter(running)
    next(it)  # its prompt is evaluated: the preamble sits in its (busy) slot
    text, done = collect(par.engine.submit(req(PREAMBLE + "A short question?")))
    assert done.cached_tokens >= 0.9 * done.prompt_tokens  # copied from the running slot, not evaluated again
    running.cancel()
    assert [e for e in it][-1].reason == "cancelled"
    cold = Inferno(par.settings)
    try:
        assert collect(cold.engine.submit(req(PREAMBLE + "A short question?")))[0] == text  # the copy is exact
    finally:
        cold.engine.close()


def test_a_finished_sequences_cells_serve_the_next_prompt_with_its_preamble(par: Inferno) -> None:
    first = collect(par.engine.submit(req(PREAMBLE + "First question?")))[1]
    assert first.cached_tokens == 0
    second = collect(par.engine.submit(req(PREAMBLE + "Second question, a longer one?")))[1]
    assert second.cached_tokens >= 0.9 * first.prompt_tokens
