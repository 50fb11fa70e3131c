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
