"""The host object handed to hooks: settings, store, the engine, and pulling models in."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inferno.config import Settings, load_settings
from inferno.errors import BadRequestError, ForbiddenError, InfernoError, ModelNotFoundError
from inferno.metadata import ModelMetadata, read_metadata
from inferno.sources import Chooser, Fetched, resolve, suggestion
from inferno.store import ModelInfo, Progress, Store, _no_progress, normalize_name

if TYPE_CHECKING:
    from inferno.engine.protocol import Engine, ResolvedModel
    from inferno.engine.types import Done, LoraAdapter
    from inferno.metrics import Metrics


class Inferno:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self.store = Store(self.settings.models_dir)

    @cached_property
    def engine(self) -> Engine:
        """The engine, given only what it needs: a resolver, its settings, an observer (it is a leaf)."""
        from inferno.engine.protocol import EngineSettings
        from inferno.engine.scheduler import Scheduler

        settings = EngineSettings.from_settings(self.settings)
        if settings.draft:
            settings = dataclasses.replace(settings, draft=self.draft_file(settings.draft))
        return Scheduler(_StoreResolver(self), settings, _MetricsObserver(self))

    def draft_file(self, draft: str) -> str:
        """--draft / INFERNO_DRAFT, given by the operator: a GGUF file, else a model of the store by name."""
        path = Path(draft).expanduser()
        if path.suffix == ".gguf" and path.is_file():
            return str(path.resolve())
        return str(self.store.get(draft).file)

    @cached_property
    def metrics(self) -> Metrics:
        from inferno.metrics import Metrics

        return Metrics(self.engine)

    @property
    def can_quantize(self) -> bool:
        """Whether a plugin implements quantize_model (the quantize plugin is installed and enabled)."""
        from inferno.pluginmanager import pm

        return bool(pm.hook.quantize_model.get_hookimpls())

    def quantize(self, source: str, target: str, method: str, *, progress: Progress = _no_progress,
                 options: dict[str, Any] | None = None) -> ModelInfo:
        """Quantize the local model source into target through the quantize_model hook."""
        from inferno.pluginmanager import pm

        if not self.can_quantize:
            raise BadRequestError("quantizing needs the quantize plugin, which is not installed", param="quantize")
        return pm.hook.quantize_model(inferno=self, source=source, target=target, method=method,
                                      progress=progress, options=options or {})

    @property
    def can_convert(self) -> bool:
        """Whether a plugin implements convert_model (the convert plugin is installed and enabled)."""
        from inferno.pluginmanager import pm

        return bool(pm.hook.convert_model.get_hookimpls())

    def convert(self, source: str, target: str, *, outtype: str = "f16", method: str | None = None,
                keep_f16: bool = False, progress: Progress = _no_progress,
                options: dict[str, Any] | None = None) -> ModelInfo:
        """A Hugging Face-format model (folder or hf:owner/repo) → GGUF model target, through convert_model;
        with method, quantized too: the intermediate GGUF is `target-OUTTYPE`, removed unless keep_f16."""
        from inferno.pluginmanager import pm

        if not self.can_convert:
            raise BadRequestError("converting needs the convert plugin, which is not installed")
        target = normalize_name(target, "target")
        if method and not self.can_quantize:
            raise BadRequestError("quantizing needs the quantize plugin, which is not installed", param="quantize")
        first = normalize_name(f"{target.replace(':', '-')}-{outtype}", "target") if method else target
        info = pm.hook.convert_model(inferno=self, source=source, target=first, outtype=outtype,
                                     progress=progress, options={**(options or {}), "quantize": method})
        if not method:
            return info
        try:
            return self.quantize(first, target, method, progress=progress)
        finally:
            if not keep_f16:
                self.store.remove(first)

    def snapshot(self, identifier: str, select: Any, *, progress: Progress = _no_progress) -> Path:
        """Download the files of a model repository that select(listing) names, into a staging folder.

        select gets {file name: size} (top-level files, names already checked) and returns the names wanted,
        or raises an InfernoError; only sources with a snapshot method (Hugging Face) can do this."""
        source, ref = resolve(identifier, self.settings.aliases)
        snap = getattr(source, "snapshot", None)
        if snap is None:
            raise BadRequestError(f"{identifier!r} is not a Hugging Face repository or a local folder")
        return snap(ref, progress=progress, staging=self.store.staging_dir(), select=select)

    def metadata(self, name: str) -> ModelMetadata:
        return read_metadata(self.lookup(name).file)

    def add_projector(self, name: str, path: Path, *, mode: str = "copy", filename: str | None = None) -> ModelInfo:
        """Give a local model its vision projector (an mmproj GGUF), kept beside it (mode "link": in place);
        filename: the name it had where it came from (an upload's)."""
        return self.store.set_projector(self.lookup(name).name, Path(path), check_projector(Path(path), filename),
                                        mode=mode)

    def capabilities(self, info: ModelInfo, meta: ModelMetadata) -> list[str]:
        """What a model can do, in Ollama's words: completion, tools, insert, embedding, thinking; rerank."""
        from inferno.engine.chat import uses_tools
        from inferno.engine.thinking import supports_thinking

        if meta.pooling_type == "rank":  # a reranker: a classifier head scores (query, document) pairs
            return ["rerank"]
        caps = ["completion"]
        template = info.template or meta.chat_template or ""
        if uses_tools(template):
            caps.append("tools")
        if meta.has_fim:
            caps.append("insert")
        if meta.pooling_type not in (None, "none"):
            caps.append("embedding")
        if supports_thinking(template):
            caps.append("thinking")
        if info.mmproj:
            caps.append("vision")
        return caps

    def lookup(self, name: str, *, complete: bool = True) -> ModelInfo:
        """The local model a request names: a store name, or an identifier it was pulled by
        (`hf.co/owner/Repo-GGUF:Q4_K_M` → `repo:q4_k_m`), as Ollama clients use the name they pulled.
        complete=False reads info.json only (a model of the original inferno is not hashed on the way)."""
        try:
            return self.store.get(name, complete=complete)
        except (ModelNotFoundError, BadRequestError) as first:
            try:
                _, ref = resolve(name, self.settings.aliases)
            except InfernoError:
                hint = suggestion(name) if isinstance(first, ModelNotFoundError) else None
                raise (ModelNotFoundError(name, hint) if hint else first) from None
            if ref.default_name != name and self.store.exists(ref.default_name):
                return self.store.get(ref.default_name, complete=complete)
            raise

    def check_remote_pull(self, identifier: str) -> None:
        """Refuse (403), before any I/O, a pull asked over the API that names a file on this machine, unless it
        lies in a folder of INFERNO_ALLOW_LOCAL_PATHS. The CLI's user is local and may import any file."""
        source, ref = resolve(identifier, self.settings.aliases)
        if source.name == "local":
            self._check_local_file(Path(getattr(ref, "path", ref.identifier)), identifier)
        elif (local_path := getattr(source, "local_path", None)) is not None:
            path = local_path(ref)  # a source that reads this machine's files (a local Ollama store)
            if path is not None:
                self._check_local_file(Path(path), identifier)

    def _check_local_file(self, path: Path, identifier: str) -> None:
        try:
            real = path.expanduser().resolve()
        except (OSError, RuntimeError, ValueError):
            real = None
        for folder in self.settings.allow_local_paths:
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                if real is not None and real.is_relative_to(folder.expanduser().resolve()):
                    return
        shown = identifier if len(identifier) <= 200 else identifier[:197] + "..."
        raise ForbiddenError(
            f"pulling {shown!r} would read a file on the server's machine, which the API does not do unless "
            "INFERNO_ALLOW_LOCAL_PATHS lists its folder (the inferno pull command always can)", param="model")

    def pull(self, identifier: str, *, name: str | None = None, link: bool = False,
             progress: Progress = _no_progress, choose: Chooser | None = None,
             options: dict[str, Any] | None = None, remote: bool = False) -> tuple[ModelInfo, str | None]:
        """Fetch identifier through its source and register it; returns the model and a note for the user.

        remote: the pull was asked over the API, so files on this machine are only read from the folders
        in INFERNO_ALLOW_LOCAL_PATHS (checked before the source runs, and on what it hands back).
        """
        if remote:
            self.check_remote_pull(identifier)
        source, ref = resolve(identifier, self.settings.aliases)
        target = normalize_name(name or ref.default_name, "name")
        asked_at = datetime.now(timezone.utc)
        with _pull_lock(target):
            # A concurrent pull of the same model finished while we waited: it is ours too.
            if self.store.exists(target):
                existing = self.store.get(target)
                if existing.source == ref.identifier and existing.downloaded_at >= asked_at:
                    progress(1, 1, "success")
                    return existing, None
            return self._pull_locked(source, ref, target, link, progress, choose, options, remote)

    def _pull_locked(self, source: Any, ref: Any, target: str, link: bool, progress: Progress,
                     choose: Chooser | None, options: dict[str, Any] | None,
                     remote: bool) -> tuple[ModelInfo, str | None]:
        opts = dict(options or {})
        if link:
            opts["link"] = True
        progress(0, None, f"pulling {ref.identifier}")
        fetched: Fetched = source.fetch(ref, progress=progress, staging=self.store.staging_dir(), choose=choose,
                                        options=opts)
        extra_files = [*(fetched.parts or []), *([fetched.projector] if fetched.projector else [])]
        if remote and fetched.mode != "move":
            # a source (a plugin's too) handed back a file it did not download: a file on this machine
            for p in [fetched.path, *extra_files]:
                self._check_local_file(p, ref.identifier)
        try:
            info = self.import_file(fetched.path, target, source=ref.identifier, mode=fetched.mode,
                                    progress=progress, filename=fetched.filename, sha256=fetched.sha256,
                                    extra=fetched.extra, parts=list(zip(fetched.parts or [],
                                                                        fetched.part_names or [], strict=True)),
                                    projector=fetched.projector, projector_name=fetched.projector_name)
        except BaseException:
            if fetched.mode == "move":
                for p in [fetched.path, *extra_files]:
                    with contextlib.suppress(OSError):
                        p.unlink()
            raise
        progress(1, 1, "success")
        return info, fetched.note

    def import_file(self, path: Path, name: str, *, source: str, mode: str = "copy",
                    progress: Progress = _no_progress, filename: str | None = None, sha256: str | None = None,
                    extra: dict[str, Any] | None = None, parts: list[tuple[Path, str]] | None = None,
                    projector: Path | None = None, projector_name: str | None = None) -> ModelInfo:
        """Register a GGUF file on this machine under name, with its metadata in info.json; projector: a vision
        model's mmproj GGUF, kept beside it."""
        meta = read_metadata(path)
        if meta.architecture is None:
            raise BadRequestError(f"{Path(path).name} is not a GGUF model file")
        proj = None
        if projector is not None:
            proj = (Path(projector), check_projector(Path(projector), projector_name))
        if meta.model_info.get("general.type") == "adapter":  # a LoRA adapter, pulled to attach to a base later
            extra = {"kind": "adapter", **(extra or {})}
        fields = {"max_context": meta.context_length, "quantization_type": meta.quantization,
                  "architecture": meta.architecture, "parameter_count": meta.parameter_count, **(extra or {})}
        progress(0, None, "writing manifest")
        return self.store.add(name, Path(path), source=source, mode=mode, progress=progress, extra=fields,
                              sha256=sha256, filename=filename, parts=parts, projector=proj)

    def create_adapter_model(self, name: str, base: str, adapters: list[tuple[Path, float]],
                             filenames: list[str] | None = None) -> ModelInfo:
        """An adapter model: base's weights with these LoRA adapter GGUFs (file, scale), each checked to be an
        adapter for base's architecture; filenames: the names they had where they came from (an upload's)."""
        from inferno.lora import check_adapter

        parent = self.lookup(base)
        arch = self.lookup(parent.base).architecture if parent.base else parent.architecture
        # an adapter is a file, or one pulled into the store (`inferno pull hf:owner/Some-LoRA-GGUF`) by its name
        adapters = [(self._adapter_file(Path(p)), s) for p, s in adapters]
        names = filenames or [Path(p).name for p, _ in adapters]
        for p, _ in adapters:
            check_adapter(Path(p), arch)
        return self.store.add_adapter_model(name, parent.name, [(Path(p), n, s) for (p, s), n in
                                                                zip(adapters, names, strict=True)])

    def check_draft(self, draft: str, target: str, target_file: Path, base: str | None = None) -> str:
        """A draft model named for target (whose weights are target_file): its canonical name (inferno/drafts.py)."""
        from inferno.drafts import check_draft

        return check_draft(self.store, draft, target, target_file, base)

    def set_draft(self, name: str, draft: str | None) -> ModelInfo:
        """Give the stored model name its own draft model (a model of the store), or none (None)."""
        info = self.lookup(name)
        if draft is not None:
            draft = self.check_draft(draft, info.name, info.file, info.base)
        return self.store.update(info.name, draft=draft)

    def _adapter_file(self, path: Path) -> Path:
        if path.is_file() or not self.store.exists(str(path)):
            return path
        info = self.lookup(str(path))
        if (info.model_extra or {}).get("kind") != "adapter":
            raise BadRequestError(f"{info.name} is a model, not a LoRA adapter", param="adapter")
        return info.file

    def ensure(self, name: str, *, progress: Progress = _no_progress, choose: Chooser | None = None) -> ModelInfo:
        """The local model called name, pulled first when it is not here (as `ollama run` does)."""
        if self.store.exists(name):
            return self.store.get(name)
        _, ref = resolve(name, self.settings.aliases)
        if self.store.exists(ref.default_name):
            return self.store.get(ref.default_name)
        return self.pull(name, progress=progress, choose=choose)[0]


class _StoreResolver:
    """What the engine may know of the store: a model's canonical name, file, metadata and own defaults."""

    def __init__(self, host: Inferno) -> None:
        self.host = host

    def canonical(self, name: str) -> str:
        return self.host.lookup(name, complete=False).name

    def lora(self, name: str) -> tuple[str, list[LoraAdapter]]:
        """The runner's model for a canonical name and the LoRA adapters it adds: an adapter model's base and its
        adapters, else the model itself and none."""
        from inferno.engine.types import LoraAdapter

        info = self.host.store.get(name, complete=False)
        if (info.model_extra or {}).get("kind") == "adapter":
            raise BadRequestError(f"{name} is a LoRA adapter, not a model: run it on its base with `inferno create "
                                  f"NAME --from BASE --adapter {name}`", param="model")
        if not info.base:
            return info.name, []
        files = self.host.store.adapter_files(info)
        return self.canonical(info.base), [LoraAdapter(path=str(p), scale=s) for p, s in files]

    def resolve(self, name: str) -> ResolvedModel:
        from inferno.drafts import draft_file
        from inferno.engine.protocol import ModelDefaults, ResolvedModel
        from inferno.engine.types import SamplingOptions
        from inferno.errors import ModelLoadError

        info = self.host.store.get(name)
        try:
            meta = read_metadata(info.file)
        except InfernoError as e:
            raise ModelLoadError(f"cannot load {name}: {e.message}") from e
        try:
            params = SamplingOptions.model_validate(info.parameters) if info.parameters else None
        except ValueError as e:
            raise ModelLoadError(f"{name}: the stored parameters are not valid sampling options: {e}") from e
        defaults = ModelDefaults(system=info.system, template=info.template, parameters=params)
        return ResolvedModel(name=info.name, file=info.file, metadata=meta, defaults=defaults,
                             projector=Path(info.mmproj) if info.mmproj else None,
                             draft=draft_file(self.host.store, info, self.host.settings.speculative))


class _MetricsObserver:
    """Reports to the host's Prometheus metrics once a server made them; a CLI run never imports them."""

    def __init__(self, host: Inferno) -> None:
        self.host = host

    def observe_generation(self, model: str, done: Done) -> None:
        if "metrics" in self.host.__dict__:
            self.host.metrics.observe_generation(model, done)

    def observe_load(self, model: str, load_ns: int) -> None:
        if "metrics" in self.host.__dict__:
            self.host.metrics.observe_load(model, load_ns)


_pull_locks: dict[str, threading.Lock] = {}
_pull_locks_guard = threading.Lock()


def _pull_lock(name: str) -> threading.Lock:
    """One lock per model name: two pulls of one model in this process download it once."""
    with _pull_locks_guard:
        return _pull_locks.setdefault(name, threading.Lock())


def check_projector(path: Path, name: str | None = None) -> str:
    """The store file name of a vision projector (mmproj) GGUF (name: the one it had at its source); a 400
    when the file is not one."""
    from inferno.store import safe_filename

    if not path.is_file():
        raise BadRequestError(f"no such projector file: {path}", param="mmproj")
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        raise BadRequestError(f"cannot read the projector {path}: {e}", param="mmproj") from e
    if head != b"GGUF":
        raise BadRequestError(f"{path.name} is not a GGUF projector (mmproj) file", param="mmproj")
    name = name or path.name
    name = name if name.lower().startswith("mmproj") else f"mmproj-{name}"
    try:
        return safe_filename(name)
    except BadRequestError:
        return "mmproj.gguf"
