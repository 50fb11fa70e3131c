"""Reading a model folder written by the original inferno, so users who move over keep their models."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from inferno.store import ModelInfo, contained, normalize_name, sha256_file


def legacy_info(d: Path, data: dict[str, Any], complete: bool) -> ModelInfo:
    """A ModelInfo from an info.json of the original inferno: repo_id, name, downloaded_at, filename, path,
    max_context. The folder's name is the model's name (it is how the store finds it); a file outside the
    folder is treated as linked, so removing the model never deletes it."""
    name = normalize_name(d.name)
    recorded = Path(str(data.get("path") or ""))
    filename = str(data.get("filename") or recorded.name)
    inside = contained(d, filename)
    file = inside if inside.is_file() or not recorded.is_absolute() or not recorded.is_file() else recorded
    stat = file.stat()  # no file: not a model (FileNotFoundError)
    linked = file.resolve().parent != d.resolve()
    repo_id = data.get("repo_id")
    fields = {k: v for k, v in data.items() if k not in ModelInfo.model_fields}
    return ModelInfo(
        name=name, path=str(file), filename=file.name, linked=linked,
        source=str(data.get("source") or (f"hf:{repo_id}" if repo_id else f"file:{file}")),
        downloaded_at=data.get("downloaded_at") or datetime.fromtimestamp(stat.st_mtime, timezone.utc),
        size=stat.st_size, sha256=sha256_file(file) if complete else "",
        max_context=data.get("max_context"), **fields)
