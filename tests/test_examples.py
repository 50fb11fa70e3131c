"""The example third-party plugins, installed with pip as an outsider would: a small API dialect (llama-server's
native /completion) and the `dir:` source. They use the shipped pytest fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {"inferno-llama-completion": "llama_completion", "inferno-dir-source": "dir_source"}


@pytest.fixture(scope="module")
def installed() -> Iterator[None]:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", *(str(ROOT / "examples" / e) for e in EXAMPLES)], check=True,
                   timeout=600)
    yield
    subprocess.run([*pip, "uninstall", "-y", *EXAMPLES], check=True, timeout=300)


def _plugins(home: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "inferno", "plugins"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "INFERNO_HOME": str(home)})
    return {p["name"]: p for p in json.loads(out.stdout)}


def test_plugins_lists_third_party_plugins(installed: None, inferno_home: Path) -> None:
    listed = _plugins(inferno_home)
    example = listed["llama_completion"]
    assert example["version"] == "0.1.0" and example["hooks"] == ["register_routes"]
    assert listed["dir_source"]["hooks"] == ["register_model_sources"]


@pytest.fixture
def llama(installed: None, inferno_server: Callable[..., Any], smollm2_path: Path, inferno_tiny_gguf: Path) -> str:
    """The URL of a real server with the example dialect installed."""
    return inferno_server(models={"smollm2": smollm2_path, "tiny": inferno_tiny_gguf}).url


def test_completion(llama: str) -> None:
    r = httpx.post(f"{llama}/completion", timeout=120, json={
        "model": "smollm2", "prompt": "The capital of France is", "n_predict": 8, "temperature": 0})
    assert r.status_code == 200, r.text
    out = r.json()
    assert "Paris" in out["content"] and out["stop"] is True and out["model"] == "smollm2"
    assert out["tokens_evaluated"] > 0 and 0 < out["tokens_predicted"] <= 8
    assert out["stop_type"] == ("limit" if out["tokens_predicted"] == 8 else "eos")


def test_completion_streamed(llama: str) -> None:
    body = {"model": "smollm2", "prompt": "The capital of France is", "n_predict": 8, "temperature": 0}
    whole = httpx.post(f"{llama}/completion", json=body, timeout=120).json()
    with httpx.stream("POST", f"{llama}/completion", json={**body, "stream": True}, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(e.removeprefix("data: ")) for e in r.read().decode().split("\n\n") if e]
    assert all(e["stop"] is False for e in events[:-1]) and events[-1]["stop"] is True
    assert "".join(e["content"] for e in events) == whole["content"]
    assert events[-1]["tokens_predicted"] == whole["tokens_predicted"]


def test_completion_errors_in_llama_server_shape(llama: str) -> None:
    missing = httpx.post(f"{llama}/completion", json={"model": "nope", "prompt": "x", "stream": True}, timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    bad = httpx.post(f"{llama}/completion", json={"model": "tiny", "n_predict": 3}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == 400
    assert bad.json()["error"]["type"] == "invalid_request_error" and "prompt" in bad.json()["error"]["message"]
    paths = httpx.get(f"{llama}/openapi.json", timeout=30).json()["paths"]
    assert "requestBody" in paths["/completion"]["post"]


def test_dir_source(installed: None, inferno_home: Path, inferno_tiny_gguf: Path) -> None:
    env = {**os.environ, "INFERNO_HOME": str(inferno_home)}
    folder = inferno_tiny_gguf.parent
    out = subprocess.run([sys.executable, "-m", "inferno", "pull", f"dir:{folder}:tiny", "--name", "from-dir"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    show = subprocess.run([sys.executable, "-m", "inferno", "show", "from-dir", "--json"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert json.loads(show.stdout)["info"]["linked"] is True
    bad = subprocess.run([sys.executable, "-m", "inferno", "pull", f"dir:{folder / 'nothing'}"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1 and "no .gguf files" in bad.stderr


def test_fixtures_register_for_one_test(inferno_register: Callable[..., str]) -> None:
    from inferno import pluginmanager
    from inferno.hookspecs import hookimpl

    class Plugin:
        @hookimpl
        def register_commands(self, cli: Any) -> None:
            pass

    name = inferno_register(Plugin(), name="fixture-plugin")
    assert name in {p["name"] for p in pluginmanager.plugin_statuses()}
