"""A model source in one file: `dir:FOLDER[:NAME]` links FOLDER/NAME.gguf into the store (no copy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inferno.api import Fetched, ModelRef, SourceError, hookimpl, name_from


class DirSource:
    name = "dir"
    prefixes = ("dir",)
    priority = 40  # asked after the local source, before the network ones

    def parse(self, identifier: str) -> ModelRef | None:
        if not identifier.startswith("dir:"):
            return None  # no I/O here: just take the identifier apart
        folder, _, stem = identifier[4:].partition(":")
        return ModelRef(source=self.name, identifier=identifier, folder=folder, stem=stem or None,
                        default_name=name_from(stem or Path(folder).name))

    def fetch(self, ref: ModelRef, *, progress: Any, staging: Path, choose: Any, options: dict[str, Any]) -> Fetched:
        folder = Path(ref.folder).expanduser()  # type: ignore
        ggufs = sorted(p.stem for p in folder.glob("*.gguf")) if folder.is_dir() else []
        if not ggufs:
            raise SourceError(f"no .gguf files in {folder}")
        stem = ref.stem or (ggufs[0] if len(ggufs) == 1 else None)  # type: ignore
        if stem is None and choose is not None:
            stem = choose(f"{folder} holds several models", ggufs)
        if stem not in ggufs:
            raise SourceError(f"pick one of {', '.join(ggufs)} with dir:{folder}:NAME")
        progress(1, 1, f"linking {stem}.gguf")
        return Fetched(path=folder / f"{stem}.gguf", mode="link")


@hookimpl
def register_model_sources(register: Any) -> None:
    register(DirSource())
