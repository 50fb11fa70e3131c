"""Reading a model folder written by the original inferno, so users who move over keep their models.

A leaf below the store: it turns an old info.json into the fields of today's, and knows nothing of the store
itself (the store builds and validates the ModelInfo, and hands in how to hash a file).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from inferno.names import contained, normalize_name


def legacy_fields(d: Path, data: dict[str, Any], known: Collection[str], hash_file: Callable[[Path], str] | None,
                  ) -> dict[str, Any]:
    """Today's info.json fields from one of the original inferno: repo_id, name, downloaded_at, filename, path,
    max_context. The folder's name is the model's name (it is how the store finds it); a file outside the
    folder is treated as linked, so removing the model never deletes it. hash_file None: leave the digest
    empty (a listing, which must stay cheap); keys of `known` are today's fields, the rest are kept as extras."""
    name = normalize_name(d.name)
    recorded = Path(str(data.get("path") or ""))
    filename = str(data.get("filename") or recorded.name)
    inside = contained(d, filename)
    file = inside if inside.is_file() or not recorded.is_absolute() or not recorded.is_file() else recorded
    stat = file.stat()  # no file: not a model (FileNotFoundError)
    linked = file.resolve().parent != d.resolve()
    repo_id = data.get("repo_id")
    return {
        **{k: v for k, v in data.items() if k not in known},
        "name": name, "path": str(file), "filename": file.name, "linked": linked,
        "source": str(data.get("source") or (f"hf:{repo_id}" if repo_id else f"file:{file}")),
        "downloaded_at": data.get("downloaded_at") or datetime.fromtimestamp(stat.st_mtime, timezone.utc),
        "size": stat.st_size, "sha256": hash_file(file) if hash_file is not None else "",
        "max_context": data.get("max_context")}
