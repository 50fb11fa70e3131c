"""No model-supplied code runs: the upload-and-create attack of issue 28 (a Qwen-v1 folder whose
tokenizer_config.json's auto_map names an uploaded tokenization_qwen.py), through a real server, the CLI and a
Hub repository. The same folder converted with `--trust-remote-code` does run the code (the marker appears), so
the refusals below are what stands between the upload and the code."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from inferno.config import load_settings
from inferno.host import Inferno

from .conftest import Server, start_server, stop_server
from .hub_server import HubServer, Repo
from .test_convert import TOOLS, converter, error_line, files_of, invoke, write_hf_llama  # noqa: F401


def safetensors(shapes: dict[str, tuple[int, ...]]) -> bytes:
    header: dict[str, object] = {}
    blobs, offset = [], 0
    for name, shape in shapes.items():
        a = np.full(shape, 0.01, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def qwen_attack(marker: Path) -> dict[str, bytes]:
    """The five files of the attack: a Qwen v1 model whose tokenizer is code the uploader wrote."""
    hidden, ff, vocab = 32, 64, 64
    shapes: dict[str, tuple[int, ...]] = {"transformer.wte.weight": (vocab, hidden),
                                          "transformer.ln_f.weight": (hidden,), "lm_head.weight": (vocab, hidden)}
    p = "transformer.h.0."
    shapes |= {p + "ln_1.weight": (hidden,), p + "attn.c_attn.weight": (3 * hidden, hidden),
               p + "attn.c_attn.bias": (3 * hidden,), p + "attn.c_proj.weight": (hidden, hidden),
               p + "ln_2.weight": (hidden,), p + "mlp.w1.weight": (ff // 2, hidden),
               p + "mlp.w2.weight": (ff // 2, hidden), p + "mlp.c_proj.weight": (hidden, ff // 2)}
    config = {"architectures": ["QWenLMHeadModel"], "model_type": "qwen", "hidden_size": hidden,
              "intermediate_size": ff, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": vocab,
              "max_position_embeddings": 256, "seq_length": 256, "layer_norm_epsilon": 1e-6,
              "rotary_emb_base": 10000, "kv_channels": 8, "torch_dtype": "float32"}
    code = (f"import pathlib\npathlib.Path({str(marker)!r}).write_text('the uploaded code ran')\n"
            "raise SystemExit('remote code ran')\n")
    return {"config.json": json.dumps(config).encode(),
            "tokenizer_config.json": json.dumps({"auto_map": {"AutoTokenizer": ["tokenization_qwen.QWenTokenizer",
                                                                                  None]},
                                                 "tokenizer_class": "QWenTokenizer"}).encode(),
            "tokenizer.json": json.dumps({"version": "1.0",
                                          "model": {"type": "BPE", "vocab": {}, "merges": []}}).encode(),
            "tokenization_qwen.py": code.encode(), "model.safetensors": safetensors(shapes)}


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def convert_server(tmp_path: Path, converter: Path, tiny_gguf: Path) -> Iterator[Server]:  # noqa: F811
    home = tmp_path / "home"
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(tiny_gguf, "tiny", source="t")
    s = start_server(home, {"INFERNO_TOOLS": str(TOOLS)})
    yield s
    stop_server(s)


def upload(server: Server, files: dict[str, bytes]) -> dict[str, str]:
    for data in files.values():
        assert httpx.post(f"{server.url}/api/blobs/{digest(data)}", content=data, timeout=30).status_code == 201
    return {name: digest(data) for name, data in files.items()}


def test_the_upload_and_create_attack(convert_server: Server, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    files = qwen_attack(marker)
    # from a web page: refused at the first request, nothing stored
    first = files["config.json"]
    r = httpx.post(f"{convert_server.url}/api/blobs/{digest(first)}", content=first, timeout=30,
                   headers={"Origin": "https://evil.example", "Content-Type": "text/plain"})
    assert r.status_code == 403
    assert httpx.head(f"{convert_server.url}/api/blobs/{digest(first)}", timeout=10).status_code == 404
    # as a client without an Origin: the blobs are taken, the create is refused before the converter runs
    names = upload(convert_server, files)
    r = httpx.post(f"{convert_server.url}/api/create", json={"model": "evil", "files": names, "stream": False},
                   timeout=300)
    assert r.status_code == 400 and "auto_map" in r.json()["error"], r.text
    # without the auto_map the architecture itself is refused, by name
    files["tokenizer_config.json"] = b"{}"
    names = upload(convert_server, files)
    r = httpx.post(f"{convert_server.url}/api/create", json={"model": "evil", "files": names, "stream": False},
                   timeout=300)
    assert r.status_code == 400, r.text
    assert "architecture QWenLMHeadModel needs remote code" in r.json()["error"]
    assert not marker.exists()
    tags = httpx.get(f"{convert_server.url}/api/tags", timeout=10).json()["models"]
    assert [m["name"] for m in tags] == ["tiny:latest"]


def test_a_failed_conversion_is_a_4xx_with_the_reason(convert_server: Server, tmp_path: Path) -> None:
    files = files_of(write_hf_llama(tmp_path / "broken"))
    files["model.safetensors"] = struct.pack("<Q", 12) + b'{"bad": "x"}'  # a header naming no tensors properly
    r = httpx.post(f"{convert_server.url}/api/create", timeout=300,
                   json={"model": "broken", "files": upload(convert_server, files), "stream": False})
    assert r.status_code == 400 and r.json()["error"].startswith("conversion failed: "), r.text
    assert "\n" not in r.json()["error"]


def test_the_cli_refuses_unless_trusted(tmp_path: Path, home: Path, converter: Path,  # noqa: F811
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERNO_TOOLS", str(TOOLS))
    marker = tmp_path / "pwned"
    folder = tmp_path / "qwen"
    folder.mkdir()
    for name, data in qwen_attack(marker).items():
        (folder / name).write_bytes(data)
    code, _out, err = invoke("convert", str(folder), "evil")
    assert code == 1 and "auto_map" in error_line(err)
    assert not marker.exists()
    # the user's own decision on the command line: the converter then runs the folder's code (so the folder above
    # is a real attack, and the refusal is what stopped it)
    code, _out, err = invoke("convert", str(folder), "evil", "--trust-remote-code")
    assert code == 1 and marker.read_text() == "the uploaded code ran"


def test_a_hub_repository_with_code(home: Path, tmp_path: Path, converter: Path,  # noqa: F811
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    good = files_of(write_hf_llama(tmp_path / "llama"))
    marker = tmp_path / "pwned"
    code = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n".encode()
    with_map = json.loads(good["tokenizer_config.json"])
    with_map["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    hub = HubServer()
    hub.repos = {"acme/Evil": Repo(files={**good, "tokenizer_config.json": json.dumps(with_map).encode(),
                                          "tokenization_evil.py": code}),
                 "acme/Stray-Code": Repo(files={**good, "modeling_evil.py": code, "sitecustomize.py": code})}
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("INFERNO_TOOLS", str(TOOLS))
    try:
        status, _out, err = invoke("convert", "hf:acme/Evil", "evil")
        assert status == 1 and "tokenizer_config.json has an auto_map" in error_line(err)
        # code beside a convertible model is never fetched, so never in a folder the converter reads
        status, _out, err = invoke("convert", "hf:acme/Stray-Code", "stray")
        assert status == 0, err
        fetched = [path for method, path, _ in hub.requests if method == "GET"]
        assert not [p for p in fetched if p.endswith(".py")], fetched
        assert not marker.exists()
    finally:
        hub.close()
