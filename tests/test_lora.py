"""LoRA adapters on real llama.cpp: a synthetic adapter GGUF for the tiny llama (write_tiny_lora) changes its
greedy text, scale 0 is the base; adapter models share their base's runner and weights; sequences of different
adapter sets decoded together each answer as alone and each get a token every step; then through a real
server: Ollama /api/create with adapters, `serve --lora`, llama-server's /lora-adapters and per-request lora
with the official clients, bad adapters as 4xx, and names that try to leave the store refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import ollama
import openai
import pytest
from click.testing import CliRunner
from openai import OpenAI

from inferno.config import load_settings
from inferno.engine.batcher import Batcher
from inferno.engine.model import Model
from inferno.engine.protocol import EngineSettings
from inferno.engine.sequence import Sequence
from inferno.engine.types import Done, GenerateRequest, LoadOptions, LoraAdapter, SamplingOptions, TextDelta
from inferno.errors import BadRequestError
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_lora

from .conftest import Server, start_server, stop_server

PROMPT = "The river runs"


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("lora")
    return {"a": write_tiny_lora(d / "a.gguf", seed=1), "b": write_tiny_lora(d / "b.gguf", seed=2),
            "narrow": write_tiny_lora(d / "narrow.gguf", n_embd=32),  # a llama adapter of the wrong shape
            "qwen": write_tiny_lora(d / "qwen.gguf", arch="qwen3")}


def req(model: str, tokens: int = 24, prompt: str = PROMPT, **kw: Any) -> GenerateRequest:
    return GenerateRequest(model=model, prompt=prompt, sampling=SamplingOptions(temperature=0, max_tokens=tokens,
                                                                                 ignore_eos=True), **kw)


def text(host: Inferno, r: GenerateRequest) -> str:
    events = list(host.engine.submit(r))
    assert isinstance(events[-1], Done), events[-1]
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.fixture
def lora_host(host: Inferno, loras: dict[str, Path]) -> Inferno:
    host.create_adapter_model("tuned", "tiny", [(loras["a"], 1.0)])
    host.create_adapter_model("tuned0", "tiny", [(loras["a"], 0.0)])
    host.create_adapter_model("other", "tiny", [(loras["b"], 1.0)])
    return host


def test_an_adapter_changes_greedy_text_and_scale_zero_is_the_base(lora_host: Inferno) -> None:
    base = text(lora_host, req("tiny"))
    tuned = text(lora_host, req("tuned"))
    assert tuned != base
    assert text(lora_host, req("tuned0")) == base
    assert text(lora_host, req("other")) not in (base, tuned)
    assert text(lora_host, req("tuned")) == tuned  # the adapter stays loaded and applied the same
    # every adapter model ran on the base's runner: the weights loaded once
    assert [m.name for m in lora_host.engine.loaded()] == ["tiny"]


def test_adapters_apply_with_the_unified_cache_too(home: Path, tiny_gguf: Path, loras: dict[str, Path]) -> None:
    h = Inferno(load_settings({"INFERNO_HOME": str(home), "INFERNO_KV_UNIFIED": "1"}))
    try:
        h.import_file(tiny_gguf, "tiny", source="test")
        h.create_adapter_model("tuned", "tiny", [(loras["a"], 1.0)])
        base, tuned = text(h, req("tiny")), text(h, req("tuned"))
        assert tuned != base and text(h, req("tiny")) == base
    finally:
        h.engine.close()


def test_a_cached_prefix_is_reused_only_with_the_same_adapters(lora_host: Inferno) -> None:
    long = "The river runs down to the sea, past the mill and the old stone bridge. " * 4  # > two 64-token chunks
    cold = {m: text(lora_host, req(m, prompt=long)) for m in ("tuned", "tiny")}
    for first, then in (("tiny", "tuned"), ("tuned", "tiny")):
        assert lora_host.engine.unload("tiny")  # a fresh runner: nothing cached
        text(lora_host, req(first, prompt=long))
        # the same prompt with the other set: the cached cells were computed with the other weights
        assert text(lora_host, req(then, prompt=long)) == cold[then]
    events = list(lora_host.engine.submit(req("tiny", prompt=long)))
    assert isinstance(events[-1], Done) and events[-1].cached_tokens > 0  # its own set's cells it does reuse


def test_adapter_models_stack_and_are_listed_with_their_base(lora_host: Inferno, loras: dict[str, Path]) -> None:
    info = lora_host.create_adapter_model("both", "tuned", [(loras["b"], 0.5)])
    assert info.base == "tiny" and [a["scale"] for a in info.adapters or []] == [1.0, 0.5]
    assert text(lora_host, req("both")) not in (text(lora_host, req("tuned")), text(lora_host, req("tiny")))


def test_a_pulled_adapter_attaches_by_name_and_is_no_model(lora_host: Inferno, loras: dict[str, Path]) -> None:
    lora_host.import_file(loras["a"], "my-lora", source="test")  # what `inferno pull` of an adapter GGUF stores
    assert (lora_host.lookup("my-lora").model_extra or {}).get("kind") == "adapter"
    with pytest.raises(BadRequestError, match="is a LoRA adapter, not a model"):
        text(lora_host, req("my-lora"))
    lora_host.create_adapter_model("by-name", "tiny", [(Path("my-lora"), 1.0)])
    assert text(lora_host, req("by-name")) == text(lora_host, req("tuned"))
    with pytest.raises(BadRequestError, match="not a LoRA adapter"):
        lora_host.create_adapter_model("nope", "tiny", [(Path("tuned"), 1.0)])
    # a copy keeps its adapters
    lora_host.store.copy("tuned", "tuned-copy")
    assert text(lora_host, req("tuned-copy")) == text(lora_host, req("tuned"))


def test_different_adapter_sets_decoded_together_each_answer_as_alone(lora_host: Inferno,
                                                                      loras: dict[str, Path]) -> None:
    resolved = cast(Any, lora_host.engine).resolver.resolve("tiny")
    model = Model(resolved, LoadOptions(n_ctx=512), EngineSettings(num_parallel=3))
    batcher = Batcher(model, 3)
    sets = [[], [LoraAdapter(path=str(loras["a"]))], [LoraAdapter(path=str(loras["b"]), scale=0.7)]]
    try:
        def run(adapter_sets: list[list[LoraAdapter]]) -> list[list[int]]:
            seqs = [Sequence(model, req("tiny", 40, adapters=s), lambda e: None, lambda: False)
                    for s in adapter_sets]
            for s in seqs:
                model.adapters.load(s.lora)
                batcher.enqueue(s, lambda: None)
            while any(not s.done for s in seqs):
                before = [len(s.generated) for s in seqs]
                batcher.step()
                grown = [len(s.generated) - b for s, b in zip(seqs, before, strict=True)]
                # fair: once generating, every sequence gets a token every step, whatever its adapter set
                assert all(g == 1 for g, s, b in zip(grown, seqs, before, strict=True) if b and not s.done)
            return [list(s.generated) for s in seqs]

        alone = [run([s])[0] for s in sets]
        assert len({tuple(a) for a in alone}) == 3  # three different answers
        assert run(sets) == alone
    finally:
        batcher.close()
        model.close()


def test_bad_adapters_are_refused(lora_host: Inferno, loras: dict[str, Path], tiny_gguf: Path) -> None:
    with pytest.raises(BadRequestError, match="for qwen3 models"):
        lora_host.create_adapter_model("bad", "tiny", [(loras["qwen"], 1.0)])
    with pytest.raises(BadRequestError, match="not a LoRA adapter"):
        lora_host.create_adapter_model("bad", "tiny", [(tiny_gguf, 1.0)])
    with pytest.raises(BadRequestError, match="no such adapter"):
        lora_host.create_adapter_model("bad", "tiny", [(loras["a"].with_name("nope.gguf"), 1.0)])
    # the right architecture but the wrong shapes: llama.cpp refuses it when it loads it, a 400 for the request
    lora_host.create_adapter_model("narrow", "tiny", [(loras["narrow"], 1.0)])
    with pytest.raises(BadRequestError, match="incorrect shape"):
        text(lora_host, req("narrow"))
    # an adapter file gone from the store
    lora_host.store.adapter_files(lora_host.lookup("tuned"))[0][0].unlink()
    with pytest.raises(BadRequestError, match="missing"):
        text(lora_host, req("tuned"))
    assert text(lora_host, req("other"))  # the runner still serves the others


def test_cli_create(home: Path, host: Inferno, loras: dict[str, Path]) -> None:
    from inferno.cli import build_cli

    result = CliRunner().invoke(build_cli(), ["create", "tuned", "--from", "tiny", "--adapter", f"{loras['a']}:0.5"])
    assert result.exit_code == 0, result.output
    info = host.lookup("tuned")
    assert info.base == "tiny" and info.adapters == [{"filename": "a.gguf", "scale": 0.5}]
    result = CliRunner().invoke(build_cli(), ["create", "x", "--from", "tiny", "--adapter", str(loras["qwen"])])
    assert result.exit_code != 0 and "qwen3" in result.output


# through a real server --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, loras: dict[str, Path]) -> Iterator[Server]:
    """`serve tiny --lora a.gguf:1`, with the same weights as `plain` (its own runner) to compare with."""
    home = tmp_path_factory.mktemp("lora-home")
    h = Inferno(load_settings({"INFERNO_HOME": str(home)}))
    h.import_file(tiny_gguf, "tiny", source="test")
    h.import_file(tiny_gguf, "plain", source="test")
    s = start_server(home, args=("tiny", "--lora", f"{loras['a']}:1", "--lora", f"{loras['b']}:0"))
    yield s
    stop_server(s)


def completion(server: Server, model: str, **extra: Any) -> str:
    client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    r = client.completions.create(model=model, prompt=PROMPT, temperature=0, max_tokens=24,
                                  extra_body={"ignore_eos": True, **extra})
    return r.choices[0].text


def test_serve_lora_lists_scales_and_per_request_lora(lora_server: Server, loras: dict[str, Path]) -> None:
    listed = httpx.get(lora_server.url + "/lora-adapters").json()
    assert listed == [{"id": 0, "path": str(loras["a"].resolve()), "scale": 1.0},
                      {"id": 1, "path": str(loras["b"].resolve()), "scale": 0.0}]
    base = completion(lora_server, "plain")
    served = completion(lora_server, "tiny")
    assert served != base
    # per request: only the listed ids, at their scales
    assert completion(lora_server, "tiny", lora=[{"id": 0, "scale": 0}]) == base
    only_b = completion(lora_server, "tiny", lora=[{"id": 1, "scale": 1}])
    assert only_b not in (base, served)
    r = httpx.post(lora_server.url + "/infill", json={"model": "tiny", "input_prefix": PROMPT, "n_predict": 4,
                                                      "lora": [{"id": 9, "scale": 1}]})
    assert r.status_code == 400 and "lora id 9" in r.json()["error"]["message"]
    # globally: POST sets the listed ids' scales, the others 0
    try:
        r = httpx.post(lora_server.url + "/lora-adapters", json=[{"id": 1, "scale": 1.0}])
        assert r.status_code == 200 and [a["scale"] for a in r.json()] == [0.0, 1.0]
        assert completion(lora_server, "tiny") == only_b
    finally:
        httpx.post(lora_server.url + "/lora-adapters", json=[{"id": 0, "scale": 1.0}])
    assert completion(lora_server, "tiny") == served


@pytest.mark.parametrize("body", [[{"id": 5, "scale": 1}], [{"id": 0}], {"id": 0, "scale": 1},
                                  [{"id": 0, "scale": "x"}], [{"id": -1, "scale": 1}]])
def test_bad_lora_bodies_are_400s(lora_server: Server, body: Any) -> None:
    r = httpx.post(lora_server.url + "/lora-adapters", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == 400, r.text
    client = OpenAI(base_url=lora_server.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:  # plain has no served adapters to choose from
        client.completions.create(model="plain", prompt="x", max_tokens=2, extra_body={"lora": [{"id": 0,
                                                                                               "scale": 1}]})
    assert e.value.status_code == 400 and "lora" in str(e.value)


def test_ollama_create_with_adapters(lora_server: Server, loras: dict[str, Path]) -> None:
    client = ollama.Client(host=lora_server.url)
    digest = client.create_blob(loras["b"])
    client.create(model="tuned-b", from_="plain", adapters={"b.gguf": digest})
    out = client.generate(model="tuned-b", prompt=PROMPT, raw=True, options={"temperature": 0, "num_predict": 24})
    base = client.generate(model="plain", prompt=PROMPT, raw=True, options={"temperature": 0, "num_predict": 24})
    assert out.response != base.response
    # tuned-b runs on plain's runner: no second load of the weights
    names = [m.model for m in client.ps().models]
    assert "tuned-b:latest" not in names and "plain:latest" in names
    # /api/show tells what it is made of: its base, and an ADAPTER line per adapter (as `ollama show --modelfile`)
    shown = client.show("tuned-b")
    adapter_lines = [line for line in (shown.modelfile or "").splitlines() if line.startswith("ADAPTER ")]
    assert len(adapter_lines) == 1 and adapter_lines[0].endswith("b.gguf"), shown.modelfile
    assert Path(adapter_lines[0].removeprefix("ADAPTER ")).is_file()
    assert shown.details is not None and shown.details.parent_model == "plain"
    assert "completion" in (shown.capabilities or [])
    assert "ADAPTER" not in (client.show("plain").modelfile or "")
    # an adapter that is not one, for its base's architecture
    qwen = client.create_blob(loras["qwen"])
    with pytest.raises(ollama.ResponseError) as e:
        client.create(model="bad", from_="plain", adapters={"qwen.gguf": qwen})
    assert e.value.status_code == 400 and "qwen3" in str(e.value)


@pytest.mark.parametrize("adapters", [{"../../../escape.gguf": "DIGEST"}, {"sub/dir.gguf": "DIGEST"},
                                      {"ok.gguf": "sha256:../../etc/passwd"}, {"..": "DIGEST"}])
def test_adapter_names_that_try_to_leave_the_store_are_refused(lora_server: Server, loras: dict[str, Path],
                                                               adapters: dict[str, str]) -> None:
    digest = ollama.Client(host=lora_server.url).create_blob(loras["a"])
    body = {"model": "evil", "from": "plain", "stream": False,
            "adapters": {k: v.replace("DIGEST", digest) for k, v in adapters.items()}}
    r = httpx.post(lora_server.url + "/api/create", json=body)
    assert r.status_code == 400, r.text
    assert not list(lora_server.home.rglob("escape.gguf"))
    assert httpx.post(lora_server.url + "/api/show", json={"model": "evil"}).status_code == 404


def test_a_tampered_adapter_name_in_the_store_is_refused(lora_server: Server, loras: dict[str, Path]) -> None:
    client = ollama.Client(host=lora_server.url)
    client.create(model="tampered", from_="plain", adapters={"a.gguf": client.create_blob(loras["a"])})
    info = lora_server.home / "models" / "tampered" / "info.json"
    data = json.loads(info.read_text())
    data["adapters"][0]["filename"] = str(loras["b"])  # a real adapter, outside the model's folder
    info.write_text(json.dumps(data))
    with pytest.raises(ollama.ResponseError) as e:
        client.generate(model="tampered", prompt="x", options={"num_predict": 2})
    assert e.value.status_code == 400 and "adapters" in str(e.value)
