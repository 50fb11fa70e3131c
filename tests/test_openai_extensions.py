"""llama-server's extensions to the OpenAI dialect that client libraries send, against a real `inferno serve`
with the official openai package: json_object with a schema, and logit_bias."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from openai import OpenAI
from pydantic import BaseModel, ConfigDict

from .conftest import Server


class Pet(BaseModel):
    """A typed output a library asks for in json_object mode: fields a free-form JSON answer would not have."""

    model_config = ConfigDict(extra="forbid")

    species: str
    legs: int
    vaccinated: bool


ASK: list[Any] = [{"role": "user", "content": "Describe a dog as JSON."}]


@pytest.fixture(scope="module")
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_json_object_with_schema_constrains_chat(client: OpenAI) -> None:
    fmt: Any = {"type": "json_object", "schema": Pet.model_json_schema()}
    r = client.chat.completions.create(model="smollm2", messages=ASK, response_format=fmt, max_tokens=300,
                                       temperature=0)
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    Pet.model_validate_json(r.choices[0].message.content or "")  # raises when it does not match
    # the same request without the schema is plain JSON mode: JSON, but not this model's (what the schema fixes)
    r = client.chat.completions.create(model="smollm2", messages=ASK, response_format={"type": "json_object"},
                                       max_tokens=300, temperature=0)
    plain = json.loads(r.choices[0].message.content or "")
    assert set(plain) != set(Pet.model_fields), plain


def test_json_object_with_schema_constrains_completions(client: OpenAI) -> None:
    fmt = {"type": "json_object", "schema": Pet.model_json_schema()}
    r = client.completions.create(model="smollm2", prompt="A dog, as JSON:", max_tokens=300, temperature=0,
                                  extra_body={"response_format": fmt})
    assert r.choices[0].finish_reason == "stop", r.choices[0].text
    Pet.model_validate_json(r.choices[0].text)
    # llama-server's top-level json_schema, on completions as on its /completion
    r = client.completions.create(model="smollm2", prompt="A dog, as JSON:", max_tokens=300, temperature=0,
                                  extra_body={"json_schema": Pet.model_json_schema()})
    Pet.model_validate_json(r.choices[0].text)


def test_json_object_with_schema_in_responses(client: OpenAI) -> None:
    text: Any = {"format": {"type": "json_object", "schema": Pet.model_json_schema()}}  # not in the SDK's types
    r = client.responses.create(model="smollm2", input="Describe a dog as JSON.", temperature=0,
                                max_output_tokens=300, text=text)
    Pet.model_validate_json(r.output_text)


@pytest.mark.parametrize("fmt", [
    {"type": "json_schema", "schema": {"type": "object"}},  # a schema belongs in json_schema.schema here
    {"type": "text", "schema": {"type": "object"}},
    {"type": "json_object", "schema": {"type": "bogus"}},
    {"type": "json_object", "schema": "not an object"},
])
def test_bad_schema_formats_are_openai_400s(server: Server, fmt: dict[str, Any]) -> None:
    for path, extra in (("chat/completions", {"messages": ASK}), ("completions", {"prompt": "x"})):
        r = httpx.post(f"{server.url}/v1/{path}", json={"model": "smollm2", "max_tokens": 4,
                                                        "response_format": fmt, **extra}, timeout=60)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"


# logit_bias ---------------------------------------------------------------------------------------------

PROMPT = "The capital of France is"


def token_ids(server: Server, text: str) -> list[int]:
    r = httpx.post(f"{server.url}/inferno/tokenize", json={"model": "smollm2", "text": text}, timeout=60)
    r.raise_for_status()
    return r.json()["tokens"]


def piece(server: Server, tok: int) -> str:
    r = httpx.post(f"{server.url}/inferno/detokenize", json={"model": "smollm2", "tokens": [tok]}, timeout=60)
    r.raise_for_status()
    return r.json()["text"]


def generated(client: OpenAI, **extra: Any) -> list[str]:
    """The greedy completion's tokens, as the pieces logprobs names them."""
    r = client.completions.create(model="smollm2", prompt=PROMPT, max_tokens=12, temperature=0, logprobs=0,
                                  **extra)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.tokens
    return lp.tokens


def test_logit_bias_bans_a_token(server: Server, client: OpenAI) -> None:
    base = generated(client)
    # the greedy answer's first token, by id: the tokenizer's ids of the prompt plus the answer, past the prompt's
    prompt_ids = token_ids(server, PROMPT)
    first = token_ids(server, PROMPT + base[0])[len(prompt_ids)]
    assert piece(server, first) == base[0], (first, base)
    banned = generated(client, logit_bias={str(first): -100})
    assert base[0] not in banned and banned != base, banned
    # per sequence: sent together (they may share a batch), the unbiased request still answers as alone
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        with_bias = pool.submit(generated, client, logit_bias={str(first): -100})
        without = pool.submit(generated, client)
        assert without.result() == base and with_bias.result() == banned
    # chat too, where the same token would come first
    r = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=12, logprobs=True,
                                       messages=[{"role": "user", "content": "Complete: " + PROMPT}],
                                       logit_bias={str(first): -100})
    assert r.choices[0].logprobs and r.choices[0].logprobs.content
    assert base[0] not in [t.token for t in r.choices[0].logprobs.content]


def test_logit_bias_forces_a_token(server: Server, client: OpenAI) -> None:
    base = generated(client)
    ids = token_ids(server, " banana")
    forced = ids[-1]
    word = piece(server, forced)
    assert word not in base
    out = generated(client, logit_bias={str(forced): 100})
    assert word in out, out
    r = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=6,
                                       messages=[{"role": "user", "content": "hi"}], logit_bias={str(forced): 100})
    assert word.strip() in (r.choices[0].message.content or ""), r.choices[0].message.content


@pytest.mark.parametrize("bias", [{"abc": 1}, {"-1": 1}, {"5": 101}, {"5": -100.5}, {"99999999": 5}, {"5": "x"}])
def test_bad_logit_bias_is_an_openai_400(server: Server, bias: dict[str, Any]) -> None:
    for path, extra in (("chat/completions", {"messages": ASK}), ("completions", {"prompt": "x"})):
        r = httpx.post(f"{server.url}/v1/{path}", json={"model": "smollm2", "max_tokens": 2, "logit_bias": bias,
                                                        **extra}, timeout=60)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
        assert err["param"].startswith("logit_bias"), err
