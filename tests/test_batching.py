"""Continuous batching on real llama.cpp: slots, per-sequence state, chunked prompts, cache limits, prefix reuse.

The tiny synthetic model's F32 kernels give the same logits whatever the batch holds, so "concurrent equals
alone" is exact here; SmolLM2 (quantized, whose CPU kernels round differently per batch shape) is checked on
answers that must make sense instead (tests/test_engine_smollm2.py).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from inferno.config import load_settings
from inferno.engine.batcher import Batcher
from inferno.engine.model import Model
from inferno.engine.protocol import EngineSettings
from inferno.engine.scheduler import Scheduler
from inferno.engine.sequence import Sequence
from inferno.engine.types import (
    Done,
    Embeddings,
    EmbedRequest,
    GenerateRequest,
    LoadOptions,
    Message,
    SamplingOptions,
    TextDelta,
)
from inferno.host import Inferno
from tests.conftest import wait_for

PROMPTS = ["The river runs", "Once upon a time", "In a galaxy far", "Seven apples and", "Zebras are"]


def make_host(home: Path, tiny_gguf: Path, **env: str) -> Inferno:
    h = Inferno(load_settings({"INFERNO_HOME": str(home), **env}))
    h.import_file(tiny_gguf, "tiny", source="test")
    return h


@pytest.fixture
def par(home: Path, tiny_gguf: Path) -> Any:
    h = make_host(home, tiny_gguf, INFERNO_NUM_PARALLEL="4")
    yield h
    h.engine.close()


def req(prompt: str, tokens: int = 24, **kw: Any) -> GenerateRequest:
    sampling = SamplingOptions(temperature=kw.pop("temperature", 0), seed=kw.pop("seed", None), max_tokens=tokens,
                               ignore_eos=True)
    return GenerateRequest(model="tiny", prompt=prompt, sampling=sampling, **kw)


def collect(handle: Any) -> tuple[str, Done]:
    events = list(handle)
    assert isinstance(events[-1], Done)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def concurrently(host: Inferno, requests: list[GenerateRequest]) -> list[tuple[str, Done]]:
    handles = [host.engine.submit(r) for r in requests]  # all queued before any is read
    out: list[Any] = [None] * len(handles)
    threads = [threading.Thread(target=lambda i=i, h=h: out.__setitem__(i, collect(h))) for i, h in enumerate(handles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@pytest.mark.parametrize("temperature", [0, 0.9])
def test_concurrent_streams_give_what_each_gives_alone(par: Inferno, temperature: float) -> None:
    reqs = [req(p, 32, temperature=temperature, seed=11) for p in PROMPTS]  # 5 requests for 4 slots
    alone = [collect(par.engine.submit(r))[0] for r in reqs]
    together = concurrently(par, reqs)
    assert [t for t, _ in together] == alone
    assert all(d.reason == "length" and d.completion_tokens == 32 for _, d in together)


def test_same_seed_concurrently_gives_the_same_text(par: Inferno) -> None:
    texts = [t for t, _ in concurrently(par, [req("Seeds", 24, temperature=1.0, seed=5)] * 4)]
    assert len(set(texts)) == 1
    other = collect(par.engine.submit(req("Seeds", 24, temperature=1.0, seed=6)))[0]
    assert other != texts[0]


def test_cancelling_one_stream_leaves_the_others_and_frees_its_slot(par: Inferno) -> None:
    long = [req(p, 600) for p in PROMPTS[:3]]  # three fit in the 2048-token context
    alone = [collect(par.engine.submit(r))[0] for r in long[1:]]
    handles = [par.engine.submit(r) for r in long]
    first = iter(handles[0])
    assert isinstance(next(first), TextDelta)
    wait_for(lambda: par.engine.loaded()[0].slots_in_use == 3, "three slots in use")
    handles[0].cancel()
    wait_for(lambda: par.engine.loaded()[0].slots_in_use <= 2, "the cancelled stream's slot to be freed")
    assert [e for e in first][-1].reason == "cancelled"
    assert [collect(h)[0] for h in handles[1:]] == alone


def test_a_long_prompt_delays_running_streams_by_one_chunk_at_a_time(host: Inferno) -> None:
    assert isinstance(host.engine, Scheduler)  # the engine's internals: its batcher on the model it resolves
    resolved = host.engine.resolver.resolve("tiny")
    model = Model(resolved, LoadOptions(n_ctx=2048, n_batch=64), EngineSettings(num_parallel=2))
    batcher = Batcher(model, 2)
    try:
        events: list[Any] = []
        running = Sequence(model, req("short", 200), events.append, lambda: False)
        batcher.enqueue(running, lambda: None)
        while not running.generated:
            batcher.step()
        long = Sequence(model, req("x" * 1000, 5), events.append, lambda: False)  # 1000 byte tokens
        batcher.enqueue(long, lambda: None)
        steps = 0
        while not long.generated:
            before = len(running.generated)
            batcher.step()
            steps += 1
            assert len(running.generated) == before + 1  # the running stream got its token in every step
        assert steps >= len(long.prompt) // 64  # the prompt went in chunks of at most n_batch - 1 + 1 tokens
    finally:
        batcher.close()
        model.close()


@pytest.mark.parametrize("flash", ["off", "on"])
def test_prompts_of_equal_chunks_share_a_decode_without_flash_attention(host: Inferno, flash: str) -> None:
    """With INFERNO_MIX_PROMPTS, prompts evaluating together put their chunks of one length into one decode (flash
    attention off: llama.cpp's CPU kernels then give each row the numbers it has alone); with flash attention on,
    one prompt's chunk per step."""
    assert isinstance(host.engine, Scheduler)
    resolved = host.engine.resolver.resolve("tiny")
    settings = EngineSettings(num_parallel=3, flash_attn="off" if flash == "off" else "on", mix_prompts=True)
    model = Model(resolved, LoadOptions(n_ctx=1024), settings)
    batcher = Batcher(model, 3)
    try:
        seqs = [Sequence(model, req(c * 300, 4), lambda e: None, lambda: False) for c in "abc"]  # 300 byte tokens
        for seq in seqs:
            batcher.enqueue(seq, lambda: None)
        batcher.step()
        evaluated = [len(s.prompt) - len(slot.pending) for s in seqs for slot in batcher.slots if slot.seq is s]
        assert evaluated == ([64, 64, 64] if flash == "off" else [64, 0, 0])
    finally:
        batcher.close()
        model.close()


def test_prompts_of_unequal_chunks_share_a_decode_in_pieces_and_answer_as_alone(host: Inferno) -> None:
    """An n- and an (n + 1)-token prompt: the second's chunk is cut to n - 4 tokens beside the first's n (llama.cpp
    then computes pieces of n - 4 and 4, none of 1), its rest of 5 the next step; both answer as alone."""
    assert isinstance(host.engine, Scheduler)
    resolved = host.engine.resolver.resolve("tiny")
    model = Model(resolved, LoadOptions(n_ctx=1024), EngineSettings(num_parallel=2, flash_attn="off", mix_prompts=True))
    try:
        def run(prompts: list[str], together: bool) -> tuple[list[list[int]], list[int]]:
            batcher = Batcher(model, 2)
            try:
                seqs = [Sequence(model, req(t, 8), lambda e: None, lambda: False) for t in prompts]
                for seq in seqs if together else seqs[:1]:
                    batcher.enqueue(seq, lambda: None)
                batcher.step()
                first = [len(s.prompt) - len(slot.pending) for s in seqs for slot in batcher.slots if slot.seq is s]
                if not together:
                    batcher.enqueue(seqs[1], lambda: None)
                while not all(s.done for s in seqs):
                    batcher.step()
                return [s.generated for s in seqs], first
            finally:
                batcher.close()

        prompts = ["a" * 39, "b" * 40]
        alone, _ = run(prompts, together=False)
        both, first = run(prompts, together=True)
        n = len(Sequence(model, req(prompts[0], 8), lambda e: None, lambda: False).prompt)
        assert len(Sequence(model, req(prompts[1], 8), lambda e: None, lambda: False).prompt) == n + 1 < 64
        assert first == [n, n - 4]
        assert both == alone
    finally:
        model.close()


def test_pieces_follow_llama_cpps_split_over_kv_streams() -> None:
    from inferno.engine.slots import pieces

    assert pieces({0: 26, 1: 27}, 512) == {0: [26], 1: [26, 1]}  # the 1-token piece: such a pair is not mixed
    assert pieces({0: 26, 1: 30, 2: 26}, 512) == {0: [26], 1: [26, 4], 2: [26]}
    assert pieces({0: 64, 2: 64}, 512) == {0: [64], 2: [64]}  # not consecutive: a micro-batch each
    assert pieces({0: 64, 1: 64}, 100) == {0: [50, 14], 1: [50, 14]}  # (50 + 1) * 2 > 100


@pytest.mark.parametrize("unified", [False, True])
def test_a_full_cache_ends_the_sequence_that_cannot_continue(home: Path, tiny_gguf: Path, unified: bool) -> None:
    h = make_host(home, tiny_gguf, INFERNO_NUM_PARALLEL="2", INFERNO_KV_UNIFIED="1" if unified else "0")
    try:
        load = LoadOptions(n_ctx=256)
        alone_text, alone = collect(h.engine.submit(req("one sequence may use it all", 1000, load=load)))
        # every cell used; the last token is sampled from the last cell's logits and needs none of its own
        assert alone.reason == "length" and alone.prompt_tokens + alone.completion_tokens == 256 + 1
        both = concurrently(h, [req(p, 1000, load=load) for p in PROMPTS[:2]])
        assert all(d.reason == "length" for _, d in both)
        totals = sorted(d.prompt_tokens + d.completion_tokens for _, d in both)
        if unified:  # the first ended when the shared cache was full; its cells then went to the other, which
            assert totals[0] < 200 and totals[1] <= 256 + 1  # went on while there was room
        else:  # a stream per slot: each has the whole context it asked for
            assert totals == [256 + 1, 256 + 1]
        # and the model still works: nothing was corrupted
        again_text, again = collect(h.engine.submit(req("one sequence may use it all", 1000, load=load)))
        assert again_text == alone_text and again.completion_tokens == alone.completion_tokens
    finally:
        h.engine.close()


def test_prefix_reuse_finds_the_slot_holding_the_conversation(par: Inferno) -> None:
    def chat(history: list[Message]) -> tuple[str, Done]:
        # n_batch 16: a reused prefix is cut to whole prompt chunks (exact logits), so the chunk is kept small
        return collect(par.engine.submit(GenerateRequest(model="tiny", messages=history, sampling=SamplingOptions(
            temperature=0, max_tokens=16, ignore_eos=True), load=LoadOptions(n_batch=16))))

    conversations = {name: [Message(role="user", content=f"{name} " * 40)] for name in ("alpha", "beta", "gamma")}
    first = {}
    for name, history in conversations.items():
        text, done = chat(history)
        first[name] = done
        history.append(Message(role="assistant", content=text))
        history.append(Message(role="user", content="and then?"))
    for name, history in conversations.items():  # each second turn finds its own first turn in some slot
        _, done = chat(history)
        assert done.cached_tokens >= first[name].prompt_tokens - 16


def test_embeddings_run_beside_generation(par: Inferno) -> None:
    idle = collect_embed(par)
    stream = par.engine.submit(req("keep going", 3000))
    it = iter(stream)
    next(it)
    assert collect_embed(par) == idle  # answered while the stream runs, from a context of its own
    assert par.engine.loaded()[0].slots_in_use == 1
    stream.cancel()
    assert [e for e in it][-1].reason == "cancelled"


def collect_embed(h: Inferno) -> list[list[float]]:
    out = list(h.engine.embed(EmbedRequest(model="tiny", inputs=["first input", "a second, longer input"])))
    assert isinstance(out[-1], Embeddings)
    return out[-1].vectors


def test_parallel_1_runs_one_request_at_a_time(home: Path, tiny_gguf: Path) -> None:
    h = make_host(home, tiny_gguf, INFERNO_NUM_PARALLEL="1")
    try:
        order: list[tuple[int, str]] = []
        lock = threading.Lock()
        handles = [h.engine.submit(req(p, 40)) for p in PROMPTS[:2]]

        def read(i: int) -> None:
            for e in handles[i]:
                with lock:
                    order.append((i, type(e).__name__))

        threads = [threading.Thread(target=read, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert order.index((0, "Done")) < order.index((1, "TextDelta"))  # the second waited for the first
        assert h.engine.loaded()[0].slots == 1
    finally:
        h.engine.close()


def test_other_load_options_wait_for_running_sequences_then_reload(par: Inferno) -> None:
    # the second asks for more context than the first's: only that reloads (a smaller one would be served as is)
    running = par.engine.submit(req("first", 400, load=LoadOptions(n_ctx=512)))
    it = iter(running)
    next(it)
    other = par.engine.submit(req("second", 8, load=LoadOptions(n_ctx=1024)))
    first_done = [e for e in it][-1]
    assert first_done.reason == "length" and first_done.completion_tokens == 400  # never cut
    _, done = collect(other)
    assert done.load_ns > 0 and par.engine.loaded()[0].context_length == 1024


def test_every_schema_grammar_keeps_control_characters_out_of_strings() -> None:
    from inferno.engine.grammar import JSON_CHAR, grammar_for

    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "array",
              "items": {"type": "string", "maxLength": 4}}}, "required": ["a"]}
    gbnf = grammar_for(schema)
    assert gbnf is not None and "char ::= " + JSON_CHAR in gbnf and '[^"\\\\] |' not in gbnf
    json_mode = grammar_for("json")
    assert json_mode is not None and "\\x00-\\x1F" in json_mode
