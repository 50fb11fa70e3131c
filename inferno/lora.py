"""LoRA adapters on the host side: checking adapter GGUFs, the adapters `serve --lora` loads for the served
model (llama-server's /lora-adapters, scales settable globally and per request), and routing a request for an
adapter model to its base model's runner with its adapter set (engine/lora.py explains the design).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inferno.errors import BadRequestError

if TYPE_CHECKING:
    from inferno.engine.types import LoraAdapter, LoraScale


def parse_spec(spec: str, param: str = "adapter") -> tuple[str, float]:
    """FILE[:SCALE] (llama-server's --lora-scaled FILE SCALE in one word) → (file, scale)."""
    file, sep, scale = spec.rpartition(":")
    if not sep or not file:
        return spec, 1.0
    try:
        value = float(scale)
    except ValueError:
        return spec, 1.0  # a colon of the file's own name
    if not -1e4 <= value <= 1e4:
        raise BadRequestError(f"{param} scale {scale} is out of range", param=param)
    return file, value


def check_adapter(path: Path, architecture: str | None, param: str = "adapter") -> None:
    """A LoRA adapter GGUF (general.type adapter, adapter.type lora) for a model of this architecture: a 400
    otherwise. Its shapes llama.cpp checks against the weights when it loads it (a 400 at the first request)."""
    from gguf import GGUFReader

    name = path.name
    if not path.is_file():
        raise BadRequestError(f"no such adapter file: {name}", param=param)
    try:
        fields = GGUFReader(str(path)).fields
    except (ValueError, OSError) as e:
        raise BadRequestError(f"{name} is not a GGUF file: {e}", param=param) from None

    def text(key: str) -> str | None:
        f = fields.get(key)
        return None if f is None else str(f.contents())

    if text("general.type") != "adapter" or text("adapter.type") != "lora":
        raise BadRequestError(f"{name} is not a LoRA adapter GGUF (general.type adapter, adapter.type lora)",
                              param=param)
    arch = text("general.architecture")
    if architecture is not None and arch != architecture:
        raise BadRequestError(f"{name} is a LoRA adapter for {arch} models; the base model is {architecture}",
                              param=param)


class ServedLora:
    """The adapters `serve --lora` loaded for the served model, by id (their order), with their global scales
    (llama-server's POST /lora-adapters sets them; a request's `lora` overrides them for itself)."""

    def __init__(self, model: str | None, adapters: list[tuple[Path, float]]) -> None:
        self.model = model
        self.paths = [p.resolve() for p, _ in adapters]
        self.scales = [s for _, s in adapters]
        self.lock = threading.Lock()

    def listing(self) -> list[dict[str, Any]]:
        with self.lock:
            pairs = enumerate(zip(self.paths, self.scales, strict=True))
            return [{"id": i, "path": str(p), "scale": s} for i, (p, s) in pairs]

    def set_scales(self, entries: list[LoraScale]) -> None:
        """llama-server's POST /lora-adapters: the listed ids get these scales, the others 0."""
        scales = self._scales(entries, base=[0.0] * len(self.paths))
        with self.lock:
            self.scales = scales

    def _scales(self, entries: list[LoraScale], base: list[float]) -> list[float]:
        out = list(base)
        for e in entries:
            if e.id >= len(self.paths):
                raise BadRequestError(f"lora id {e.id} does not exist: the server has {len(self.paths)} adapters "
                                      "(GET /lora-adapters)", param="lora")
            out[e.id] = e.scale
        return out

    def for_request(self, entries: list[LoraScale] | None) -> list[LoraAdapter]:
        """The served adapters a request runs with: the global scales, or (llama-server's per-request `lora`)
        the ids it lists at its scales and the others at 0."""
        from inferno.engine.types import LoraAdapter

        with self.lock:
            scales = self.scales if entries is None else self._scales(entries, [0.0] * len(self.paths))
        return [LoraAdapter(path=str(p), scale=s) for p, s in zip(self.paths, scales, strict=True)]


def route(resolver: Any, served: ServedLora | None, name: str, request: Any) -> tuple[str, Any]:
    """The runner a request goes to and the request with its adapter set: an adapter model's requests go to its
    base model (whose weights they share) carrying the adapter model's adapters (and the served ones)."""
    from inferno.engine.types import GenerateRequest

    base, adapters = resolver.lora(name)
    is_generation = isinstance(request, GenerateRequest)
    if not is_generation:
        if request is not None and getattr(request, "lora", None):
            raise BadRequestError("lora applies to text generation only", param="lora")
        return base, request
    own = list(adapters)
    if served is not None and served.paths and name == served.model:
        own += served.for_request(request.lora)
    elif request.lora:
        raise BadRequestError(f"{name} has no adapters loaded by `serve --lora` to choose from", param="lora")
    if not own:
        return base, request
    return base, request.model_copy(update={"adapters": own})
