from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import inferno_plugins
from inferno import pluginmanager
from inferno.hookspecs import hookimpl

# Every plugin the inferno distribution declares (pyproject's entry points, as installed): none left out.
FIRST_PARTY = {ep.name for ep in importlib.metadata.distribution("inferno").entry_points if ep.group == "inferno"}


def _fake_distribution(root: Path, name: str, module_source: str) -> Path:
    """A minimal installed distribution (dist-info + module) that registers an `inferno` entry point."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.py").write_text(module_source)
    info = root / f"{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[inferno]\n{name} = {name}\n")
    return root


def _run(args: list[str], env_extra: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INFERNO_HOME": str(home), **env_extra}
    return subprocess.run([sys.executable, "-m", "inferno", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_every_first_party_package_is_a_declared_plugin() -> None:
    roots = inferno_plugins.__path__
    packages = {p.parent.name for root in roots for p in Path(root).glob("*/__init__.py")}
    # named, not only derived: a package dropped from both the tree and pyproject's entry points fails here
    assert packages == FIRST_PARTY == {
        "anthropic_api", "convert", "gguf_reader", "hf_source", "llama_server_api", "local_source", "ollama_api",
        "ollama_source", "openai_api", "openai_responses", "pypi_source", "quantize", "rpc", "webui"}


def test_first_party_plugins_load_through_entry_points() -> None:
    statuses = {p["name"]: p for p in pluginmanager.plugin_statuses()}
    assert set(statuses) >= FIRST_PARTY
    assert "register_model_sources" in statuses["pypi_source"]["hooks"]
    assert "read_model_metadata" in statuses["gguf_reader"]["hooks"]
    assert all("error" not in statuses[n] for n in FIRST_PARTY)


def test_register_and_unregister_a_plugin_for_one_test() -> None:
    class Throwaway:
        @hookimpl
        def register_commands(self, cli: object) -> None:
            pass

    name = pluginmanager.register(Throwaway(), name="throwaway")
    try:
        listed = {p["name"]: p for p in pluginmanager.plugin_statuses()}
        assert listed["throwaway"]["hooks"] == ["register_commands"]
    finally:
        pluginmanager.unregister(name)
    assert "throwaway" not in {p["name"] for p in pluginmanager.plugin_statuses()}


def test_a_broken_plugin_is_listed_with_its_error_and_nothing_else_breaks(tmp_path: Path, home: Path) -> None:
    site = _fake_distribution(tmp_path / "site", "broken_plugin", "raise RuntimeError('boom at import')\n")
    env = {"PYTHONPATH": str(site)}
    out = _run(["plugins"], env, home)
    assert out.returncode == 0, out.stderr
    listed = {p["name"]: p for p in json.loads(out.stdout)}
    assert listed["broken_plugin"]["error"] == "RuntimeError: boom at import"
    assert listed["broken_plugin"]["version"] == "1.2.3"
    assert "warning: plugin 'broken_plugin' failed to load" in out.stderr
    assert _run(["list"], env, home).returncode == 0  # every other command keeps working
    strict = _run(["list"], {**env, "INFERNO_STRICT_PLUGINS": "1"}, home)
    assert strict.returncode != 0 and "boom at import" in strict.stderr


def test_a_third_party_plugin_adds_a_command(tmp_path: Path, home: Path) -> None:
    source = (
        "import click\nfrom inferno.hookspecs import hookimpl\n\n"
        "@hookimpl\ndef register_commands(cli):\n"
        "    @cli.command()\n    def hello():\n        'Say hello.'\n        click.echo('hello from a plugin')\n"
    )
    site = _fake_distribution(tmp_path / "site", "hello_plugin", source)
    out = _run(["hello"], {"PYTHONPATH": str(site)}, home)
    assert out.returncode == 0 and out.stdout.strip() == "hello from a plugin"
    disabled = _run(["hello"], {"PYTHONPATH": str(site), "INFERNO_DISABLE_PLUGINS": "hello_plugin"}, home)
    assert disabled.returncode != 0


@pytest.mark.parametrize("env, present, absent", [
    ({"INFERNO_LOAD_PLUGINS": "gguf_reader,local_source"}, {"gguf_reader", "local_source"}, {"pypi_source"}),
    ({"INFERNO_LOAD_PLUGINS": ""}, set(), FIRST_PARTY),
    ({"INFERNO_DISABLE_PLUGINS": "openai_api"}, {"ollama_api"}, {"openai_api"}),
])
def test_selecting_plugins(env: dict[str, str], present: set[str], absent: set[str], home: Path) -> None:
    out = _run(["plugins"], env, home)
    loaded = {p["name"] for p in json.loads(out.stdout)}
    assert present <= loaded and not (absent & loaded)
    everything = {p["name"]: p for p in json.loads(_run(["plugins", "--all"], env, home).stdout)}
    assert all(everything[n].get("enabled") is False for n in absent)
