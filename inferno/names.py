"""Names that reach the store from outside — model names and file names — and the one guard they pass.

Kept apart from store.py (which re-exports them) so the rules are read in one place.
"""

from __future__ import annotations

import re
from pathlib import Path

from inferno.errors import BadRequestError

_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_NAME = re.compile(rf"^(?P<base>{_PART})(?::(?P<tag>{_PART}))?$")
INFO = "info.json"
_MAX_FILENAME_BYTES = 255  # NAME_MAX on the usual filesystems


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def normalize_name(name: str, param: str = "model") -> str:
    """Canonical store name: `name:latest` is `name`; anything that could leave the store is refused.

    param names the request field the name came from, for the error.
    """
    if not isinstance(name, str) or not name:
        raise BadRequestError(f"{param} must not be empty", param=param)
    m = _NAME.fullmatch(name)
    if not m or ".." in name:
        raise BadRequestError(f"invalid model name {_shown(name)} for {param}: use letters, digits, '.', '_', '-' "
                              "and an optional ':tag'", param=param)
    base, tag = m.group("base"), m.group("tag")
    return base if tag in (None, "latest") else f"{base}:{tag}"


def safe_filename(name: str, param: str = "filename") -> str:
    """name, if it is a plain base name that stays inside whatever folder it is joined to; else a 400.

    The one gate for every file name that reaches the store from outside (an /api/create `files` key, a name in
    a Hugging Face listing or a wheel, a quantizer output): no separator of any platform, no `..`, not absolute,
    no drive letter or alternate stream (no `:` at all), no `%` escape, no NUL or other control character, not
    hidden (the store's own files start with a dot), not info.json, and at most 255 bytes.
    """
    if not isinstance(name, str) or not name:
        raise BadRequestError(f"{param} must not be an empty file name", param=param)
    why = None
    if "/" in name or "\\" in name:
        why = "has a path separator"
    elif ".." in name:
        why = "contains '..'"
    elif name.startswith("."):
        why = "starts with '.'"
    elif ":" in name:
        why = "contains ':' (a drive letter or stream)"
    elif "%" in name:
        why = "contains '%' (an escape that something may decode later)"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        why = "has a control character"
    elif name == INFO:
        why = "is the store's own info.json"
    elif len(name.encode("utf-8", "surrogatepass")) > _MAX_FILENAME_BYTES:
        why = f"is longer than {_MAX_FILENAME_BYTES} bytes"
    if why:
        raise BadRequestError(f"invalid {param} {_shown(name)}: a file name {why}; give a plain base name",
                              param=param)
    return name


def contained(folder: Path, name: str, param: str = "filename") -> Path:
    """folder / name, after safe_filename, resolved and checked to be directly inside folder (a second
    guard: whatever a future caller passes, the final path cannot leave the folder, even through a link)."""
    path = Path(folder) / safe_filename(name, param)
    if path.resolve().parent != Path(folder).resolve():
        raise BadRequestError(f"invalid {param} {_shown(name)}: it resolves outside the model's folder",
                              param=param)
    return path


def display_name(name: str) -> str:
    """Ollama shows every model with its tag: `smollm2` → `smollm2:latest`."""
    return name if ":" in name else f"{name}:latest"
