"""A vision model pulled from the (stand-in) Hugging Face Hub comes with its projector, and sees."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferno.engine.types import Done, GenerateRequest, Message, SamplingOptions
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_gguf, write_tiny_mmproj

from .hub_server import HubServer, Repo
from .test_vision import IMAGE_TOKENS, RED


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    model = write_tiny_gguf(tmp_path / "m.gguf").read_bytes()
    proj16 = write_tiny_mmproj(tmp_path / "p16.gguf", seed=1).read_bytes()
    proj32 = write_tiny_mmproj(tmp_path / "p32.gguf", seed=2).read_bytes()
    server = HubServer()
    server.repos = {
        "acme/Seeing-GGUF": Repo(files={"seeing-Q4_K_M.gguf": model, "seeing-Q8_0.gguf": model,
                                        "mmproj-seeing-F32.gguf": proj32, "mmproj-seeing-F16.gguf": proj16}),
        "acme/Blind-GGUF": Repo(files={"blind-Q4_K_M.gguf": model}),
    }
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.close()


def test_pull_brings_the_projector(hub: HubServer, home: Path) -> None:
    h = Inferno()
    statuses: list[str] = []
    info, _ = h.pull("hf:acme/Seeing-GGUF:Q4_K_M", progress=lambda done, total, status: statuses.append(status))
    assert info.mmproj is not None
    proj = Path(info.mmproj)
    assert proj.parent == info.file.parent and proj.name == "mmproj-seeing-F16.gguf"  # F16 preferred
    served = hub.repos["acme/Seeing-GGUF"].files["mmproj-seeing-F16.gguf"]
    assert hashlib.sha256(proj.read_bytes()).hexdigest() == hashlib.sha256(served).hexdigest()
    assert info.size == info.file.stat().st_size + proj.stat().st_size
    assert "vision" in h.capabilities(info, h.metadata(info.name))
    assert statuses[-1] == "success"
    try:
        events = list(h.engine.submit(GenerateRequest(
            model=info.name, messages=[Message(role="user", content="what?", images=[RED])],
            sampling=SamplingOptions(temperature=0, max_tokens=2))))
        done = events[-1]
        assert isinstance(done, Done) and done.prompt_tokens > IMAGE_TOKENS
    finally:
        h.engine.close()
    blind, _ = h.pull("hf:acme/Blind-GGUF")
    assert blind.mmproj is None
    assert not list(Path(home, "models").rglob("*.tmp*"))
