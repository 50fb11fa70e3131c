"""The plugin contract. Every hook is documented in docs/plugins.md and tested (tests/test_hooks_documented.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import click
    from quart import Quart

    from inferno.host import Inferno
    from inferno.sources import ModelSource
    from inferno.store import ModelInfo, Progress

hookspec = pluggy.HookspecMarker("inferno")
hookimpl = pluggy.HookimplMarker("inferno")


@hookspec
def register_model_sources(register: Callable[[ModelSource], None]) -> None:
    """Call register(source) for each ModelSource this plugin provides. Sync only."""


@hookspec
def read_model_metadata(path: Path) -> dict[str, Any] | None:
    """Return normalised metadata fields read from the model file at path, or None. Sync only."""


@hookspec
def register_routes(app: Quart, inferno: Inferno) -> None:
    """Mount an API dialect's routes (a Quart blueprint) on the server's app. Sync only."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the inferno CLI; called while the CLI is built, never at import. Sync only."""


@hookspec(firstresult=True)
def quantize_model(inferno: Inferno, source: str, target: str, method: str, progress: Progress,
                   options: dict[str, Any]) -> ModelInfo | None:
    """Quantize the local model source into a new model target; return its ModelInfo. Sync; first wins."""


@hookspec(firstresult=True)
def convert_model(inferno: Inferno, source: str, target: str, outtype: str, progress: Progress,
                  options: dict[str, Any]) -> ModelInfo | None:
    """Convert a Hugging Face-format model (a local folder, or an identifier such as hf:owner/repo) into a new
    GGUF model target; return its ModelInfo. Sync; first wins."""


@hookspec
def startup(inferno: Inferno) -> Awaitable[None] | None:
    """Run once when the server starts serving; may be async (awaited)."""


@hookspec
def shutdown(inferno: Inferno) -> Awaitable[None] | None:
    """Run once when the server stops, after in-flight requests end; may be async (awaited)."""
