"""One test per hook: a throwaway plugin registered for the test, driven the way users reach it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner

from inferno import pluginmanager
from inferno.cli import build_cli
from inferno.hookspecs import hookimpl
from inferno.host import Inferno
from inferno.metadata import read_metadata
from inferno.sources import Fetched, ModelRef
from inferno.testing_server import start_inferno, stop

from .test_plugins import _fake_distribution


class _Registered:
    def __init__(self, plugin: object) -> None:
        self.plugin = plugin

    def __enter__(self) -> object:
        self.name = pluginmanager.register(self.plugin)
        return self.plugin

    def __exit__(self, *exc: object) -> None:
        pluginmanager.unregister(self.name)


def test_hook_register_model_sources(home: Path, tiny_gguf: Path) -> None:
    class DirSource:
        name, prefixes, priority = "dir", ("dir",), 40

        def parse(self, identifier: str) -> ModelRef | None:
            if not identifier.startswith("dir:"):
                return None
            return ModelRef(source="dir", identifier=identifier, default_name=identifier[4:])

        def fetch(self, ref: ModelRef, **_: Any) -> Fetched:
            return Fetched(path=tiny_gguf, mode="link")

    class Plugin:
        @hookimpl
        def register_model_sources(self, register: Any) -> None:
            register(DirSource())

    with _Registered(Plugin()):
        info, _ = Inferno().pull("dir:from-a-plugin")
    assert info.name == "from-a-plugin" and info.linked and info.source == "dir:from-a-plugin"


def test_hook_read_model_metadata(tiny_gguf: Path) -> None:
    class Plugin:
        @hookimpl
        def read_model_metadata(self, path: Path) -> dict[str, Any]:
            return {"context_length": 4242, "note": "from a plugin"}

    with _Registered(Plugin()):
        meta = read_metadata(tiny_gguf)
    assert meta.context_length == 4242 and meta.architecture == "llama"
    assert read_metadata(tiny_gguf).context_length == 2048


def test_hook_register_routes(host: Inferno) -> None:
    from inferno.server import create_app

    class Plugin:
        @hookimpl
        def register_routes(self, app: Any, inferno: Inferno) -> None:
            @app.get("/hello")
            async def hello() -> Any:
                return {"models": [m.name for m in inferno.store.list()]}

    async def call() -> Any:
        with _Registered(Plugin()):
            app = create_app(host)
        client = app.test_client()
        response = await client.get("/hello")
        return response.status_code, await response.get_json()

    assert asyncio.run(call()) == (200, {"models": ["tiny"]})


def test_hook_register_commands() -> None:
    class Plugin:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            @cli.command()
            def greet() -> None:
                """Say hello."""
                click.echo("hello from a hook")

    with _Registered(Plugin()):
        result = CliRunner().invoke(build_cli(), ["greet"])
    assert result.exit_code == 0 and result.stdout == "hello from a hook\n"


LIFECYCLE = """
import os
from pathlib import Path
from inferno.hookspecs import hookimpl

@hookimpl
async def startup(inferno):
    Path(os.environ["LIFECYCLE_LOG"]).open("a").write("startup\\n")

@hookimpl
def shutdown(inferno):
    Path(os.environ["LIFECYCLE_LOG"]).open("a").write("shutdown\\n")
"""


def _serve_with_lifecycle_plugin(tmp_path: Path, home: Path) -> Path:
    site = _fake_distribution(tmp_path / "site", "lifecycle_plugin", LIFECYCLE)
    log = tmp_path / "lifecycle.log"
    server = start_inferno(home, env={"PYTHONPATH": str(site), "LIFECYCLE_LOG": str(log)})
    try:
        assert log.read_text() == "startup\n"
    finally:
        stop(server.process)
    return log


def test_hook_startup(tmp_path: Path, host: Inferno) -> None:
    log = _serve_with_lifecycle_plugin(tmp_path, host.settings.home)
    assert log.read_text().splitlines()[0] == "startup"


def test_hook_shutdown(tmp_path: Path, host: Inferno) -> None:
    log = _serve_with_lifecycle_plugin(tmp_path, host.settings.home)
    assert log.read_text().splitlines() == ["startup", "shutdown"]
