"""An Ollama registry, as its clients see it: an OCI distribution registry serving a model's manifest by tag and
its layers as blobs by digest (`/v2/<namespace>/<model>/manifests/<tag>`, `/v2/<namespace>/<model>/blobs/<digest>`).

The base URL is Ollama's public registry, or `INFERNO_OLLAMA_REGISTRY` (a mirror, a test stand-in); a name
that carries its own host (`host/ns/model:tag`) is fetched from that host over HTTPS.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferno.api import Progress, SourceError, download, layer_status

from .names import DEFAULT_HOST, OllamaName

# what `ollama pull` accepts: Docker's manifest v2 (what the public registry serves) and OCI's
ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_MANIFEST = 1 << 20
MAX_SMALL_LAYER = 4 << 20  # template, system, params, license: text, never this large


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str  # sha256:<64 hex>, checked
    size: int

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")


def base_url(name: OllamaName) -> str:
    if name.host != DEFAULT_HOST:
        return f"https://{name.host}"
    return (os.environ.get("INFERNO_OLLAMA_REGISTRY") or f"https://{DEFAULT_HOST}").rstrip("/")


def _url(name: OllamaName, kind: str, ref: str) -> str:
    return f"{base_url(name)}/v2/{name.namespace}/{name.model}/{kind}/{ref}"


def manifest(name: OllamaName) -> list[Layer]:
    """The layers of name's manifest, every digest and size checked; one clear line when there is none."""
    import httpx

    where = base_url(name).split("://", 1)[-1]
    try:
        with httpx.stream("GET", _url(name, "manifests", name.tag), headers={"Accept": ACCEPT},
                          follow_redirects=True, timeout=30.0) as r:
            if r.status_code == 404:
                raise SourceError(f"{name.shown} not found on {where} (no such model or tag)")
            if r.status_code != 200:
                raise SourceError(f"the registry {where} answered HTTP {r.status_code} for {name.shown}")
            data = _limited(r, MAX_MANIFEST, f"the manifest of {name.shown}")
    except httpx.HTTPError as e:
        raise SourceError(f"cannot reach the Ollama registry {where}: {type(e).__name__}") from None
    try:
        doc = json.loads(data)
        return [parse_layer(item) for item in doc["layers"]]
    except (ValueError, KeyError, TypeError) as e:
        raise SourceError(f"the manifest of {name.shown} from {where} is not a model manifest ({e})") from None


def parse_layer(item: Any) -> Layer:
    digest, size, media = item["digest"], item["size"], item["mediaType"]
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ValueError(f"a layer's digest {str(digest)[:80]!r} is not sha256: and 64 lowercase hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"a layer's size {size!r} is not a byte count")
    if not isinstance(media, str):
        raise ValueError("a layer has no media type")
    return Layer(media_type=media, digest=digest, size=size)


def _limited(r: Any, limit: int, what: str) -> bytes:
    data = b""
    for chunk in r.iter_bytes():
        data += chunk
        if len(data) > limit:
            raise SourceError(f"{what} is larger than {limit} bytes")
    return data


def small_blob(name: OllamaName, layer: Layer, progress: Progress) -> bytes:
    """A text layer (template, system, params, license), read whole and checked against its digest."""
    import httpx

    if layer.size > MAX_SMALL_LAYER:
        raise SourceError(f"the {layer.media_type} layer of {name.shown} is {layer.size} bytes, too large for text")
    status = layer_status(layer.digest)
    progress(0, layer.size, status)
    try:
        with httpx.stream("GET", _url(name, "blobs", layer.digest), follow_redirects=True, timeout=30.0) as r:
            if r.status_code != 200:
                raise SourceError(f"downloading layer {layer.hex[:12]} of {name.shown} failed: HTTP {r.status_code}")
            data = _limited(r, MAX_SMALL_LAYER, f"layer {layer.hex[:12]} of {name.shown}")
    except httpx.HTTPError as e:
        raise SourceError(f"download of {name.shown} was interrupted ({type(e).__name__}); pull again") from None
    progress(len(data), layer.size, status)
    if hashlib.sha256(data).hexdigest() != layer.hex:
        raise SourceError(f"layer {layer.hex[:12]} of {name.shown} is corrupt: its sha256 is not {layer.digest}")
    return data


def big_blob(name: OllamaName, layer: Layer, staging: Path, progress: Progress) -> Path:
    """A model or projector layer, downloaded into staging under its digest (so a pull killed half way resumes
    there), checked against its size and digest."""
    part = staging / "ollama" / f"sha256-{layer.hex}.partial"
    return download(_url(name, "blobs", layer.digest), part, size=layer.size, sha256=layer.hex,
                    status=layer_status(layer.digest), what=f"layer {layer.hex[:12]} of {name.shown}",
                    progress=progress)
