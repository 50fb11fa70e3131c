"""The `local` source: import a .gguf file from disk, copied into the store or linked in place (--link)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inferno.api import BadRequestError, Chooser, Fetched, ModelRef, Progress, hookimpl, name_from


def _expand(text: str) -> Path:
    try:
        return Path(text).expanduser()
    except RuntimeError:  # "~someone" with no such user: take it literally
        return Path(text)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # NUL bytes, names too long for the filesystem
        return False


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
        path = _expand(identifier)
        looks_like_path = identifier.startswith(("./", "../", "/", "~")) or (
            identifier.endswith(".gguf") and ":" not in identifier)
        if not (prefixed or _is_file(path) or looks_like_path):
            return None
        return ModelRef(source=self.name, identifier=str(path.absolute()), default_name=name_from(path.stem),
                        path=str(path.absolute()))

    def fetch(self, ref: ModelRef, *, progress: Progress, staging: Path, choose: Chooser | None,
              options: dict[str, Any]) -> Fetched:
        path = Path(getattr(ref, "path", ref.identifier))
        if not _is_file(path):
            raise BadRequestError(f"not a file: {path}" if path.is_dir() else f"no such file: {path}")
        try:
            with path.open("rb") as f:
                magic = f.read(4)
        except OSError as e:
            raise BadRequestError(f"cannot read {path}: {e.strerror}") from None
        if magic != b"GGUF":
            raise BadRequestError(f"{path} is not a GGUF file")
        return Fetched(path=path, mode="link" if options.get("link") else "copy")


@hookimpl
def register_model_sources(register: Any) -> None:
    register(LocalSource())
