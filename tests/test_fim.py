"""Fill-in-the-middle from a model's FIM tokens: the prompt layout token by token on synthetic GGUFs that have
them (the simple and the repo-level layout), then Ollama's `suffix`, OpenAI's `suffix` and llama-server's
/infill through a real server, and the 400 each dialect gives for a model without FIM tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from openai import OpenAI

from inferno.config import load_settings
from inferno.engine.types import GenerateRequest, InfillChunk, TokenizeRequest
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_gguf

from .conftest import Server, start_server, stop_server

# token ids write_tiny_gguf gives the FIM tokens: after <unk> <s> </s> and the 256 bytes, in the order asked
PRE, SUF, MID, REP, SEP = 259, 260, 261, 262, 263
BOS = 1
PREFIX, SUFFIX = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def fim_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fim")
    return {"coder": write_tiny_gguf(d / "coder.gguf", fim=("pre", "suf", "mid")),
            "repo": write_tiny_gguf(d / "repo.gguf", fim=("pre", "suf", "mid", "rep", "sep", "pad"))}


@pytest.fixture
def fim_host(host: Inferno, fim_paths: dict[str, Path]) -> Inferno:
    for name, path in fim_paths.items():
        host.import_file(path, name, source="test")
    return host


def text_tokens(host: Inferno, text: str) -> list[int]:
    """The model's tokens for a piece of text on its own (no BOS, special tokens not parsed)."""
    return list(host.engine.tokenize(TokenizeRequest(model="coder", text=text)))[-1].tokens


def prompt_of(host: Inferno, model: str, **fields: Any) -> list[int]:
    req = GenerateRequest(model=model, **fields)
    return list(host.engine.tokenize(TokenizeRequest(model=model, prompt_of=req)))[-1].tokens


def test_simple_layout_token_by_token(fim_host: Inferno) -> None:
    got = prompt_of(fim_host, "coder", prompt=PREFIX, suffix=SUFFIX)
    assert got == [BOS, PRE, *text_tokens(fim_host, PREFIX), SUF, *text_tokens(fim_host, SUFFIX), MID]
    # an empty suffix is still fill-in-the-middle; /infill's prompt follows the prefix, tokenized on its own
    got = prompt_of(fim_host, "coder", prompt=PREFIX, suffix="", infill_prompt="a +")
    assert got == [BOS, PRE, *text_tokens(fim_host, PREFIX), *text_tokens(fim_host, "a +"), SUF, MID]


def test_code_spelling_fim_tokens_cannot_forge_the_layout(fim_host: Inferno) -> None:
    got = prompt_of(fim_host, "coder", prompt="x = '<|fim_middle|>'", suffix="")
    assert got.count(MID) == 1 and got[-1] == MID


def test_extra_chunks_without_file_separators(fim_host: Inferno) -> None:
    extra = [InfillChunk(text="import os", filename="util.py")]
    got = prompt_of(fim_host, "coder", prompt=PREFIX, suffix=SUFFIX, infill_extra=extra)
    snippet = text_tokens(fim_host, "\n\n--- snippet ---\n\n") + text_tokens(fim_host, "import os")
    assert got == [BOS, *snippet, PRE, *text_tokens(fim_host, PREFIX), SUF, *text_tokens(fim_host, SUFFIX), MID]


def test_repo_level_layout_token_by_token(fim_host: Inferno) -> None:
    extra = [InfillChunk(text="import os", filename="util.py"), InfillChunk(text="X = 1")]
    got = prompt_of(fim_host, "repo", prompt=PREFIX, suffix=SUFFIX, infill_extra=extra)

    def t(text: str) -> list[int]:
        return text_tokens(fim_host, text)

    assert got == [BOS, REP, *t("myproject\n"), SEP, *t("util.py\n"), *t("import os"), SEP, *t("tmp\n"), *t("X = 1"),
                   SEP, *t("filename\n"), PRE, *t(PREFIX), SUF, *t(SUFFIX), MID]


def test_a_model_without_fim_tokens_is_refused_by_name(fim_host: Inferno) -> None:
    from inferno.errors import BadRequestError

    with pytest.raises(BadRequestError, match=r"tiny.*no FIM tokens"):
        prompt_of(fim_host, "tiny", prompt=PREFIX, suffix=SUFFIX)
    # without a suffix a plain prompt is just that: BOS and its text
    assert prompt_of(fim_host, "tiny", prompt="ab") == [BOS, *text_tokens(fim_host, "ab")]


# through the server ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fim_server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path,
               fim_paths: dict[str, Path]) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("fim-home")
    h = Inferno(load_settings({"INFERNO_HOME": str(home)}))
    h.import_file(tiny_gguf, "tiny", source="test")
    for name, path in fim_paths.items():
        h.import_file(path, name, source="test")
    s = start_server(home)
    yield s
    stop_server(s)


def server_tokens(server: Server, text: str) -> list[int]:
    r = httpx.post(f"{server.url}/inferno/tokenize", json={"model": "coder", "text": text}, timeout=60)
    r.raise_for_status()
    return r.json()["tokens"]


def test_ollama_suffix(fim_server: Server) -> None:
    r = ollama.Client(host=fim_server.url).generate(model="coder", prompt=PREFIX, suffix=SUFFIX,
                                                    options={"temperature": 0, "num_predict": 4})
    layout = [BOS, PRE, *server_tokens(fim_server, PREFIX), SUF, *server_tokens(fim_server, SUFFIX), MID]
    assert r.context is not None and list(r.context[:len(layout)]) == layout  # the context opens with the prompt
    assert r.prompt_eval_count == len(layout)
    client = ollama.Client(host=fim_server.url)
    assert "insert" in (client.show("coder").capabilities or [])
    assert "insert" not in (client.show("tiny").capabilities or [])
    with pytest.raises(ollama.ResponseError) as e:
        client.generate(model="tiny", prompt=PREFIX, suffix=SUFFIX)
    assert e.value.status_code == 400 and "tiny" in e.value.error and "FIM" in e.value.error


def test_openai_suffix(fim_server: Server) -> None:
    client = OpenAI(base_url=f"{fim_server.url}/v1", api_key="unused", max_retries=0)
    r = client.completions.create(model="coder", prompt=PREFIX, suffix=SUFFIX, max_tokens=4, temperature=0)
    layout = [BOS, PRE, *server_tokens(fim_server, PREFIX), SUF, *server_tokens(fim_server, SUFFIX), MID]
    assert r.usage is not None and r.usage.prompt_tokens == len(layout)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt=PREFIX, suffix=SUFFIX, max_tokens=4)
    err = e.value.body
    assert isinstance(err, dict) and err["type"] == "invalid_request_error" and "tiny" in err["message"]


def test_llama_server_infill(fim_server: Server) -> None:
    body = {"model": "repo", "input_prefix": PREFIX, "input_suffix": SUFFIX, "prompt": "a",
            "input_extra": [{"filename": "util.py", "text": "import os"}], "n_predict": 4, "temperature": 0,
            "ignore_eos": True}
    r = httpx.post(f"{fim_server.url}/infill", json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()

    def t(text: str) -> list[int]:
        return server_tokens(fim_server, text)

    layout = [BOS, REP, *t("myproject\n"), SEP, *t("util.py\n"), *t("import os"), SEP, *t("filename\n"), PRE,
              *t(PREFIX), *t("a"), SUF, *t(SUFFIX), MID]
    assert out["tokens_evaluated"] == len(layout) and out["stop"] is True
    assert out["stop_type"] == "limit" and out["tokens_predicted"] == 4  # n_predict and ignore_eos reached it
    # streamed: llama-server's SSE objects, the last one with stop true and the same text
    with httpx.stream("POST", f"{fim_server.url}/infill", json={**body, "stream": True}, timeout=60) as s:
        events = [json.loads(e[6:]) for e in "".join(s.iter_text()).split("\n\n") if e]
    assert events[-1]["stop"] is True and all(not e["stop"] for e in events[:-1])
    assert "".join(e["content"] for e in events) == out["content"]


@pytest.mark.parametrize("change", [
    {"model": "tiny"},  # no FIM tokens
    {"input_extra": [{"filename": "a.py"}]},  # a chunk without its text
    {"input_extra": [{"text": "x", "filename": 5}]},
    {"input_extra": "not a list"},
    {"input_prefix": 5},
    {"n_predict": -2},
    {"top_p": 1.5},  # the core's sampler ranges, in the body's flat fields
    {"repeat_last_n": -2},
])
def test_infill_400s_in_llama_servers_shape(fim_server: Server, change: dict[str, Any]) -> None:
    body = {"model": "coder", "input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 2, **change}
    r = httpx.post(f"{fim_server.url}/infill", json=body, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == 400 and err["type"] == "invalid_request_error" and err["message"]
    if change.get("model") == "tiny":
        assert "tiny" in err["message"] and "FIM" in err["message"]


def test_unknown_model_is_404(fim_server: Server) -> None:
    r = httpx.post(f"{fim_server.url}/infill", json={"model": "nope", "input_prefix": "x"}, timeout=60)
    assert r.status_code == 404 and r.json()["error"]["code"] == 404



def test_a_fim_prompt_too_long_is_cut_part_by_part(fim_server: Server) -> None:
    """Past the context (2,048 here) a FIM prompt is cut as llama-server's format_infill cuts it: the prefix's
    last 3/4 of a batch (384 of 512), the suffix's first quarter less two; the layout stays whole."""
    prefix, suffix = "a" * 3000, "b" * 500
    client = ollama.Client(host=fim_server.url)
    r = client.generate(model="coder", prompt=prefix, suffix=suffix, options={"temperature": 0, "num_predict": 2})
    p, s = server_tokens(fim_server, prefix), server_tokens(fim_server, suffix)
    layout = [BOS, PRE, *p[-384:], SUF, *s[:126], MID]
    assert r.context is not None and list(r.context[:len(layout)]) == layout
    # /infill too, and it says so; where truncation is off (OpenAI, Ollama's truncate: false) it is a 400
    out = httpx.post(f"{fim_server.url}/infill", json={"model": "coder", "input_prefix": prefix,
                                                       "input_suffix": suffix, "n_predict": 2}, timeout=60).json()
    assert out["tokens_evaluated"] == len(layout) and out["truncated"] is True
    refused = httpx.post(f"{fim_server.url}/api/generate", json={  # the SDK has no truncate on generate
        "model": "coder", "prompt": prefix, "suffix": suffix, "truncate": False, "stream": False}, timeout=60)
    assert refused.status_code == 400 and "context window" in refused.json()["error"]
    with pytest.raises(openai.BadRequestError):
        OpenAI(base_url=f"{fim_server.url}/v1", api_key="unused", max_retries=0).completions.create(
            model="coder", prompt=prefix, suffix=suffix, max_tokens=2)
