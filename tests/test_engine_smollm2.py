"""Generation that must make sense: SmolLM2-135M-Instruct on real llama.cpp."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from inferno.engine.types import (
    Done,
    Embeddings,
    EmbedRequest,
    GenerateRequest,
    Message,
    SamplingOptions,
    TextDelta,
    Tool,
    ToolCalls,
    ToolChoice,
)
from inferno.errors import BadRequestError
from inferno.host import Inferno

GREEDY = SamplingOptions(temperature=0, max_tokens=60)
ROOMY = SamplingOptions(temperature=0, max_tokens=400)  # JSON that stops is whole, never cut by max_tokens


def chat(host: Inferno, text: str, **kw: object) -> tuple[str, list[object], Done]:
    messages = kw.pop("messages", [Message(role="user", content=text)])
    events = list(host.engine.submit(GenerateRequest(model="smollm2", messages=messages,  # type: ignore
                                                     sampling=kw.pop("sampling", GREEDY), **kw)))  # type: ignore
    done = events[-1]
    assert isinstance(done, Done)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events, done


def test_chat_template_gives_a_sensible_answer(smol_host: Inferno) -> None:
    text, _, done = chat(smol_host, "Name three primary colours")
    assert done.reason == "stop"
    assert sum(c in text.lower() for c in ("red", "blue", "yellow", "green")) >= 2
    assert "<|im_end|>" not in text and "<|im_start|>" not in text


def test_json_schema_answer_validates(smol_host: Inferno) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    text, _, done = chat(smol_host, "Describe a person as JSON with a name and an age.", format=schema,
                         sampling=ROOMY)
    assert done.reason == "stop", text
    value = json.loads(text)
    assert set(value) == {"name", "age"} and isinstance(value["name"], str) and isinstance(value["age"], int)


def test_json_mode_gives_json(smol_host: Inferno) -> None:
    text, _, done = chat(smol_host, "List two fruits as JSON.", format="json", sampling=ROOMY)
    assert done.reason == "stop", text
    json.loads(text)


def test_invalid_schema_is_a_bad_request(smol_host: Inferno) -> None:
    with pytest.raises(BadRequestError):
        chat(smol_host, "x", format={"type": "no-such-type"})


def test_forced_tool_call_parses(smol_host: Inferno) -> None:
    tools = [Tool(name="get_weather", description="Weather in a city",
                  parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
             Tool(name="add", parameters={"type": "object", "properties": {"a": {"type": "number"}}})]
    text, events, done = chat(smol_host, "What is the weather in Paris?", tools=tools,
                              tool_choice=ToolChoice(mode="function", name="get_weather"))
    calls = [c for e in events if isinstance(e, ToolCalls) for c in e.calls]
    assert done.reason == "tool_calls" and len(calls) == 1
    assert calls[0].name == "get_weather" and isinstance(calls[0].arguments.get("city"), str)
    assert text == ""


def test_embeddings_of_similar_sentences_are_closer(smol_host: Inferno) -> None:
    out = list(smol_host.engine.embed(EmbedRequest(model="smollm2", inputs=[
        "The cat sits on the mat.", "A cat is sitting on a mat.", "Quarterly earnings beat expectations."])))
    emb = out[-1]
    assert isinstance(emb, Embeddings) and len(emb.vectors) == 3 and emb.prompt_tokens > 0
    a, b, c = emb.vectors
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-6) for v in emb.vectors)

    def cos(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True))

    assert cos(a, b) > cos(a, c) and cos(a, b) > cos(b, c)
    short = list(smol_host.engine.embed(EmbedRequest(model="smollm2", inputs=["x"], dimensions=64)))[-1]
    assert isinstance(short, Embeddings) and len(short.vectors[0]) == 64


def test_chat_after_embeddings_still_works(smol_host: Inferno) -> None:
    list(smol_host.engine.embed(EmbedRequest(model="smollm2", inputs=["warm up"])))
    text, _, _ = chat(smol_host, "Name three primary colours")
    assert "red" in text.lower() or "blue" in text.lower()


def test_conversation_reuses_the_cached_prefix(smol_host: Inferno) -> None:
    system = "You are a marine biologist. " + " ".join(f"Rule {i}: answer briefly and exactly." for i in range(20))
    history: list[Message] = [Message(role="system", content=system)]
    prompts = []
    for turn in range(4):
        history.append(Message(role="user", content=f"Tell me fact number {turn + 1} about the sea."))
        text, _, done = chat(smol_host, "", messages=list(history), sampling=SamplingOptions(temperature=0,
                                                                                           max_tokens=20))
        history.append(Message(role="assistant", content=text))
        prompts.append(done)
    for before, after in itertools.pairwise(prompts):
        # everything up to the end of the previous prompt's last message long enough to end a chunk (a whole
        # answer, or the question: inferno.engine.slots.chunk_ends) was in the KV cache, evaluated as a cold run
        # cuts it; what follows (a short question, the assistant header) is evaluated again
        assert before.prompt_tokens - 24 < after.cached_tokens < before.prompt_tokens


def test_logprobs_are_the_samplers_distribution(smol_host: Inferno) -> None:
    from inferno.engine.types import ScoreRequest, Scores

    req = GenerateRequest(model="smollm2", prompt="The capital of France is", logprobs=3,
                          sampling=SamplingOptions(temperature=0, max_tokens=1))
    delta = next(e for e in smol_host.engine.submit(req) if isinstance(e, TextDelta))
    entry = (delta.logprobs or [])[0]
    assert entry["token"] == " Paris" and entry["top_logprobs"][0]["token"] == " Paris"  # greedy = top-1
    assert -1.5 < entry["logprob"] < 0
    scored = list(smol_host.engine.score(ScoreRequest(model="smollm2", text="The capital of France is Paris")))[-1]
    assert isinstance(scored, Scores)
    assert abs(scored.logprobs[-1] - entry["logprob"]) < 0.05  # the same number, computed two ways


def test_perplexity_separates_text_from_word_salad(smol_host: Inferno) -> None:
    from inferno.engine.types import ScoreRequest, Scores

    def ppl(text: str) -> float:
        out = list(smol_host.engine.score(ScoreRequest(model="smollm2", text=text)))[-1]
        assert isinstance(out, Scores)
        return out.perplexity

    assert ppl("The cat sat on the mat and looked out of the window at the rain.") * 10 < \
        ppl("window rain mat the of cat looked sat out the at and on the.")
