"""The ollama: source against a local stand-in registry (INFERNO_OLLAMA_REGISTRY), and the ollama-local: source
against a synthetic Ollama store (OLLAMA_MODELS): names, layers, resume, corruption, refusals, confinement."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferno.errors import BadRequestError, SourceError
from inferno.host import Inferno
from inferno.sources import resolve
from inferno.store import ModelInfo
from inferno.testing_gguf import write_tiny_gguf, write_tiny_mmproj

from .conftest import wait_for
from .ollama_registry import MANIFEST_TYPE, Model, OllamaRegistry, digest_of

GO_TEMPLATE = ('{{ if .System }}<|system|>{{ .System }}\n{{ end }}{{ range .Messages }}<|{{ .Role }}|>'
               '{{ .Content }}\n{{ end }}<|assistant|>')
PARAMS = json.dumps({"temperature": 0, "stop": ["<|user|>"], "num_predict": 3, "num_ctx": 1024}).encode()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("ollama-files")
    return {"tiny": write_tiny_gguf(d / "a.gguf", seed=1).read_bytes(),
            "big": write_tiny_gguf(d / "big.gguf", seed=3, n_embd=256, n_ff=512).read_bytes(),
            "bare": write_tiny_gguf(d / "bare.gguf", seed=2, chat_template="").read_bytes(),
            "mmproj": write_tiny_mmproj(d / "mmproj.gguf").read_bytes()}


@pytest.fixture
def registry(files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> Iterator[OllamaRegistry]:
    reg = OllamaRegistry()
    reg.models = {
        "library/tiny:1b": Model({"model": files["tiny"], "params": PARAMS, "system": b"You are terse.",
                                  "template": GO_TEMPLATE.encode(), "license": b"Tiny License 1.0"}),
        "library/tiny:latest": Model({"model": files["tiny"]}),
        "acme/big:q4": Model({"model": files["big"]}),
        "library/bare:latest": Model({"model": files["bare"], "template": GO_TEMPLATE.encode()}),
        "library/oddtpl:latest": Model({"model": files["bare"],
                                        "template": b"{{ range $i, $m := .Messages }}{{ $m.Content }}{{ end }}"}),
        "library/eyes:latest": Model({"model": files["tiny"], "projector": files["mmproj"]}),
        "library/lora:latest": Model({"model": files["tiny"], "adapter": b"lora bytes"}),
        "library/corrupt:latest": Model({"model": files["tiny"]}),
        "library/evil:latest": Model({"model": files["tiny"]}, bad_digests={"model": "sha256:../../etc/passwd"}),
    }
    monkeypatch.setenv("INFERNO_OLLAMA_REGISTRY", reg.url)
    yield reg
    reg.close()


def partials(home: Path) -> list[Path]:
    return [p for p in (home / "models").rglob("*") if p.is_file() and p.suffix in (".partial", ".gguf")
            and "info.json" not in p.name]


@pytest.mark.parametrize("identifier, host, namespace, model, tag, name", [
    ("ollama:smollm2:135m", "registry.ollama.ai", "library", "smollm2", "135m", "smollm2:135m"),
    ("ollama:library/llama3.2:latest", "registry.ollama.ai", "library", "llama3.2", "latest", "llama3.2"),
    ("ollama:llama3.2", "registry.ollama.ai", "library", "llama3.2", "latest", "llama3.2"),
    ("ollama:acme/big:q4", "registry.ollama.ai", "acme", "big", "q4", "acme-big:q4"),
    ("ollama:registry.example.com:5000/ns/m:v1", "registry.example.com:5000", "ns", "m", "v1", "ns-m:v1"),
    ("ollama-local:qwen3:0.6b", "registry.ollama.ai", "library", "qwen3", "0.6b", "qwen3:0.6b"),
])
def test_names(identifier: str, host: str, namespace: str, model: str, tag: str, name: str) -> None:
    _, ref = resolve(identifier)
    assert (ref.host, ref.namespace, ref.model, ref.tag, ref.default_name) == (  # type: ignore
        host, namespace, model, tag, name)


@pytest.mark.parametrize("identifier", ["ollama:", "ollama:../etc:passwd", "ollama:a/b/c/d", "ollama:x:..",
                                        "ollama:x:a/b", "ollama:%2e%2e/x", "ollama:a\\b", "ollama:-x",
                                        "ollama-local:../../x", "ollama-local:ns/..:tag", "ollama:.hidden"])
def test_bad_names_are_refused_before_any_io(identifier: str, registry: OllamaRegistry) -> None:
    with pytest.raises(BadRequestError):
        resolve(identifier)
    assert registry.requests == []


def test_pull_by_name_and_tag_maps_the_layers(registry: OllamaRegistry, home: Path, files: dict[str, bytes]) -> None:
    lines: list[tuple[int, int | None, str]] = []
    info, note = Inferno().pull("ollama:tiny:1b", progress=lambda c, t, s: lines.append((c, t, s)))
    assert info.name == "tiny:1b" and info.file.read_bytes() == files["tiny"]
    assert info.digest == digest_of(files["tiny"]) and info.filename == "tiny-1b.gguf"
    assert info.file.parent == home / "models" / "tiny:1b"
    assert info.system == "You are terse." and info.parameters == {"temperature": 0.0, "stop": ["<|user|>"],
                                                                    "max_tokens": 3}
    extra = info.model_extra or {}
    assert extra["license"] == "Tiny License 1.0" and extra["ollama_params"] == {"num_ctx": 1024}
    assert info.template is None and extra["ollama_template"] == GO_TEMPLATE  # the GGUF's own template wins
    assert note and "num_ctx" in note
    assert any(MANIFEST_TYPE in a for a in registry.accepts)
    assert any(p.startswith("/cdn/") for _, p, _ in registry.requests)  # the blob came through the redirect
    statuses = [s for _, _, s in lines]
    model_line = f"pulling {digest_of(files['tiny'])}"
    assert statuses.index(model_line) < statuses.index("verifying sha256 digest") < statuses.index("writing manifest")
    assert statuses[-1] == "success" and not partials(home)[1:]


def test_unknown_model_or_tag_is_one_line_and_leaves_nothing(registry: OllamaRegistry, home: Path) -> None:
    for identifier in ("ollama:tiny:nope", "ollama:missing"):
        with pytest.raises(SourceError, match=r"not found on 127\.0\.0\.1:\d+ \(no such model or tag\)"):
            Inferno().pull(identifier)
    assert Inferno().store.list() == [] and partials(home) == []


def test_a_corrupt_blob_is_refused_and_removed(registry: OllamaRegistry, home: Path, files: dict[str, bytes]) -> None:
    registry.corrupt = {digest_of(files["tiny"])}
    with pytest.raises(SourceError, match="is corrupt"):
        Inferno().pull("ollama:corrupt")
    assert Inferno().store.list() == [] and partials(home) == []


def test_a_digest_that_is_not_hex_is_refused(registry: OllamaRegistry, home: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is not sha256: and 64 lowercase hex digits"):
        Inferno().pull("ollama:evil")
    assert not any("cdn" in p or "blobs" in p for _, p, _ in registry.requests)
    assert Inferno().store.list() == []


def test_resume_after_a_cut_connection(registry: OllamaRegistry, home: Path, files: dict[str, bytes]) -> None:
    registry.cut_after = 256 * 1024
    with pytest.raises(SourceError, match="pull again to resume"):
        Inferno().pull("ollama:acme/big:q4")
    left = [p for p in partials(home) if p.suffix == ".partial"]
    assert len(left) == 1 and 0 < left[0].stat().st_size < len(files["big"])
    kept = left[0].stat().st_size
    assert Inferno().store.list() == []  # no half model
    registry.cut_after = None
    registry.requests.clear()
    info, _ = Inferno().pull("ollama:acme/big:q4")
    ranges = [r for _, p, r in registry.requests if p.startswith("/cdn/")]
    assert ranges == [f"bytes={kept}-"], registry.requests  # only the missing bytes were asked for
    assert info.name == "acme-big:q4" and info.file.read_bytes() == files["big"]
    assert [p for p in partials(home) if p.suffix == ".partial"] == []


def test_kill_9_mid_download_then_resume(registry: OllamaRegistry, home: Path, files: dict[str, bytes]) -> None:
    registry.hold_after = 256 * 1024  # the body pauses there, so the kill lands mid-download
    proc = subprocess.Popen([sys.executable, "-m", "inferno", "pull", "ollama:acme/big:q4", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part = home / "models" / ".partial" / "ollama" / f"sha256-{digest_of(files['big'])[7:]}.partial"
    wait_for(lambda: part.exists() and part.stat().st_size >= 256 * 1024, "the download to reach the pause")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    kept = part.stat().st_size
    assert Inferno().store.list() == []  # no half model
    registry.release.set()
    registry.requests.clear()
    out = subprocess.run([sys.executable, "-m", "inferno", "pull", "ollama:acme/big:q4"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [r for _, p, r in registry.requests if p.startswith("/cdn/")] == [f"bytes={kept}-"]
    assert Inferno().store.get("acme-big:q4").file.read_bytes() == files["big"]


def test_concurrent_pulls_of_one_blob_under_two_names(registry: OllamaRegistry, home: Path,
                                                      files: dict[str, bytes]) -> None:
    """Two names, one blob: the pull lock is per name, so the part file's own lock keeps the two downloads
    from writing (and renaming away) the same file at once."""
    registry.gate = threading.Event()
    results: dict[str, Any] = {}

    def pull(name: str) -> None:
        try:
            results[name] = Inferno().pull("ollama:acme/big:q4", name=name)[0]
        except Exception as e:  # reported below
            results[name] = e

    threads = [threading.Thread(target=pull, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    wait_for(lambda: sum(p.startswith("/cdn/") for _, p, _ in registry.requests) >= 1, "a blob download to start")
    registry.gate.set()
    for t in threads:
        t.join()
    assert all(isinstance(results[n], ModelInfo) for n in ("one", "two")), results
    assert all(results[n].file.read_bytes() == files["big"] for n in ("one", "two"))


def test_a_projector_layer_becomes_the_mmproj(registry: OllamaRegistry, home: Path, files: dict[str, bytes]) -> None:
    info, _ = Inferno().pull("ollama:eyes")
    assert info.mmproj and Path(info.mmproj).read_bytes() == files["mmproj"]
    assert Path(info.mmproj).parent == info.file.parent


def test_an_adapter_layer_is_refused_clearly(registry: OllamaRegistry, home: Path) -> None:
    with pytest.raises(SourceError, match="LoRA adapter layer"):
        Inferno().pull("ollama:lora")
    assert not any(p.startswith("/cdn/") for _, p, _ in registry.requests)  # refused before any download


def test_a_go_template_is_translated_when_the_gguf_has_none(registry: OllamaRegistry, home: Path) -> None:
    from inferno.engine.chat import render_chat
    from inferno.engine.types import Message

    info, note = Inferno().pull("ollama:bare")
    assert info.template and note and "translated to Jinja" in note
    msgs = [Message(role="system", content="S"), Message(role="user", content="hi"),
            Message(role="assistant", content="yo"), Message(role="user", content="again")]
    text = render_chat(info.template, msgs, tools=None, bos_token="", eos_token="")
    assert text == "<|system|>S\n<|system|>S\n<|user|>hi\n<|assistant|>yo\n<|user|>again\n<|assistant|>"


def test_a_template_it_cannot_translate_refuses_the_model(registry: OllamaRegistry, home: Path) -> None:
    with pytest.raises(BadRequestError, match=r"uses \{\{ range \$i, \$m := \.Messages \}\}"):
        Inferno().pull("ollama:oddtpl")
    assert Inferno().store.list() == [] and partials(home) == []


# a local Ollama store -------------------------------------------------------------------------------------------

def ollama_store(root: Path, name: str, layers: dict[str, bytes], host: str = "registry.ollama.ai") -> None:
    model = Model(layers)
    for data in layers.values():
        blob = root / "blobs" / f"sha256-{digest_of(data)[7:]}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
    ns_model, tag = name.split(":")
    manifest = root / "manifests" / host / ns_model / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_bytes(model.manifest())


@pytest.fixture
def ollama_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> Path:
    root = tmp_path / "ollama-models"
    ollama_store(root, "library/tiny:latest", {"model": files["tiny"], "system": b"Local system."})
    ollama_store(root, "library/eyes:7b", {"model": files["tiny"], "projector": files["mmproj"]})
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    return root


def test_local_import_links_in_place_and_rm_leaves_ollamas_blob(ollama_home: Path, home: Path,
                                                               files: dict[str, bytes]) -> None:
    blob = ollama_home / "blobs" / f"sha256-{digest_of(files['tiny'])[7:]}"
    host = Inferno()
    info, _ = host.pull("ollama-local:tiny")
    assert info.name == "tiny" and info.linked and info.file == blob.resolve() and info.system == "Local system."
    assert not [p for p in (home / "models").rglob("*") if p.is_file() and p.stat().st_size == len(files["tiny"])]
    eyes, _ = host.pull("ollama-local:eyes:7b")
    assert eyes.mmproj and Path(eyes.mmproj) == (ollama_home / "blobs" / f"sha256-{digest_of(files['mmproj'])[7:]}")
    host.store.remove("tiny")
    host.store.remove("eyes:7b")
    assert blob.read_bytes() == files["tiny"] and Path(eyes.mmproj).is_file()


def test_listing_the_local_store(ollama_home: Path, home: Path) -> None:
    with pytest.raises(SourceError, match=r"holds ollama-local:eyes:7b, ollama-local:tiny:latest$"):
        Inferno().pull("ollama-local:")
    with pytest.raises(SourceError, match=r"not in the Ollama store .*; it holds: eyes:7b, tiny:latest"):
        Inferno().pull("ollama-local:nope")


def test_local_paths_cannot_leave_the_ollama_store(ollama_home: Path, home: Path, tmp_path: Path,
                                                   files: dict[str, bytes]) -> None:
    outside = tmp_path / "secret.gguf"
    outside.write_bytes(files["tiny"])
    # a blob that is a symlink out of the store
    ollama_store(ollama_home, "library/sneaky:latest", {"model": files["big"]})
    blob = ollama_home / "blobs" / f"sha256-{digest_of(files['big'])[7:]}"
    blob.unlink()
    blob.symlink_to(outside)
    with pytest.raises(BadRequestError, match="leads outside the Ollama store"):
        Inferno().pull("ollama-local:sneaky")
    # a namespace folder that is a symlink out of the store
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "m").mkdir(parents=True)
    (elsewhere / "m" / "latest").write_bytes(Model({"model": files["tiny"]}).manifest())
    os.symlink(elsewhere, ollama_home / "manifests" / "registry.ollama.ai" / "linked")
    with pytest.raises(BadRequestError, match="leads outside the Ollama store"):
        Inferno().pull("ollama-local:linked/m")
    # a manifest whose digest is not hex
    manifest = ollama_home / "manifests" / "registry.ollama.ai" / "library" / "tiny" / "bad"
    manifest.write_bytes(Model({"model": files["tiny"]}, bad_digests={"model": "sha256:../../../secret"}).manifest())
    with pytest.raises(SourceError, match="is not sha256: and 64 lowercase hex digits"):
        Inferno().pull("ollama-local:tiny:bad")
    assert Inferno().store.list() == []


def test_a_bare_name_only_in_the_ollama_store_is_suggested(ollama_home: Path, home: Path) -> None:
    from inferno.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match=r"`inferno pull ollama-local:eyes:7b` imports it from there"):
        Inferno().lookup("eyes:7b")
    with pytest.raises(BadRequestError, match=r"`inferno pull ollama-local:tiny:latest` imports it"):
        Inferno().pull("tiny")
    with pytest.raises(ModelNotFoundError) as e:
        Inferno().lookup("absent")
    assert "ollama-local" not in e.value.message
