"""The Hugging Face source: `hf:owner/repo[@rev][:QUANT|:file.gguf]`, `owner/repo:file.gguf`, `owner/repo`.

Files are downloaded with huggingface_hub into the store's staging folder (not the HF cache), resumed after
an interruption, checked against the Hub's sha256, then moved into the store: `inferno rm` frees the space.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inferno.api import (
    BadRequestError,
    Chooser,
    Fetched,
    ModelRef,
    Progress,
    SourceError,
    available_memory,
    download,
    hookimpl,
    layer_status,
    name_from,
    safe_filename,
)

from . import estimate
from .select import Candidate, by_file, by_quant, candidates, preferred

_PREFIXES = ("hf:", "huggingface:", "hf.co/", "huggingface.co/")
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_IDENT = re.compile(rf"^(?P<repo>{_PART}/{_PART})(?:@(?P<rev>[A-Za-z0-9._/-]+?))?(?::(?P<sel>[^:@/]+))?$")
DEFAULT_CONTEXT = 4096


def _exists(text: str) -> bool:
    try:
        return Path(text).exists()
    except (OSError, ValueError):
        return False


def _base_name(repo: str) -> str:
    name = repo.split("/", 1)[1]
    return name_from(re.sub(r"[-_.]gguf$", "", name, flags=re.I))


class HfSource:
    name = "hf"
    prefixes = ("hf", "huggingface")
    priority = 30

    def parse(self, identifier: str) -> ModelRef | None:
        text, prefixed = identifier, False
        for p in _PREFIXES:
            if text.startswith(p):
                text, prefixed = text[len(p):], True
                break
        m = _IDENT.match(text)
        if not m:
            if prefixed:
                raise BadRequestError(f"not a Hugging Face identifier: {identifier!r} "
                                      "(hf:owner/repo[@revision][:QUANT or :file.gguf])")
            return None
        if not prefixed and _exists(text.split(":")[0]):
            return None  # an existing local path is the local source's
        repo, rev, sel = m.group("repo"), m.group("rev"), m.group("sel")
        filename = quant = None
        if sel and sel.lower().endswith(".gguf"):
            filename = safe_filename(sel, "model")
        elif sel and sel.lower() != "latest":
            if not re.fullmatch(r"[A-Za-z0-9_]+", sel):
                raise BadRequestError(f"{sel!r} is neither a quantization (Q4_K_M) nor a .gguf file name")
            quant = sel.upper()
        base = _base_name(repo)
        default = name_from(Path(filename).stem) if filename else f"{base}:{quant.lower()}" if quant else base
        return ModelRef(source=self.name, identifier=f"hf:{text}", default_name=default, repo=repo,
                        revision=rev, filename=filename, quant=quant)

    def fetch(self, ref: ModelRef, *, progress: Progress, staging: Path, choose: Chooser | None,
              options: dict[str, Any]) -> Fetched:
        if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false"):
            raise SourceError("HF_HUB_OFFLINE is set: cannot download from Hugging Face")
        repo: str = ref.repo  # type: ignore
        revision: str | None = ref.revision  # type: ignore
        progress(0, None, "pulling manifest")
        cands, commit = _list(repo, revision)
        picked, note = _pick(ref, cands, choose)
        _ram_check(repo, commit, picked, progress)
        target_dir = staging / "hf" / repo.replace("/", "--")
        files = picked.files + ([picked.projector] if picked.projector else [])  # a vision model's mmproj too
        paths = [_download(repo, commit, f, target_dir, picked.sha256.get(f), progress) for f in files]
        final = []
        for p in paths:  # out of huggingface_hub's local dir, so its bookkeeping can go
            moved = staging / f".tmp-hf-{uuid.uuid4().hex[:8]}-{p.name}"
            os.replace(p, moved)
            final.append(moved)
        if not any(target_dir.iterdir()):
            target_dir.rmdir()
        first, n = final[0], len(picked.files)
        return Fetched(path=first, mode="move", sha256=picked.sha256.get(picked.first), note=note,
                       filename=Path(picked.first).name, parts=final[1:n],
                       part_names=[Path(f).name for f in picked.files[1:]],
                       projector=final[n] if picked.projector else None,
                       projector_name=Path(picked.projector).name if picked.projector else None,
                       extra={"hf_repo": repo, "hf_revision": commit, "hf_files": picked.files})


    def snapshot(self, ref: ModelRef, *, progress: Progress, staging: Path,
                 select: Callable[[dict[str, int]], list[str]]) -> Path:
        """The repository's top-level files that select({name: size}) picks, downloaded (resumable, checked
        against the Hub's sha256) into one staging folder per repository and commit: for the converter."""
        if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false"):
            raise SourceError("HF_HUB_OFFLINE is set: cannot download from Hugging Face")
        repo: str = ref.repo  # type: ignore
        progress(0, None, "pulling manifest")
        triples, commit = _files(repo, ref.revision)  # type: ignore
        listing = {name: size for name, size, _ in triples if "/" not in name}
        sha = {name: digest for name, _, digest in triples}
        folder = staging / "hf-snapshot" / f"{repo.replace('/', '--')}--{commit[:12]}"
        for name in select(listing):
            final = folder / safe_filename(name, "file")
            if final.is_file() and final.stat().st_size == listing[name]:
                continue  # an earlier conversion of the same commit got this far
            part = _download(repo, commit, name, folder / ".partial", sha.get(name), progress)
            os.replace(part, final)
        return folder


def _hf_error(e: Exception, repo: str) -> SourceError:
    from huggingface_hub.errors import (
        GatedRepoError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(e, GatedRepoError):
        return SourceError(f"{repo} is gated: accept its terms on huggingface.co, then log in with "
                           "`hf auth login` or set HF_TOKEN")
    if isinstance(e, RepositoryNotFoundError):
        return SourceError(f"repository {repo} not found on Hugging Face (if it is private, log in with "
                           "`hf auth login` or set HF_TOKEN)")
    if isinstance(e, RevisionNotFoundError):
        return SourceError(f"revision not found in {repo}")
    if isinstance(e, OfflineModeIsEnabled):
        return SourceError("HF_HUB_OFFLINE is set: cannot download from Hugging Face")
    return SourceError(f"cannot reach Hugging Face for {repo}: {type(e).__name__}: {str(e).splitlines()[0]}")


def _safe_repo_path(name: str) -> bool:
    """A repository's file list is untrusted input: keep a file only when every part of its path is a plain
    name (folders are fine, `..`, absolute paths and backslashes are not)."""
    try:
        for part in name.split("/"):
            safe_filename(part)
    except BadRequestError:
        return False
    return True


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _files(repo: str, revision: str | None) -> tuple[list[tuple[str, int, str | None]], str]:
    """(name, size, sha256 of an LFS file) of every safely named file, and the commit they belong to."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=_endpoint()).model_info(repo, revision=revision, files_metadata=True)
    except Exception as e:
        raise _hf_error(e, repo) from None
    triples = [(s.rfilename, s.size or 0, s.lfs.sha256 if s.lfs else None) for s in info.siblings or []
               if _safe_repo_path(s.rfilename)]
    return triples, info.sha or revision or "main"


def _list(repo: str, revision: str | None) -> tuple[list[Candidate], str]:
    triples, commit = _files(repo, revision)
    cands = candidates(triples)
    if not cands:
        kinds = sorted({t[0].rsplit(".", 1)[-1] for t in triples if t[0].endswith((".safetensors", ".bin", ".pt"))})
        hint = (f" (it holds {', '.join(kinds)} weights: convert them with `inferno convert hf:{repo}`, "
                "or look for a -GGUF repository of the same model)") if kinds else ""
        raise SourceError(f"{repo} has no GGUF files{hint}")
    return cands, commit


def _pick(ref: ModelRef, cands: list[Candidate], choose: Chooser | None) -> tuple[Candidate, str | None]:
    filename: str | None = ref.filename  # type: ignore
    quant: str | None = ref.quant  # type: ignore
    repo: str = ref.repo  # type: ignore
    if filename:
        found = by_file(cands, filename)
        if found is None:
            raise SourceError(f"{repo} has no file {filename}; it has: {', '.join(c.first for c in cands)}")
        return found, None
    if quant:
        matches = by_quant(cands, quant)
        if not matches:
            have = sorted({c.quant or c.first for c in cands})
            raise SourceError(f"no {quant} file in {repo}; available: {', '.join(have)}")
        return matches[0], None
    if len(cands) == 1:
        return cands[0], None
    if choose is not None:
        labels = [f"{c.label}  {estimate.gib(c.size)}, needs ~{estimate.gib(int(c.size * 1.2))} RAM"
                  for c in cands]
        try:
            answer = choose(f"{repo} holds {len(cands)} models", labels)
            return cands[labels.index(answer)], None
        except Exception as e:  # not interactive: fall back to the documented default below
            if type(e).__name__ not in ("ClickException", "Abort"):
                raise
    best = preferred(cands)
    return best, f"picked {best.quant or best.first} from {repo} (ask for another with hf:{repo}:QUANT)"


def _ram_check(repo: str, commit: str, picked: Candidate, progress: Progress) -> None:
    import httpx
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    kv = None
    try:
        url = hf_hub_url(repo, picked.first, revision=commit, endpoint=_endpoint())
        # The architecture keys come before the tokenizer's arrays: the first MiB holds them.
        headers = {**build_hf_headers(), "Range": "bytes=0-1048575"}
        with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=15) as r:
            head = b""
            if r.status_code in (200, 206):
                for chunk in r.iter_bytes():
                    head += chunk
                    if len(head) >= 1 << 20:
                        break
        kv = estimate.kv_cache_bytes(estimate.header_fields(head), DEFAULT_CONTEXT)
    except httpx.HTTPError:
        pass
    need = picked.size + (kv or 0)
    have = available_memory()
    what = f"{estimate.gib(picked.size)} weights" + (f" + {estimate.gib(kv)} KV cache at {DEFAULT_CONTEXT} tokens"
                                                     if kv else "")
    if have is not None and need > have:
        progress(0, None, f"warning: {picked.first} needs about {estimate.gib(need)} of RAM ({what}) "
                          f"but {estimate.gib(have)} is available")
    else:
        progress(0, None, f"estimated RAM: {estimate.gib(need)} ({what})")


def _download(repo: str, commit: str, filename: str, local_dir: Path, sha256: str | None,
              progress: Progress) -> Path:
    """Download one file with HTTP ranges into local_dir, resuming what an earlier, interrupted pull left.

    huggingface_hub finds the file (URL, auth headers, size, etag); the bytes are fetched by the toolkit's
    download (its own downloader, in 2.x, writes to a fresh per-process temp file and so cannot resume after a
    kill -9). A file the Hub lists with its sha256 is reported as a layer, as Ollama reports one.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(repo, filename, revision=commit, endpoint=_endpoint())
    try:
        meta = get_hf_file_metadata(url)
    except Exception as e:
        raise _hf_error(e, repo) from None
    tag = re.sub(r"[^A-Za-z0-9]", "", meta.etag or "")[:16] or "x"
    part = local_dir / f"{filename.replace('/', '--')}.{tag}.partial"
    status = layer_status(f"sha256:{sha256}") if sha256 else f"pulling {filename}"
    return download(meta.location or url, part, size=meta.size, sha256=sha256, status=status,
                    what=f"{filename} from {repo}", progress=progress, headers=build_hf_headers())


@hookimpl
def register_model_sources(register: Any) -> None:
    register(HfSource())
