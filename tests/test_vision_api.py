"""Vision through a real `inferno serve` (both dialects, the native client), the CLI and the store."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from click.testing import CliRunner

from inferno.cli import build_cli
from inferno.config import load_settings
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_mmproj

from .conftest import Server, start_server, stop_server
from .test_vision import BLUE, IMAGE_TOKENS, RED, png


@pytest.fixture(scope="module")
def mmproj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_mmproj(tmp_path_factory.mktemp("mmproj") / "mmproj-tiny-f16.gguf")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, mmproj: Path) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("vision-home")
    h = Inferno(load_settings({"INFERNO_HOME": str(home)}))
    h.import_file(tiny_gguf, "eyes", source="test", projector=mmproj)
    h.import_file(tiny_gguf, "tiny", source="test")
    s = start_server(home, {"INFERNO_MAX_IMAGE_BYTES": "4000"})
    yield s
    stop_server(s)


def oai(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def parts(url: str, text: str = "what is this?") -> list[Any]:
    return [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]


def ask_openai(server: Server, url: str, model: str = "eyes") -> Any:
    return oai(server).chat.completions.create(
        model=model, messages=[{"role": "user", "content": parts(url)}], temperature=0, max_tokens=12,
        extra_body={"ignore_eos": True})


def test_capability_in_show(server: Server) -> None:
    caps = httpx.post(f"{server.url}/api/show", json={"model": "eyes"}).json()["capabilities"]
    assert "vision" in caps
    assert "vision" not in httpx.post(f"{server.url}/api/show", json={"model": "tiny"}).json()["capabilities"]


def test_openai_image_url_parts(server: Server) -> None:
    red = ask_openai(server, f"data:image/png;base64,{RED}")
    again = ask_openai(server, RED)  # bare base64 too
    blue = ask_openai(server, f"data:image/png;base64,{BLUE}")
    plain = oai(server).chat.completions.create(
        model="eyes", messages=[{"role": "user", "content": "what is this?"}], temperature=0, max_tokens=1)
    assert red.choices[0].message.content == again.choices[0].message.content != blue.choices[0].message.content
    assert red.usage and plain.usage
    assert IMAGE_TOKENS < red.usage.prompt_tokens - plain.usage.prompt_tokens <= IMAGE_TOKENS + 4


def test_openai_refuses_what_it_should(server: Server) -> None:
    with pytest.raises(openai.BadRequestError, match="INFERNO_ALLOW_IMAGE_URLS"):
        ask_openai(server, "http://169.254.169.254/latest/meta-data")
    with pytest.raises(openai.BadRequestError, match="no vision"):
        ask_openai(server, RED, model="tiny")
    with pytest.raises(openai.BadRequestError, match="cannot be decoded"):
        ask_openai(server, base64.b64encode(b"GIF89a\x01\x00\x01\x00-garbage").decode())  # 1x1, undecodable
    big = base64.b64encode(png((9, 9, 9), 200, 200) + b"\x00" * 5000).decode()
    with pytest.raises(openai.BadRequestError, match="INFERNO_MAX_IMAGE_BYTES"):
        ask_openai(server, big)


def test_ollama_images_in_chat_and_generate(server: Server) -> None:
    client = ollama.Client(host=server.url)
    opts = {"temperature": 0, "num_predict": 12, "ignore_eos": True}
    chat = client.chat(model="eyes", messages=[{"role": "user", "content": "what is this?",
                                                "images": [RED]}], options=opts)
    gen = client.generate(model="eyes", prompt="what is this?", images=[RED], options=opts)
    assert chat.message.content == gen.response  # the same prompt either way
    assert (chat.prompt_eval_count or 0) > IMAGE_TOKENS
    streamed = "".join(p.response or "" for p in client.generate(model="eyes", prompt="what is this?", images=[RED],
                                                           options=opts, stream=True))
    assert streamed == gen.response
    with pytest.raises(ollama.ResponseError, match="does not support images"):
        client.chat(model="tiny", messages=[{"role": "user", "content": "x", "images": [RED]}])
    r = httpx.post(f"{server.url}/api/generate", json={"model": "eyes", "prompt": "x", "images": ["@@@"]})
    assert r.status_code == 400 and "base64" in r.json()["error"]


def test_native_client(server: Server) -> None:
    from inferno.client import InfernoClient

    c = InfernoClient(server.url)
    r = c.chat.completions.create(model="eyes", messages=[{"role": "user", "content": parts(RED)}],
                                  temperature=0, max_tokens=12, ignore_eos=True)
    assert r.choices[0].message.content == ask_openai(server, RED).choices[0].message.content


def test_create_with_a_projector_blob(server: Server, tiny_gguf: Path, mmproj: Path) -> None:
    files = {}
    for name, path in (("model.gguf", tiny_gguf), ("mmproj-model.gguf", mmproj)):
        data = path.read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        assert httpx.post(f"{server.url}/api/blobs/{digest}", content=data).status_code == 201
        files[name] = digest
    r = httpx.post(f"{server.url}/api/create", json={"model": "made", "files": files, "stream": False})
    assert r.status_code == 200, r.text
    assert "vision" in httpx.post(f"{server.url}/api/show", json={"model": "made"}).json()["capabilities"]
    r = httpx.post(f"{server.url}/api/create", json={"model": "bad", "stream": False, "files": {
        "a.gguf": files["model.gguf"], "mmproj-a.gguf": files["mmproj-model.gguf"], "mmproj-b.gguf": files[
            "mmproj-model.gguf"]}})
    assert r.status_code == 400


def test_cli_pull_mmproj_show_list_and_run(home: Path, tiny_gguf: Path, mmproj: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(build_cli(), ["pull", str(tiny_gguf), "--name", "seer", "--mmproj", str(mmproj), "-q"])
    assert r.exit_code == 0, r.output
    info = Inferno().store.get("seer")
    assert info.mmproj and Path(info.mmproj).parent == info.file.parent
    assert Path(info.mmproj).name == "mmproj-tiny-f16.gguf"
    r = runner.invoke(build_cli(), ["show", "seer"])
    assert "vision" in r.output and "mmproj-tiny-f16.gguf" in r.output
    assert "+vision" in runner.invoke(build_cli(), ["list"]).output
    image = tmp_path / "red.png"
    image.write_bytes(base64.b64decode(RED))
    r = runner.invoke(build_cli(), ["run", "seer", "what is this?", "--image", str(image), "--temperature", "0",
                            "--max-tokens", "4", "--ignore-eos"])
    assert r.exit_code == 0, r.output
    from inferno.cli.runcmd import Session

    h = Inferno()
    try:  # the REPL's /image: read now, sent with the next message
        session = Session(h, "seer", {"temperature": 0, "max_tokens": 2}, {}, None, None, False)
        session.command(f"/image {tmp_path / 'missing.png'}")
        assert session.images == []
        session.command(f"/image {image}")
        assert len(session.images) == 1
        session.ask("what is this?", out=io.StringIO())
        assert session.images == [] and session.history[0].images
    finally:
        h.engine.close()
    r = runner.invoke(build_cli(), ["pull", str(tiny_gguf), "--name", "nope", "--mmproj", str(tiny_gguf.parent / "x")])
    assert r.exit_code != 0
    r2 = runner.invoke(build_cli(), ["pull", str(tiny_gguf), "--name", "plain", "-q"])
    assert r2.exit_code == 0
    r3 = runner.invoke(build_cli(), ["run", "plain", "what?", "--image", str(image), "--max-tokens", "2"])
    assert r3.exit_code == 1 and "no vision" in r3.output
