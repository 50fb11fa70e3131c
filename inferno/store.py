"""The model store: <models_dir>/<name>/info.json beside the GGUF (or a link to a file imported in place).

A model exists only once its info.json is in place, and info.json is written last, by rename: a download or
copy that dies half way leaves no listed model.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from inferno.errors import BadRequestError, InfernoError, ModelNotFoundError

# The one guard every name and file name from outside passes (re-exported here: the store is where it lives).
from inferno.names import INFO, _shown, contained, normalize_name, safe_filename
from inferno.names import display_name as display_name
from inferno.store_adapters import AdapterModels
from inferno.store_legacy import legacy_fields

BLOBS = ".blobs"
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
PARTIAL = ".partial"
_CHUNK = 4 * 1024 * 1024

Progress = Callable[[int, "int | None", str], None]


def _no_progress(completed: int, total: int | None, status: str) -> None:
    pass


class ModelInfo(BaseModel):
    """What info.json holds. Unknown keys are kept, so plugins can record their own facts."""

    model_config = ConfigDict(extra="allow")

    name: str
    path: str
    filename: str
    source: str
    downloaded_at: datetime
    size: int = Field(ge=0)
    sha256: str
    linked: bool = False
    max_context: int | None = None
    quantization_type: str | None = None
    architecture: str | None = None
    parameter_count: int | None = None
    # the model's own settings (/api/create: a Modelfile's SYSTEM, TEMPLATE and PARAMETER lines)
    system: str | None = None
    template: str | None = None
    parameters: dict[str, Any] | None = None  # sampling options by their core names (temperature, stop …)
    mmproj: str | None = None  # a vision model's projector file (llama.cpp's mtmd), beside the model
    # an adapter model (`inferno create NAME --from BASE --adapter FILE`): the base model it runs on (its weights,
    # loaded once for all its adapter models) and its LoRA adapters, files in its own folder: {filename, scale}
    base: str | None = None
    adapters: builtins.list[dict[str, Any]] | None = None
    draft: str | None = None  # a store model that drafts for this one (speculative decoding; inferno/drafts.py)

    @field_validator("downloaded_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        # older info.json files hold naive local times; compare them with aware ones safely
        return v if v.tzinfo is not None else v.astimezone(timezone.utc)

    @property
    def file(self) -> Path:
        return Path(self.path)

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha256}"


def sha256_file(path: Path, progress: Progress = _no_progress, status: str = "verifying sha256 digest") -> str:
    total = path.stat().st_size
    h = hashlib.sha256()
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            done += len(chunk)
            progress(done, total, status)
    return h.hexdigest()


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write a file whole or not at all: a temporary file beside it (`.tmp-*`), flushed to disk, then renamed
    over it — a reader, or a restart after a crash, sees the old content or the new, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Store(AdapterModels):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, name: str, param: str = "model") -> Path:
        d = self.root / normalize_name(name, param)
        # Belt and braces: the name rules already forbid separators and "..".
        if d.resolve().parent != self.root.resolve():
            raise BadRequestError(f"invalid {param} {_shown(name)}", param=param)
        return d

    def staging_dir(self) -> Path:
        """Where sources download: same filesystem as the store, so the final move is a rename."""
        d = self.root / PARTIAL
        d.mkdir(parents=True, exist_ok=True)
        return d

    def exists(self, name: str) -> bool:
        try:
            return (self._dir(name) / INFO).is_file()
        except BadRequestError:
            return False

    def get(self, name: str, param: str = "model", *, complete: bool = True) -> ModelInfo:
        """The model called name; complete=False: as list() reads it (no hashing of an old store's file)."""
        d = self._dir(name, param)
        try:
            return self._read(d, complete=complete)
        except FileNotFoundError:
            raise ModelNotFoundError(name) from None
        except (ValidationError, ValueError, OSError, InfernoError) as e:
            raise ModelNotFoundError(name) from e

    def list(self) -> builtins.list[ModelInfo]:
        out = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir()):
            if d.name.startswith(".") or not (d / INFO).is_file():
                continue
            with contextlib.suppress(ValidationError, ValueError, OSError, InfernoError):
                out.append(self._read(d, complete=False))
        return out

    def _read(self, d: Path, *, complete: bool) -> ModelInfo:
        """The model in folder d. An info.json written by the original inferno (no source, size or digest)
        is read too: its missing fields are filled from the file, and with complete=True (a model being
        used, not just listed) its sha256 is computed once and the upgraded info.json written back."""
        data = json.loads((d / INFO).read_bytes())
        try:
            return ModelInfo.model_validate(data)
        except ValidationError:
            if not isinstance(data, dict) or not (data.get("filename") or data.get("path")):
                raise
        info = ModelInfo.model_validate(legacy_fields(d, data, ModelInfo.model_fields,
                                                      sha256_file if complete else None))
        if complete:
            with contextlib.suppress(OSError):
                atomic_write(d / INFO, info.model_dump_json(indent=2))
        return info

    def add(self, name: str, file: Path, *, source: str, mode: str = "copy",
            progress: Progress = _no_progress, extra: dict[str, Any] | None = None,
            sha256: str | None = None, filename: str | None = None,
            parts: builtins.list[tuple[Path, str]] | None = None,
            projector: tuple[Path, str] | None = None) -> ModelInfo:
        """Register file under name. mode: "copy", "move" (a finished download) or "link" (in place).

        parts: the other files of a split GGUF as (file, name), placed beside it (llama.cpp finds them there).
        projector: a vision model's mmproj file as (file, name), placed beside it (referenced in place when
        the model is linked).
        """
        canonical = normalize_name(name)
        file = Path(file)
        if not file.is_file():
            raise BadRequestError(f"no such file: {file}")
        d = self._dir(canonical)
        if filename is None:  # the name of a user's own file: kept when it is safe, else a plain one
            filename = file.name if _is_safe(file.name) else f"{canonical.replace(':', '-')}.gguf"
        # every name is checked before anything is written
        target = file.resolve() if mode == "link" else contained(d, filename)
        part_targets = [(part, contained(d, part_name)) for part, part_name in parts or []]
        d.mkdir(parents=True, exist_ok=True)
        size = file.stat().st_size
        if mode == "link":
            digest = sha256 or sha256_file(target, progress)
        else:
            digest = self._place(file, target, mode, progress, sha256)
        extra = dict(extra or {})
        for part, part_target in part_targets:
            size += part.stat().st_size
            self._place(part, part_target, "move" if mode == "move" else "copy", _no_progress, "-")
            extra.setdefault("parts", []).append(part_target.name)
        if projector is not None:
            proj, proj_name = projector
            if mode == "link":
                extra["mmproj"] = str(Path(proj).resolve())
            else:
                proj_target = contained(d, proj_name)
                self._place(proj, proj_target, "move" if mode == "move" else "copy", _no_progress, "-")
                extra["mmproj"] = str(proj_target)
            size += Path(extra["mmproj"]).stat().st_size
        old = self._previous_file(d)
        info = ModelInfo(name=canonical, path=str(target), filename=target.name, source=source,
                         downloaded_at=datetime.now(timezone.utc), size=size, sha256=digest,
                         linked=mode == "link", **extra)
        atomic_write(d / INFO, info.model_dump_json(indent=2))
        if old is not None and old != target and old.resolve().parent == d.resolve():
            with contextlib.suppress(OSError):
                old.unlink()
        return info

    def _previous_file(self, d: Path) -> Path | None:
        try:
            return ModelInfo.model_validate_json((d / INFO).read_bytes()).file
        except (OSError, ValidationError):
            return None

    def _place(self, file: Path, target: Path, mode: str, progress: Progress, sha256: str | None) -> str:
        """Put file at target through a temp name in the target's folder; return its sha256."""
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".gguf")
        tmp = Path(tmp_name)
        try:
            if mode == "move":
                os.close(fd)
                os.replace(file, tmp)
                digest = sha256 or sha256_file(tmp, progress)
            else:
                h = hashlib.sha256()
                total, done = file.stat().st_size, 0
                with os.fdopen(fd, "wb") as out, file.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        progress(done, total, "copying")
                    out.flush()
                    os.fsync(out.fileno())
                digest = h.hexdigest()
            os.replace(tmp, target)
            return digest
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def remove(self, name: str) -> ModelInfo:
        info = self.get(name)
        shutil.rmtree(self._dir(name))
        return info

    def copy(self, source: str, destination: str) -> ModelInfo:
        dst = normalize_name(destination, "destination")
        info = self.get(source, "source")
        if dst == info.name:
            raise BadRequestError("source and destination are the same model", param="destination")
        d = self._dir(dst, "destination")
        extra = info.model_dump(exclude={"name", "path", "downloaded_at", "linked"})
        names = [] if info.linked else [info.filename, *((info.model_extra or {}).get("parts") or [])]
        if info.mmproj and not info.linked:
            names.append(Path(info.mmproj).name)
        # names read back from info.json are checked like any other: a tampered one cannot reach out
        pairs = [(contained(info.file.parent, n), contained(d, n)) for n in names]
        pairs += [(contained(self._dir(info.name), n), contained(d, n))  # an adapter model's own adapter files
                  for n in (str(a.get("filename")) for a in info.adapters or [])]
        d.mkdir(parents=True, exist_ok=True)
        target = info.file if info.linked else pairs[0][1]
        for src, dst_file in pairs:
            tmp = d / f".tmp-{dst_file.name}"
            try:  # a hard link costs no space; fall back to a copy across filesystems
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            os.replace(tmp, dst_file)
        if info.mmproj and not info.linked:
            extra["mmproj"] = str(contained(d, Path(info.mmproj).name))
        new = ModelInfo(name=dst, path=str(target), linked=info.linked,
                        downloaded_at=datetime.now(timezone.utc), **extra)
        atomic_write(d / INFO, new.model_dump_json(indent=2))
        return new

    def set_projector(self, name: str, file: Path, filename: str, *, mode: str = "copy") -> ModelInfo:
        """Give a stored model its vision projector (mmproj) file: placed beside it, or referenced in place when
        mode is "link" or the model itself is linked."""
        info = self.get(name)
        file = Path(file)
        if mode == "link" or info.linked:
            target = file.resolve()
        else:
            target = contained(info.file.parent, filename)
            self._place(file, target, "move" if mode == "move" else "copy", _no_progress, "-")
        size = info.size + target.stat().st_size
        if info.mmproj and Path(info.mmproj).is_file():
            size -= Path(info.mmproj).stat().st_size
            if Path(info.mmproj) != target and Path(info.mmproj).parent == info.file.parent and not info.linked:
                with contextlib.suppress(OSError):
                    Path(info.mmproj).unlink()
        return self.update(info.name, mmproj=str(target), size=size)

    def update(self, name: str, **fields: Any) -> ModelInfo:
        info = self.get(name)
        data = info.model_dump() | fields
        new = ModelInfo.model_validate(data)
        atomic_write(self._dir(name) / INFO, new.model_dump_json(indent=2))
        return new

    # blobs: raw files uploaded before a model is created from them (Ollama's /api/blobs) ----------------

    def blob_path(self, digest: str, param: str = "digest") -> Path:
        m = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
        if not m:
            raise BadRequestError(f"invalid {param} digest {_shown(str(digest))}: expected sha256: and 64 "
                                  "lowercase hex digits", param=param)
        return self.root / BLOBS / f"sha256-{m.group(1)}"

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def prune_blobs(self, grace: float, keep: set[str] | frozenset[str] = frozenset()) -> builtins.list[str]:
        """Remove uploaded blobs (and abandoned partial uploads) last written more than grace seconds ago, but
        those in keep (digests a running create still reads): a blob is only the input of a create, which copies
        it into the model, so an old one is an orphan. Returns the names removed."""
        folder = self.root / BLOBS
        removed: builtins.list[str] = []
        now = time.time()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return removed
        for entry in entries:
            digest = "sha256:" + entry.name.removeprefix("sha256-")
            try:
                old = now - entry.stat(follow_symlinks=False).st_mtime > grace
            except OSError:
                continue
            if old and digest not in keep and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(entry.name)
        return removed

    def open_blob_writer(self, digest: str) -> BlobWriter:
        path = self.blob_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        return BlobWriter(path)


class BlobWriter:
    """Write to a temp file, check the sha256, rename into place; anything else leaves nothing behind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        self.tmp = Path(name)
        self.file = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.hash.update(chunk)

    def commit(self) -> None:
        self.file.close()
        expected = self.path.name.removeprefix("sha256-")
        if self.hash.hexdigest() != expected:
            self.abort()
            raise BadRequestError(f"digest mismatch: the body's sha256 is {self.hash.hexdigest()}, not {expected}")
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink()


def _is_safe(name: str) -> bool:
    try:
        safe_filename(name)
    except BadRequestError:
        return False
    return True

