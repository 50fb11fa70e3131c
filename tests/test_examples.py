"""The example third-party plugins, installed with pip as an outsider would: the Anthropic Messages dialect
(driven with the official `anthropic` package) and the `dir:` source. They use the shipped pytest fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {"inferno-anthropic": "anthropic_api", "inferno-dir-source": "dir_source"}


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
    assert listed["anthropic_api"]["version"] == "0.1.0" and listed["anthropic_api"]["hooks"] == ["register_routes"]
    assert listed["dir_source"]["hooks"] == ["register_model_sources"]


@pytest.fixture
def claude(installed: None, inferno_server: Callable[..., Any], smollm2_path: Path,
           inferno_tiny_gguf: Path) -> anthropic.Anthropic:
    server = inferno_server(models={"smollm2": smollm2_path, "tiny": inferno_tiny_gguf})
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)


def test_messages(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model="smollm2", max_tokens=60, extra_body={"temperature": 0},
                                 messages=[{"role": "user", "content": "Name three primary colours"}])
    assert msg.type == "message" and msg.role == "assistant" and msg.stop_reason == "end_turn"
    block = msg.content[0]
    assert block.type == "text" and "red" in block.text.lower()
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0


def test_streaming(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="smollm2", max_tokens=8, system="Be brief.",
                                messages=[{"role": "user", "content": "Say hello"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens")


def test_tool_use_round_trip(claude: anthropic.Anthropic) -> None:
    tools: Any = [{"name": "get_weather", "description": "Weather in a city", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    msg = claude.messages.create(model="smollm2", max_tokens=100, tools=tools, extra_body={"temperature": 0},
                                 tool_choice={"type": "tool", "name": "get_weather"},
                                 messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    assert msg.stop_reason == "tool_use"
    use = next(b for b in msg.content if b.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input, dict) and "city" in use.input
    follow = claude.messages.create(model="smollm2", max_tokens=20, tools=tools, messages=[
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}])
    assert follow.content


def test_anthropic_shaped_errors(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model="smollm2", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert bad.value.body["type"] == "error"  # type: ignore


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
    from inferno import plugins
    from inferno.hookspecs import hookimpl

    class Plugin:
        @hookimpl
        def register_commands(self, cli: Any) -> None:
            pass

    name = inferno_register(Plugin(), name="fixture-plugin")
    assert name in {p["name"] for p in plugins.plugin_statuses()}
