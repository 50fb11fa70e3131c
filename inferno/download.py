"""One resumable, verified HTTP download for every source that fetches files (hf:, ollama:).

The bytes go to a `.partial` file whose name the caller derives from what it downloads (a digest, an etag), so a
pull killed with `kill -9` resumes with an HTTP Range on the next try; a finished file is checked against its
sha256 and only then handed back, for the caller to rename into the store.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Generator, Mapping
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one pull per blob at a time is then the user's to keep
    fcntl = None

from inferno.errors import SourceError
from inferno.store import Progress, sha256_file

VERIFYING = "verifying sha256 digest"  # Ollama's status line for the check after a download
# connecting may take this long; a stream then silent for READ_TIMEOUT_S is cut and resumed by the next pull
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 30.0, 120.0


def download(url: str, part: Path, *, size: int | None, sha256: str | None, status: str, what: str,
             progress: Progress, headers: Mapping[str, str] | None = None) -> Path:
    """Fetch url into part (resuming what an earlier, interrupted try left there); return the finished file,
    renamed beside part to a name of its own, for the caller to move into the store.

    size: the expected length, when the source knows it (a longer part file is thrown away); sha256: the
    expected digest (a mismatch removes the file and raises); status: the progress line for the bytes; what:
    how the errors name the file ("tiny.gguf from acme/Tiny").
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(part):
        _download(url, part, size=size, sha256=sha256, status=status, what=what, progress=progress,
                  headers=headers)
        # out of the part file's name while still holding it: a pull waiting for the same file then starts its
        # own download instead of taking this one, which this pull is about to move into the store
        done = part.with_name(f".done-{uuid.uuid4().hex[:12]}-{part.name.removesuffix('.partial')}")
        os.replace(part, done)
        return done


@contextlib.contextmanager
def _exclusive(part: Path) -> Generator[None]:
    """One writer per part file, across processes: two pulls (under two names, or two servers on one store)
    that need the same blob take turns, the second finding the file whole or gone into the store.

    The lock file is removed by its holder when done (nothing is left in .partial); a waiter that then gets the
    lock of the removed file sees that the path names another file, or none, and locks again."""
    lock = part.with_name(part.name + ".lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is None:
            break
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # locked a removed lock file: try the current one
    try:
        yield
    finally:
        if fcntl is not None:
            with contextlib.suppress(OSError):
                lock.unlink()  # under the lock: see above
        os.close(fd)


def _download(url: str, part: Path, *, size: int | None, sha256: str | None, status: str, what: str,
              progress: Progress, headers: Mapping[str, str] | None) -> None:
    import httpx

    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if size is None or have < size:
        request_headers = dict(headers or {})
        if have:
            request_headers["Range"] = f"bytes={have}-"
        try:
            # redirects followed: registries send blobs to a CDN (the public Ollama registry answers 307)
            with httpx.stream("GET", url, headers=request_headers, follow_redirects=True,
                              timeout=httpx.Timeout(CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S)) as r:
                if r.status_code == 200:
                    have = 0  # the server ignored the range: start over
                elif r.status_code == 416 and size is None:
                    pass  # nothing past what we have: the file is whole
                elif r.status_code != 206:
                    raise SourceError(f"downloading {what} failed: HTTP {r.status_code}")
                if size is None and r.status_code in (200, 206):
                    size = _total(r.headers, have)
                with part.open("r+b" if have else "wb") as f:
                    f.seek(have)
                    f.truncate()
                    progress(have, size, status)
                    for chunk in r.iter_bytes():  # as they arrive: a cut connection keeps every byte it brought
                        f.write(chunk)
                        f.flush()  # on disk, not in a buffer a kill -9 loses: the next pull resumes from here
                        have += len(chunk)
                        progress(have, size, status)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                part.unlink(missing_ok=True)
                raise SourceError(f"disk full while downloading {what}; the partial file was removed") from None
            raise
        except httpx.HTTPError as e:
            raise SourceError(f"download of {what} was interrupted ({type(e).__name__}); pull again to resume") \
                from None
    if size is not None and part.stat().st_size != size:
        raise SourceError(f"download of {what} is incomplete ({part.stat().st_size} of {size} bytes); "
                          "pull again to resume")
    if sha256:
        got = sha256_file(part, progress, VERIFYING)
        if got != sha256:
            part.unlink()
            raise SourceError(f"{what} is corrupt: its sha256 is {got}, not {sha256}")


def _total(headers: Mapping[str, str], have: int) -> int | None:
    """The whole file's length from a 206's Content-Range (`bytes 10-99/100`) or a 200's Content-Length."""
    rng = headers.get("content-range", "")
    if "/" in rng and rng.rsplit("/", 1)[1].isdigit():
        return int(rng.rsplit("/", 1)[1])
    length = headers.get("content-length", "")
    return have + int(length) if length.isdigit() else None
