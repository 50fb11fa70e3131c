"""The `local` source: import a .gguf file from disk, copied into the store or linked in place (--link)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inferno.errors import BadRequestError
from inferno.hookspecs import hookimpl
from inferno.sources import Chooser, Fetched, ModelRef, name_from
from inferno.store import Progress


class LocalSource:
    name = "local"
    prefixes = ("file", "local")
    priority = 0

    def parse(self, identifier: str) -> ModelRef | None:
        prefixed = False
        for prefix in self.prefixes:
            if identifier.startswith(prefix + ":"):
                identifier, prefixed = identifier[len(prefix) + 1:].removeprefix("//"), True
                break
        path = Path(identifier).expanduser()
        looks_like_path = identifier.startswith(("./", "../", "/", "~")) or (
            identifier.endswith(".gguf") and ":" not in identifier)
        if not (prefixed or path.is_file() or looks_like_path):
            return None
        return ModelRef(source=self.name, identifier=str(path.absolute()), default_name=name_from(path.stem),
                        path=str(path.absolute()))

    def fetch(self, ref: ModelRef, *, progress: Progress, staging: Path, choose: Chooser | None,
              options: dict[str, Any]) -> Fetched:
        path = Path(getattr(ref, "path", ref.identifier))
        if not path.exists():
            raise BadRequestError(f"no such file: {path}")
        if not path.is_file():
            raise BadRequestError(f"not a file: {path}")
        with path.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise BadRequestError(f"{path} is not a GGUF file")
        return Fetched(path=path, mode="link" if options.get("link") else "copy")


@hookimpl
def register_model_sources(register: Any) -> None:
    register(LocalSource())
