"""Pytest fixtures for plugin authors, registered through the `pytest11` entry point.

    def test_my_source(inferno_home, inferno_register):
        inferno_register(MyPlugin())            # registered for this test only
        ...

    def test_my_dialect(inferno_server):
        server = inferno_server(models={"tiny": inferno_tiny_gguf_path})
        httpx.post(server.url + "/my/route", ...)

Nothing heavy is imported until a fixture is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inferno.testing_server import RunningServer, start_inferno, stop

__all__ = ["RunningServer"]


@pytest.fixture
def inferno_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty INFERNO_HOME for this test (seen by in-process code and by subprocesses)."""
    home = tmp_path / "inferno-home"
    monkeypatch.setenv("INFERNO_HOME", str(home))
    monkeypatch.delenv("INFERNO_API_KEY", raising=False)
    return home


@pytest.fixture
def inferno_register() -> Iterator[Callable[..., str]]:
    """register(plugin, name=None) → name; every plugin registered here is unregistered after the test."""
    from inferno import pluginmanager

    names: list[str] = []

    def register(plugin: object, name: str | None = None) -> str:
        registered = pluginmanager.register(plugin, name=name)
        names.append(registered)
        return registered

    yield register
    for name in names:
        pluginmanager.unregister(name)


@pytest.fixture(scope="session")
def inferno_tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic llama GGUF (random weights, byte vocabulary): loads in milliseconds, generates noise."""
    from inferno.testing_gguf import write_tiny_gguf

    return write_tiny_gguf(tmp_path_factory.mktemp("inferno-gguf") / "tiny.gguf")


@pytest.fixture
def inferno_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """start(models={"name": path}, env={...}) → a real `inferno serve` on a free loopback port, with those
    GGUF files linked into a fresh store; stopped after the test."""
    started: list[RunningServer] = []

    def start(models: dict[str, Path] | None = None, env: dict[str, str] | None = None,
              timeout: float = 60.0) -> RunningServer:
        from inferno.config import load_settings
        from inferno.host import Inferno

        home = tmp_path / f"inferno-server-{len(started)}"
        host = Inferno(load_settings({"INFERNO_HOME": str(home)}))
        for name, path in (models or {}).items():
            host.import_file(Path(path), name, source=str(path), mode="link")
        server = start_inferno(home, env=env, timeout=timeout)
        started.append(server)
        return server

    yield start
    for server in started:
        stop(server.process)
