"""The Ollama sources: `ollama:NAME[:TAG]` pulls from an Ollama registry (Ollama's public one, or
`INFERNO_OLLAMA_REGISTRY`); `ollama-local:NAME[:TAG]` imports from a local Ollama store by reference, and
`ollama-local:` alone lists what that store holds.

Names: `ollama:smollm2:135m`, `ollama:library/llama3.2:latest`, `ollama:registry.host/namespace/model:tag`.
The GGUF layer becomes the model, a projector layer its mmproj; `params`, `system`, `template` and `license`
become the model's own settings (layers.py).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from inferno.api import Chooser, Fetched, ModelRef, Progress, SourceError, hookimpl, name_from

from . import layers, local, registry
from .names import OllamaName, parse_name


def _ref(source: str, prefix: str, name: OllamaName) -> ModelRef:
    return ModelRef(source=source, identifier=f"{prefix}:{name.shown}", default_name=name.store_name,
                    host=name.host, namespace=name.namespace, model=name.model, tag=name.tag)


def _name(ref: ModelRef) -> OllamaName:
    return OllamaName(host=ref.host, namespace=ref.namespace, model=ref.model, tag=ref.tag)  # type: ignore


def _filenames(name: OllamaName) -> tuple[str, str]:
    stem = f"{name_from(name.model)}-{name_from(name.tag)}"
    return f"{stem}.gguf", f"mmproj-{stem}.gguf"


class OllamaSource:
    name = "ollama"
    prefixes = ("ollama",)
    priority = 40

    def parse(self, identifier: str) -> ModelRef | None:
        if not identifier.startswith("ollama:"):
            return None
        return _ref(self.name, "ollama", parse_name(identifier.removeprefix("ollama:"), "ollama"))

    def fetch(self, ref: ModelRef, *, progress: Progress, staging: Path, choose: Chooser | None,
              options: dict[str, Any]) -> Fetched:
        name = _name(ref)
        progress(0, None, "pulling manifest")
        plan = layers.plan(registry.manifest(name), name.shown)
        texts = {kind: registry.small_blob(name, layer, progress) for kind, layer in plan.text.items()}
        downloaded: list[Path] = []
        try:
            model = registry.big_blob(name, plan.model, staging, progress)
            downloaded.append(model)
            projector = registry.big_blob(name, plan.projector, staging, progress) if plan.projector else None
            if projector is not None:
                downloaded.append(projector)
            extra, note = layers.fields(texts, model, name.shown)
        except SourceError as e:
            if "pull again to resume" not in e.message:  # keep what a cut connection left, for the next try
                for path in downloaded:
                    with contextlib.suppress(OSError):
                        path.unlink()
            raise
        except BaseException:
            for path in downloaded:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        filename, projector_name = _filenames(name)
        return Fetched(path=model, mode="move", sha256=plan.model.hex, filename=filename, note=note,
                       projector=projector, projector_name=projector_name if projector else None,
                       extra={**extra, "ollama_name": name.shown, "ollama_digest": plan.model.digest,
                              "ollama_registry": registry.base_url(name)})


class OllamaLocalSource:
    name = "ollama-local"
    prefixes = ("ollama-local",)
    priority = 41

    def parse(self, identifier: str) -> ModelRef | None:
        if not identifier.startswith("ollama-local:"):
            return None
        rest = identifier.removeprefix("ollama-local:")
        if not rest:  # `inferno pull ollama-local:` lists the store
            return ModelRef(source=self.name, identifier="ollama-local:", default_name="ollama-local")
        return _ref(self.name, "ollama-local", parse_name(rest, "ollama-local"))

    def local_path(self, ref: ModelRef) -> Path:
        """The Ollama store this source reads: an API pull is refused before any I/O unless
        INFERNO_ALLOW_LOCAL_PATHS allows that folder."""
        return local.models_root()

    def suggest(self, identifier: str) -> str | None:
        """`ollama-local:NAME:TAG` when a bare name (`llama3.2`, `qwen3:0.6b`) is a model of the local Ollama
        store: one stat, through the same confined paths as an import."""
        name = parse_name(identifier, "ollama-local")
        return f"ollama-local:{name.shown}" if local.has(local.models_root(), name) else None

    def fetch(self, ref: ModelRef, *, progress: Progress, staging: Path, choose: Chooser | None,
              options: dict[str, Any]) -> Fetched:
        root = local.models_root()
        if not getattr(ref, "model", None):
            names = local.listing(root)
            if not names:
                raise SourceError(f"the Ollama store at {root} holds no models (set OLLAMA_MODELS to use another)")
            raise SourceError(f"name a model to import: the Ollama store at {root} holds "
                              + ", ".join(f"ollama-local:{n}" for n in names))
        name = _name(ref)
        progress(0, None, f"reading {name.shown} from {root}")
        plan = layers.plan(local.manifest(root, name), name.shown)
        texts = {kind: local.small(root, layer, name.shown) for kind, layer in plan.text.items()}
        model = local.blob(root, plan.model, name.shown)
        projector = local.blob(root, plan.projector, name.shown) if plan.projector else None
        extra, note = layers.fields(texts, model, name.shown)
        _, projector_name = _filenames(name)
        # by reference: Ollama named each blob by its digest when it verified it, so it is not hashed again
        return Fetched(path=model, mode="link", sha256=plan.model.hex, note=note, projector=projector,
                       projector_name=projector_name if projector else None,
                       extra={**extra, "ollama_name": name.shown, "ollama_digest": plan.model.digest,
                              "ollama_store": str(root)})


@hookimpl
def register_model_sources(register: Any) -> None:
    register(OllamaSource())
    register(OllamaLocalSource())
