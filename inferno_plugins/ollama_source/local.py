"""A local Ollama store (`OLLAMA_MODELS`, else `~/.ollama/models`): manifests under
`manifests/<host>/<namespace>/<model>/<tag>`, layers as `blobs/sha256-<hex>`. Read only: models are imported by
reference to the blobs in place (no multi-GB copy), so removing them from Inferno never touches Ollama's files.

Every path is built from checked names through the store's confining function (`contained`), one folder at a
time: a `..`, a non-hex digest or a symlink that leads out of the Ollama store is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from inferno.api import BadRequestError, SourceError, contained

from .names import OllamaName, parse_name
from .registry import MAX_MANIFEST, MAX_SMALL_LAYER, Layer, parse_layer


def models_root() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models").expanduser()


def _inside(folder: Path, *names: str) -> Path:
    path = folder
    for part in names:
        try:
            path = contained(path, part, "model")
        except BadRequestError:
            raise BadRequestError(f"{'/'.join(names)!r} leads outside the Ollama store {folder}",
                                  param="model") from None
    return path


def manifest(root: Path, name: OllamaName) -> list[Layer]:
    path = _inside(root, "manifests", name.host, name.namespace, name.model, name.tag)
    if not path.is_file():
        raise SourceError(f"{name.shown} is not in the Ollama store at {root}{_have(root)}")
    if path.stat().st_size > MAX_MANIFEST:
        raise SourceError(f"the manifest of {name.shown} in {root} is larger than {MAX_MANIFEST} bytes")
    try:
        return [parse_layer(item) for item in json.loads(path.read_bytes())["layers"]]
    except (ValueError, KeyError, TypeError) as e:
        raise SourceError(f"the manifest of {name.shown} in {root} is not a model manifest ({e})") from None


def has(root: Path, name: OllamaName) -> bool:
    return _inside(root, "manifests", name.host, name.namespace, name.model, name.tag).is_file()


def blob(root: Path, layer: Layer, shown: str) -> Path:
    """The layer's blob file, checked to be a plain file of the manifest's size inside the store's blobs."""
    path = _inside(root, "blobs", f"sha256-{layer.hex}")
    if not path.is_file():
        raise SourceError(f"layer {layer.hex[:12]} of {shown} is missing from {root / 'blobs'}")
    if path.stat().st_size != layer.size:
        raise SourceError(f"layer {layer.hex[:12]} of {shown} in {root} is {path.stat().st_size} bytes, "
                          f"not the manifest's {layer.size}")
    return path


def small(root: Path, layer: Layer, shown: str) -> bytes:
    if layer.size > MAX_SMALL_LAYER:
        raise SourceError(f"the {layer.media_type} layer of {shown} is {layer.size} bytes, too large for text")
    data = blob(root, layer, shown).read_bytes()
    if hashlib.sha256(data).hexdigest() != layer.hex:
        raise SourceError(f"layer {layer.hex[:12]} of {shown} in {root} is corrupt: its sha256 is not {layer.digest}")
    return data


def listing(root: Path) -> list[str]:
    """Every model:tag the store holds, as Ollama names them; entries with odd names or links are skipped."""
    found: list[str] = []
    base = root / "manifests"

    def plain_dirs(folder: Path) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(folder) if e.is_dir(follow_symlinks=False))
        except OSError:
            return []

    for host in plain_dirs(base):
        for ns in plain_dirs(base / host):
            for model in plain_dirs(base / host / ns):
                try:
                    entries = os.scandir(base / host / ns / model)
                    tags = sorted(e.name for e in entries if e.is_file(follow_symlinks=False))
                except OSError:
                    continue
                for tag in tags:
                    try:
                        found.append(parse_name(f"{host}/{ns}/{model}:{tag}", "ollama-local").shown)
                    except BadRequestError:
                        continue
    return found


def _have(root: Path) -> str:
    names = listing(root)
    if not names:
        return " (it holds no models)"
    return f"; it holds: {', '.join(names[:20])}" + (" …" if len(names) > 20 else "")
