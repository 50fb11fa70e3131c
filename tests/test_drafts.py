"""A model's own draft model (inferno/drafts.py): set by `inferno create --draft` and Ollama's /api/create
`draft`, checked against the weights it drafts for, confined to the store, and used by that model's runner in
place of the server's --draft (here under INFERNO_SPECULATIVE=draft, where a model without any draft model
cannot load at all, so the tests fail when the model's own draft does not reach its runner).

The tiny synthetic llama drafts for itself; a vocabulary of 23 pieces cannot (its size is off by more than
llama.cpp's slack, seen in the headers); one of 259 other pieces has the right size and is refused by llama.cpp's
token-by-token check when the runner loads it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from inferno.config import load_settings
from inferno.engine.types import Done, GenerateRequest, SamplingOptions
from inferno.errors import InfernoError
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_gguf

from .conftest import Server, start_server, stop_server

SMALL_VOCAB = [chr(c) for c in range(ord("a"), ord("a") + 20)]  # 3 + 20 tokens against the tiny model's 259
OTHER_VOCAB = [f"w{i}" for i in range(256)]  # as many tokens as the tiny model, other texts


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("drafts")
    return {"small": write_tiny_gguf(d / "small-vocab.gguf", pieces=SMALL_VOCAB),
            "other": write_tiny_gguf(d / "other-vocab.gguf", seed=3, pieces=OTHER_VOCAB)}


def store_with(home: Path, tiny_gguf: Path, ggufs: dict[str, Path], mode: str = "draft") -> Inferno:
    h = Inferno(load_settings({"INFERNO_HOME": str(home), "INFERNO_SPECULATIVE": mode}))
    h.import_file(tiny_gguf, "tiny", source="test")
    h.import_file(ggufs["small"], "small", source="test")
    h.import_file(ggufs["other"], "other", source="test")
    return h


def generate(host: Inferno, model: str) -> Done:
    req = GenerateRequest(model=model, prompt="The river runs",
                          sampling=SamplingOptions(temperature=0, max_tokens=24, ignore_eos=True))
    done = list(host.engine.submit(req))[-1]
    assert isinstance(done, Done), done
    return done


def test_own_draft_model_drafts_in_its_runner(tmp_path: Path, tiny_gguf: Path, ggufs: dict[str, Path]) -> None:
    host = store_with(tmp_path / "home", tiny_gguf, ggufs)
    try:
        host.store.copy("tiny", "drafted")
        host.set_draft("drafted", "tiny")
        done = generate(host, "drafted")
        assert done.completion_tokens == 24 and done.draft_n > 0  # drafted by its own draft model
        with pytest.raises(InfernoError, match="needs a draft model"):  # the same weights without one
            generate(host, "tiny")
        # llama.cpp's own check, at load: as many tokens as the tiny model, other texts
        host.store.copy("tiny", "mismatched")
        host.set_draft("mismatched", "other")
        with pytest.raises(InfernoError, match=r"cannot draft for mismatched.*token 5 differs"):
            generate(host, "mismatched")
        # the draft model removed from the store since: said at load under `draft`
        host.store.copy("tiny", "scratch")
        host.set_draft("drafted", "scratch")
        host.store.remove("scratch")
        host.engine.unload("drafted")
        with pytest.raises(InfernoError, match="draft model scratch of drafted is not in the store"):
            generate(host, "drafted")
    finally:
        host.engine.close()


def test_a_removed_draft_model_under_auto_drafts_as_if_none(tmp_path: Path, tiny_gguf: Path,
                                                           ggufs: dict[str, Path]) -> None:
    host = store_with(tmp_path / "home", tiny_gguf, ggufs, mode="auto")
    try:
        host.store.copy("tiny", "scratch")
        host.set_draft("tiny", "scratch")
        host.store.remove("scratch")
        assert generate(host, "tiny").completion_tokens == 24
    finally:
        host.engine.close()


def test_cli_create_with_a_draft(home: Path, host: Inferno, ggufs: dict[str, Path]) -> None:
    from inferno.cli import build_cli

    host.import_file(ggufs["small"], "small", source="test")
    cli = build_cli()
    result = CliRunner().invoke(cli, ["create", "fast", "--from", "tiny", "--draft", "tiny"])
    assert result.exit_code == 0, result.output
    assert host.lookup("fast").draft == "tiny" and host.lookup("tiny").draft is None
    result = CliRunner().invoke(cli, ["create", "tiny", "--from", "tiny", "--draft", "tiny"])  # in place
    assert result.exit_code == 0 and host.lookup("tiny").draft == "tiny", result.output
    for draft, says in [("small", "vocabulary sizes differ"), ("../../etc/passwd", "invalid"),
                        ("nosuch", "not found")]:
        result = CliRunner().invoke(cli, ["create", "refused", "--from", "tiny", "--draft", draft])
        assert result.exit_code != 0 and says in result.output, result.output
        assert not host.store.exists("refused")  # checked before anything was written


# through a real server: Ollama's /api/create and /api/show ---------------------------------------------------


@pytest.fixture(scope="module")
def draft_server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, ggufs: dict[str, Path]
                 ) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("draft-home")
    store_with(home, tiny_gguf, ggufs)
    s = start_server(home, {"INFERNO_SPECULATIVE": "draft"})
    yield s
    stop_server(s)


def test_ollama_create_with_a_draft(draft_server: Server) -> None:
    url = draft_server.url
    r = httpx.post(url + "/api/create", json={"model": "quick", "from": "tiny", "draft": "tiny", "stream": False})
    assert r.status_code == 200, r.text
    shown = httpx.post(url + "/api/show", json={"model": "quick"}).json()
    assert shown["draft"] == "tiny:latest" and "draft model (speculative decoding" in shown["modelfile"]
    body = {"model": "quick", "prompt": "The river runs", "stream": False,
            "options": {"temperature": 0, "num_predict": 16}}
    r = httpx.post(url + "/v1/completions", json={"model": "quick", "prompt": "The river runs", "max_tokens": 16,
                                                  "temperature": 0, "ignore_eos": True}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["timings"]["draft_n"] > 0  # drafted by its own draft model
    r = httpx.post(url + "/api/generate", json={**body, "model": "tiny"}, timeout=120)
    assert r.status_code >= 500 and "needs a draft model" in r.text  # the server has no --draft


@pytest.mark.parametrize(("draft", "status", "says"), [
    ("small", 400, "vocabulary sizes differ"), ("../../../etc/passwd", 400, "invalid"),
    ("nosuch", 404, "not found"), ("/etc/passwd", 400, "invalid")])
def test_bad_drafts_are_refused(draft_server: Server, draft: str, status: int, says: str) -> None:
    url = draft_server.url
    r = httpx.post(url + "/api/create", json={"model": "refused", "from": "tiny", "draft": draft, "stream": False})
    assert r.status_code == status and says in r.text, r.text
    assert httpx.post(url + "/api/show", json={"model": "refused"}).status_code == 404
