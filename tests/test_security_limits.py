"""One request may not kill, freeze or flood a real `inferno serve`: each bomb of issue 28 is a 400 naming its
setting, and the server answers /health while and after it is refused."""

from __future__ import annotations

import base64
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from inferno.config import load_settings
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_gguf, write_tiny_mmproj

from .conftest import Server, start_server, stop_server
from .test_vision import RED, png

DEEP = "root ::= " + "(" * 30_000 + '"a"' + ")" * 30_000  # 60 KB; llama.cpp's recursive parser overflowed on it
LOOPS = ("{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}{% endfor %}"
         "{% endfor %}{% endfor %}")
MULTIPLY = '{{ ("a" * 3000000000)|length }}'
IFS = "{{if .System}}" * 16_000 + "{{ .Prompt }}"  # 224 KB: a quadratic regex held the event loop for 21 s


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("bombs-home")
    h = Inferno(load_settings({"INFERNO_HOME": str(home)}))
    h.import_file(tiny_gguf, "tiny", source="t")
    mmproj = write_tiny_mmproj(tmp_path_factory.mktemp("mmproj") / "mmproj-tiny-f16.gguf")
    h.import_file(tiny_gguf, "eyes", source="t", projector=mmproj)
    # trained for 4M tokens, and wide enough that a 4M-token KV cache is ~64 GiB: more than this machine has
    wide = write_tiny_gguf(tmp_path_factory.mktemp("wide") / "wide.gguf", n_embd=256, n_layer=16, n_head=4,
                           context_length=1 << 22)
    h.import_file(wide, "wide", source="t")
    s = start_server(home, {"INFERNO_REQUEST_LOAD_OPTIONS": "num_ctx,num_thread", "INFERNO_MAX_BLOB_BYTES": "65536",
                            "INFERNO_MAX_IMAGE_PIXELS": "1000000", "INFERNO_MAX_REQUEST_PIXELS": "1500000"})
    yield s
    stop_server(s)


def while_healthy(server: Server, attack: Callable[[], Any]) -> Any:
    """Run attack in a thread; /health must answer every time it is asked until the attack has its answer."""
    done = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = attack()
        except BaseException as e:
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    asked = 0
    while not done.is_set() or asked == 0:
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        asked += 1
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200  # still alive after it
    if "error" in box:
        raise box["error"]
    return box["result"]


def ollama_error(server: Server, route: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}{route}", json={"stream": False, **body}, timeout=120)


def test_the_deep_grammar(bombs: Server) -> None:
    r = while_healthy(bombs, lambda: ollama_error(bombs, "/api/generate", {
        "model": "tiny", "prompt": "x", "options": {"grammar": DEEP, "num_predict": 1}}))
    assert r.status_code == 400 and "INFERNO_MAX_GRAMMAR_DEPTH" in r.json()["error"]
    client = openai.OpenAI(base_url=bombs.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="INFERNO_MAX_GRAMMAR_DEPTH"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=1,
                                       extra_body={"grammar": DEEP})
    # the default depth is one llama.cpp parses: 900 groups deep, in a worker thread, constrains the output
    nested = "root ::= " + "(" * 900 + '"a"' + ")" * 900
    out = ollama.Client(host=bombs.url).generate(model="tiny", prompt="x",
                                                 options={"grammar": nested, "num_predict": 3, "temperature": 0})
    assert out.response == "a"


def test_the_schema_bomb(bombs: Server) -> None:
    bomb = {"type": "array", "items": {"type": "integer"}, "minItems": 20_000_000}
    r = while_healthy(bombs, lambda: ollama_error(bombs, "/api/chat", {
        "model": "tiny", "messages": [{"role": "user", "content": "x"}], "format": bomb}))
    assert r.status_code == 400 and "INFERNO_MAX_SCHEMA_REPEAT" in r.json()["error"]
    client = openai.OpenAI(base_url=bombs.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="INFERNO_MAX_SCHEMA_REPEAT"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=1,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "b", "schema": {
                                                            "type": "string", "maxLength": 50_000_000}}})


@pytest.mark.parametrize(("template", "setting"), [(LOOPS, "INFERNO_TEMPLATE_MAX_STEPS"),
                                                   (MULTIPLY, "INFERNO_TEMPLATE_MAX_STRING"),
                                                   (IFS, "INFERNO_MAX_TEMPLATE_BYTES")])
def test_the_template_bombs(bombs: Server, template: str, setting: str) -> None:
    r = while_healthy(bombs, lambda: ollama_error(bombs, "/api/generate", {
        "model": "tiny", "prompt": "x", "template": template, "options": {"num_predict": 1}}))
    assert r.status_code == 400 and setting in r.json()["error"], r.text
    # the model's worker is free again: a plain request is answered
    assert ollama.Client(host=bombs.url).generate(model="tiny", prompt="x", options={"num_predict": 1}).done


def test_a_go_template_is_translated_in_linear_time(bombs: Server) -> None:
    # 5,000 unclosed ifs (70 KB, under the size cap): one pass refuses it; the old pairing regex rescanned the
    # template from every {{if}}
    template = "{{if .System}}" * 5_000 + "{{ .Prompt }}"
    r = while_healthy(bombs, lambda: ollama_error(bombs, "/api/generate", {
        "model": "tiny", "prompt": "x", "system": "s", "template": template}))
    assert r.status_code == 400 and "without its {{ end }}" in r.json()["error"]
    ok = "{{ if .System }}S:{{ .System }} {{ end }}U:{{ .Prompt }}" * 100
    out = ollama_error(bombs, "/api/generate", {"model": "tiny", "prompt": "x", "system": "s", "template": ok,
                                                "raw": False, "options": {"num_predict": 1}})
    assert out.status_code == 200


def test_a_stored_template_bomb(bombs: Server) -> None:
    r = httpx.post(f"{bombs.url}/api/create", json={"model": "slow", "from": "tiny", "template": LOOPS,
                                                    "stream": False}, timeout=60)
    assert r.status_code == 200
    r = while_healthy(bombs, lambda: ollama_error(bombs, "/api/chat", {
        "model": "slow", "messages": [{"role": "user", "content": "x"}], "options": {"num_predict": 1}}))
    assert r.status_code == 400 and "INFERNO_TEMPLATE_MAX_STEPS" in r.json()["error"]
    r = httpx.post(f"{bombs.url}/api/create", json={"model": "big", "from": "tiny", "template": "x" * 200_000,
                                                    "stream": False}, timeout=60)
    assert r.status_code == 400 and "INFERNO_MAX_TEMPLATE_BYTES" in r.json()["error"]


def png_header(w: int, h: int) -> bytes:
    """A PNG declaring w x h pixels, with a few bytes of data: what it says is all that may be read."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + \
        chunk(b"IEND", b"")


def test_the_image_bomb(bombs: Server) -> None:
    bomb = base64.b64encode(png_header(16_000, 16_000)).decode()
    r = while_healthy(bombs, lambda: ollama_error(bombs, "/api/chat", {
        "model": "eyes", "messages": [{"role": "user", "content": "what?", "images": [bomb]}]}))
    assert r.status_code == 400 and "16000x16000" in r.json()["error"] and "INFERNO_MAX_IMAGE_PIXELS" in r.text
    # each under the per-image cap, together over the request's
    half = base64.b64encode(png((1, 2, 3), 1000, 800)).decode()
    r = ollama_error(bombs, "/api/chat", {"model": "eyes", "messages": [
        {"role": "user", "content": "what?", "images": [half, half]}]})
    assert r.status_code == 400 and "INFERNO_MAX_REQUEST_PIXELS" in r.json()["error"]
    out = ollama.Client(host=bombs.url).chat(model="eyes", messages=[{"role": "user", "content": "what?",
                                                                      "images": [RED]}], options={"num_predict": 1})
    assert out.done


def test_num_ctx_and_num_thread_caps(bombs: Server) -> None:
    client = ollama.Client(host=bombs.url)
    with pytest.raises(ollama.ResponseError, match="above the 2048 tokens tiny was trained for"):
        client.generate(model="tiny", prompt="x", options={"num_ctx": 262_144, "num_predict": 1})
    with pytest.raises(ollama.ResponseError, match=r"needs about \d+\.\d GiB of KV cache"):
        client.generate(model="wide", prompt="x", options={"num_ctx": 1 << 22, "num_predict": 1})
    with pytest.raises(ollama.ResponseError, match="num_thread 1024 is more than the"):
        client.generate(model="tiny", prompt="x", options={"num_thread": 1024, "num_predict": 1})
    with pytest.raises(ollama.ResponseError, match="INFERNO_REQUEST_LOAD_OPTIONS"):
        client.generate(model="tiny", prompt="x", options={"num_batch": 7, "num_predict": 1})
    oai = openai.OpenAI(base_url=bombs.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="trained for"):
        oai.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=1,
                                    extra_body={"num_ctx": 262_144})
    # within the caps: served, at the context asked
    assert client.generate(model="tiny", prompt="x", options={"num_ctx": 512, "num_thread": 1,
                                                              "num_predict": 1}).done
    assert any(m.context_length == 512 for m in client.ps().models)


def test_a_chunked_blob_over_the_limit(bombs: Server) -> None:
    import hashlib

    data = b"x" * 200_000  # over INFERNO_MAX_BLOB_BYTES (64 KiB here)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 8192):
            yield data[i:i + 8192]

    r = httpx.post(f"{bombs.url}/api/blobs/{digest}", content=chunks(), timeout=30)  # Transfer-Encoding: chunked
    assert r.status_code == 413 and "INFERNO_MAX_BLOB_BYTES" in r.json()["error"]
    r = httpx.post(f"{bombs.url}/api/blobs/{digest}", content=data, timeout=30)  # a declared length over it
    assert r.status_code == 413
    assert httpx.head(f"{bombs.url}/api/blobs/{digest}", timeout=10).status_code == 404
    blobs = bombs.home / "models" / ".blobs"
    assert not [p for p in blobs.iterdir() if p.name.startswith(".tmp-")] if blobs.exists() else True


def test_orphan_blobs_are_removed_after_the_grace_period(bombs: Server) -> None:
    import hashlib
    import os

    def upload(data: bytes) -> Path:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        assert httpx.post(f"{bombs.url}/api/blobs/{digest}", content=data, timeout=30).status_code == 201
        return bombs.home / "models" / ".blobs" / f"sha256-{digest[7:]}"

    old = upload(b"an orphan")
    os.utime(old, (1_000_000_000, 1_000_000_000))  # last written long before the grace period (1 h)
    fresh = upload(b"uploaded for the next create")  # each upload sweeps the orphans
    assert not old.exists() and fresh.exists()
