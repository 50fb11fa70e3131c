"""What an Ollama manifest's layers mean to Inferno: the model layer is the GGUF, a projector the vision
model's mmproj, `params` the model's default options, `system` its system prompt, `license` kept for `inferno
show --license`, `template` its chat template (the GGUF's own Jinja template wins; an Ollama Go template is
translated only when the GGUF has none). An adapter layer is refused: the store has no place for LoRA yet."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferno.api import SamplingOptions, SourceError, read_metadata

from .gotemplate import translate
from .registry import Layer

PREFIX = "application/vnd.ollama.image."
MODEL, PROJECTOR, ADAPTER = PREFIX + "model", PREFIX + "projector", PREFIX + "adapter"
TEXT = {PREFIX + kind: kind for kind in ("template", "system", "params", "license", "messages")}
# Ollama's option names for sampling options, and the core names the store keeps them under
_SAMPLING = {"temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty", "repeat_last_n",
             "presence_penalty", "frequency_penalty", "seed", "stop"}


@dataclass
class Plan:
    model: Layer
    projector: Layer | None = None
    text: dict[str, Layer] = field(default_factory=dict)  # kind → layer


def plan(layers: list[Layer], shown: str) -> Plan:
    models = [layer for layer in layers if layer.media_type == MODEL]
    if any(layer.media_type == ADAPTER for layer in layers):
        raise SourceError(f"{shown} has a LoRA adapter layer, which Inferno's ollama source cannot attach yet; "
                          "pull its base model instead")
    if len(models) != 1:
        raise SourceError(f"{shown} has {len(models)} model layers; Inferno takes models with exactly one GGUF")
    projectors = [layer for layer in layers if layer.media_type == PROJECTOR]
    if len(projectors) > 1:
        raise SourceError(f"{shown} has {len(projectors)} projector layers; Inferno takes one")
    text = {TEXT[layer.media_type]: layer for layer in layers if layer.media_type in TEXT}
    return Plan(model=models[0], projector=projectors[0] if projectors else None, text=text)


def fields(texts: dict[str, bytes], gguf: Path, shown: str) -> tuple[dict[str, Any], str | None]:
    """The store fields the text layers give the model in gguf, and a note for the user (or None)."""
    out: dict[str, Any] = {}
    notes: list[str] = []
    if "system" in texts:
        out["system"] = _text(texts["system"], "system", shown)
    if "license" in texts:
        out["license"] = _text(texts["license"], "license", shown)
    if "params" in texts:
        params, ignored = _params(texts["params"], shown)
        if params:
            out["parameters"] = params
        if ignored:
            out["ollama_params"] = ignored
            notes.append(f"not applied from {shown}'s params: {', '.join(sorted(ignored))} (set them per request "
                         "or with inferno serve's options)")
    if "template" in texts:
        go = _text(texts["template"], "template", shown)
        out["ollama_template"] = go
        if not read_metadata(gguf).chat_template:
            out["template"] = translate(go)  # refuses what it cannot translate: no silently wrong prompts
            notes.append(f"{shown}'s GGUF has no chat template: using its Ollama template, translated to Jinja")
    return out, "; ".join(notes) or None


def _text(data: bytes, kind: str, shown: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"the {kind} layer of {shown} is not UTF-8 text") from None


def _params(data: bytes, shown: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(sampling options under their core names, the other options as Ollama named them)."""
    try:
        raw = json.loads(data)
    except ValueError:
        raise SourceError(f"the params layer of {shown} is not JSON") from None
    if not isinstance(raw, dict):
        raise SourceError(f"the params layer of {shown} is not a JSON object")
    sampling: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SAMPLING:
            sampling[key] = [value] if key == "stop" and isinstance(value, str) else value
        elif key == "num_predict":
            sampling["max_tokens"] = value
        else:
            other[key] = value
    try:
        checked = SamplingOptions.model_validate(sampling)
    except ValueError as e:
        raise SourceError(f"the params layer of {shown} holds options Inferno cannot use: "
                          f"{str(e).splitlines()[0]}") from None
    return checked.model_dump(exclude_none=True, exclude_defaults=True), other


Reader = Callable[[Layer], bytes]


def read_texts(p: Plan, read: Reader) -> dict[str, bytes]:
    return {kind: read(layer) for kind, layer in p.text.items()}
