"""The scheduler and generation on real llama.cpp with the tiny synthetic GGUF."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from inferno.config import load_settings
from inferno.engine.types import (
    Done,
    GenerateRequest,
    LoadOptions,
    Message,
    SamplingOptions,
    TextDelta,
    TokenizeRequest,
    Tokens,
)
from inferno.errors import BadRequestError, BusyError, ModelLoadError, ModelNotFoundError
from inferno.host import Inferno

from .conftest import wait_for


def gen(model: str = "tiny", prompt: str = "hello", **kw: object) -> GenerateRequest:
    sampling = kw.pop("sampling", SamplingOptions(max_tokens=8, seed=1, ignore_eos=True))
    return GenerateRequest(model=model, prompt=prompt, sampling=sampling, **kw)  # type: ignore


def run(host: Inferno, req: GenerateRequest) -> tuple[str, Done]:
    events = list(host.engine.submit(req))
    assert isinstance(events[-1], Done)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def loaded(host: Inferno) -> dict[str, int]:
    return {m.name: m.context_length for m in host.engine.loaded()}


def make_host(home: Path, tiny_gguf: Path, **env: str) -> Inferno:
    h = Inferno(load_settings({"INFERNO_HOME": str(home), **env}))
    h.import_file(tiny_gguf, "tiny", source="test")
    h.store.copy("tiny", "tiny2")
    return h


def test_events_and_counters(host: Inferno) -> None:
    _text, done = run(host, gen(sampling=SamplingOptions(max_tokens=6, seed=3, ignore_eos=True)))
    assert done.reason == "length" and done.completion_tokens == 6
    assert done.prompt_tokens > 0 and done.load_ns > 0 and done.eval_ns > 0 and done.prompt_eval_ns > 0
    assert done.total_ns >= done.load_ns + done.eval_ns
    _, again = run(host, gen(sampling=SamplingOptions(max_tokens=6, seed=3, ignore_eos=True)))
    assert again.load_ns == 0  # still loaded


def test_seed_makes_answers_repeatable(host: Inferno) -> None:
    req = gen(sampling=SamplingOptions(max_tokens=12, seed=42, temperature=1.0))
    assert run(host, req)[0] == run(host, req)[0]


def test_async_iteration(host: Inferno) -> None:
    async def go() -> list[object]:
        return await host.engine.submit(gen()).result()

    events = asyncio.run(go())
    assert isinstance(events[-1], Done) and events[-1].completion_tokens == 8


def test_unknown_model(host: Inferno) -> None:
    with pytest.raises(ModelNotFoundError):
        host.engine.submit(gen(model="nope"))


def test_prompt_longer_than_context_names_both_numbers(host: Inferno) -> None:
    req = gen(prompt="x" * 400, load=LoadOptions(n_ctx=256))
    with pytest.raises(BadRequestError, match=r"prompt is 40\d tokens but the context window is 256"):
        run(host, req)
    _, done = run(host, gen(prompt="x" * 400, load=LoadOptions(n_ctx=256), truncate=True,
                            sampling=SamplingOptions(max_tokens=4, ignore_eos=True)))
    assert done.completion_tokens == 4


def test_keep_alive_expiry_and_zero(host: Inferno) -> None:
    before = time.time()
    run(host, gen(keep_alive=600))
    after = time.time()
    (model,) = host.engine.loaded()
    # the request's keep_alive from the moment it ended (between the two readings), however long it ran
    assert model.name == "tiny" and model.expires_at is not None
    assert before + 600 <= model.expires_at <= after + 600
    run(host, gen(keep_alive=1))  # no assertion races the second: only its expiry is awaited
    wait_for(lambda: "tiny" not in loaded(host), "tiny to expire")
    run(host, gen(keep_alive=0))
    wait_for(lambda: "tiny" not in loaded(host), "tiny to unload at once")
    run(host, gen(keep_alive=-1))
    assert host.engine.loaded()[0].expires_at is None


def test_reload_when_load_options_change(host: Inferno) -> None:
    run(host, gen(load=LoadOptions(n_ctx=256)))
    assert loaded(host) == {"tiny": 256}
    _, done = run(host, gen(load=LoadOptions(n_ctx=512)))  # more context than loaded: a reload
    assert loaded(host) == {"tiny": 512} and done.load_ns > 0
    for fits in (LoadOptions(n_ctx=512), LoadOptions(n_ctx=256), LoadOptions()):  # served as loaded
        _, done = run(host, gen(load=fits))
        assert done.load_ns == 0 and loaded(host) == {"tiny": 512}


def test_least_recently_used_model_is_evicted(home: Path, tiny_gguf: Path) -> None:
    """Two allowed: tiny, tiny2, tiny again, then tiny3 evicts tiny2 (used least recently), not tiny (loaded
    first) nor the model being loaded."""
    host = make_host(home, tiny_gguf, INFERNO_MAX_LOADED_MODELS="2")
    host.store.copy("tiny", "tiny3")
    try:
        for name in ("tiny", "tiny2", "tiny"):
            run(host, gen(model=name))
        assert set(loaded(host)) == {"tiny", "tiny2"}
        run(host, gen(model="tiny3"))
        wait_for(lambda: set(loaded(host)) == {"tiny", "tiny3"}, "tiny2, the least recently used, to be evicted")
    finally:
        host.engine.close()


def test_context_above_the_trained_length_warns(host: Inferno) -> None:
    with pytest.warns(UserWarning, match="above the trained context"):
        run(host, gen(load=LoadOptions(n_ctx=4096), sampling=SamplingOptions(max_tokens=1)))


def test_cancel_mid_stream_frees_the_model(host: Inferno) -> None:
    # runs until cancelled (no limit, the context shifts when full): it can only end by the cancel
    long = gen(sampling=SamplingOptions(max_tokens=-1, ignore_eos=True), load=LoadOptions(n_ctx=2048), shift=True)
    handle = host.engine.submit(long)
    it = iter(handle)
    next(it)
    handle.cancel()
    rest = list(it)
    done = rest[-1]
    assert isinstance(done, Done) and done.reason == "cancelled"
    _, after = run(host, gen(load=LoadOptions(n_ctx=2048), sampling=SamplingOptions(max_tokens=2, ignore_eos=True)))
    assert after.completion_tokens == 2  # the model is free again


def test_abandoned_stream_is_cancelled(host: Inferno) -> None:
    async def go() -> Done:
        endless = SamplingOptions(max_tokens=-1, ignore_eos=True)
        handle = host.engine.submit(gen(sampling=endless, load=LoadOptions(n_ctx=2048)))
        async for _ in handle:
            break  # the consumer leaves, as a disconnected HTTP client does
        follow = await host.engine.submit(gen(load=LoadOptions(n_ctx=2048))).result()
        return follow[-1]

    done = asyncio.run(go())
    assert done.completion_tokens == 8


def test_full_queue_is_busy(home: Path, tiny_gguf: Path) -> None:
    # one slot: the second request waits whatever the timing (with free slots it could start at once)
    host = make_host(home, tiny_gguf, INFERNO_MAX_QUEUE="1", INFERNO_NUM_PARALLEL="1")
    # no limit and a context that shifts when full: it runs until cancelled (a fast model could finish 2048 tokens
    # before the third request, which would then find the queue's place free again)
    long = gen(sampling=SamplingOptions(max_tokens=-1, ignore_eos=True), load=LoadOptions(n_ctx=2048), shift=True)
    handles = []
    try:
        first = host.engine.submit(long)
        next(iter(first))  # running
        handles.append(first)
        handles.append(host.engine.submit(long))  # waiting: the queue's one place
        with pytest.raises(BusyError, match="server busy"):
            host.engine.submit(long)
    finally:
        for h in handles:
            h.cancel()
        host.engine.close()


def test_stop_strings_end_the_answer(host: Inferno) -> None:
    text, _ = run(host, gen(sampling=SamplingOptions(max_tokens=40, seed=5)))
    assert len(text) > 2
    stop = text[1:3]
    cut, done = run(host, gen(sampling=SamplingOptions(max_tokens=40, seed=5, stop=[stop])))
    assert done.reason == "stop" and stop not in cut and text.startswith(cut)


def test_chat_uses_the_gguf_template(host: Inferno) -> None:
    req = GenerateRequest(model="tiny", messages=[Message(role="user", content="hi")],
                          sampling=SamplingOptions(max_tokens=3))
    _, done = run(host, req)
    expected = host.engine.tokenize(TokenizeRequest(model="tiny", text="<|user|>hi\n<|assistant|>"))
    tokens = list(expected)[-1]
    assert isinstance(tokens, Tokens)
    assert done.prompt_tokens == len(tokens.tokens) + 1  # + BOS


def test_tokenize_and_detokenize(host: Inferno) -> None:
    out = list(host.engine.tokenize(TokenizeRequest(model="tiny", text="héllo")))[-1]
    assert isinstance(out, Tokens) and out.tokens
    back = list(host.engine.tokenize(TokenizeRequest(model="tiny", tokens=out.tokens)))[-1]
    assert isinstance(back, Tokens) and back.text.endswith("héllo")  # the byte vocabulary spells "▁" too
    with pytest.raises(BadRequestError):
        list(host.engine.tokenize(TokenizeRequest(model="tiny", tokens=[10**9])))


def test_corrupt_model_file_is_a_clear_load_error(host: Inferno, tmp_path: Path, tiny_gguf: Path) -> None:
    broken = tmp_path / "broken.gguf"
    data = tiny_gguf.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    host.store.add("broken", broken, source="test")
    with pytest.raises(ModelLoadError) as info:  # not a crash, not "not found"
        run(host, gen(model="broken"))
    assert "broken" in str(info.value)
