"""/api/create's `adapters`: LoRA adapter GGUF blobs attached to a stored base model (an adapter model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inferno.api import BadRequestError, safe_filename


def adapter_blobs(store: Any, adapters: dict[str, str] | None) -> list[tuple[Path, str]]:
    """/api/create's adapters (file name → uploaded blob digest) as (blob, name): names and digests checked by the
    store's guards, every blob uploaded."""
    out = []
    for name, digest in (adapters or {}).items():
        safe_filename(name, "adapters")
        blob = store.blob_path(digest, "adapters")
        if not blob.is_file():
            raise BadRequestError(f"blob {digest} was not uploaded; POST it to /api/blobs/{digest}", param="adapters")
        out.append((blob, name))
    return out
