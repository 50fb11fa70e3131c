"""A model's own draft model (speculative decoding): a store model named in its settings, as `/api/create`'s
`draft` and `inferno create --draft` set it. It drafts in that model's runner instead of the server's --draft.

Checked when it is named, from the GGUF headers alone (the host never loads weights): the vocabulary sizes within
llama.cpp's slack and the same BOS/EOS ids, the first checks of common_speculative_are_compatible. The rest of
them (vocabulary type, token texts) needs llama.cpp's vocabulary and runs in the runner at load
(inferno.engine.draftmodel.incompatible), which refuses the draft there with the reason.
"""

from __future__ import annotations

import logging
from pathlib import Path

from inferno.engine.draftmodel import VOCAB_SLACK
from inferno.errors import BadRequestError, ModelLoadError, ModelNotFoundError
from inferno.metadata import ModelMetadata, read_metadata
from inferno.store import ModelInfo, Store

log = logging.getLogger("inferno")


def header_mismatch(target: ModelMetadata, draft: ModelMetadata) -> str | None:
    """Why two models' headers already show that one cannot draft for the other, or None."""
    if target.vocab_size and draft.vocab_size and abs(target.vocab_size - draft.vocab_size) > VOCAB_SLACK:
        return f"vocabulary sizes differ by more than {VOCAB_SLACK} ({target.vocab_size} vs {draft.vocab_size})"
    for what in ("bos", "eos"):
        t, d = getattr(target, f"{what}_token_id"), getattr(draft, f"{what}_token_id")
        if t is not None and d is not None and t != d:
            return f"{what.upper()} token ids differ ({t} vs {d})"
    return None


def check_draft(store: Store, draft: str, target: str, target_file: Path, base: str | None = None) -> str:
    """The canonical name of the store model `draft`, checked to be able to draft for the model target, whose
    weights are target_file (400 otherwise); base: target's base model when it is an adapter model."""
    info = store.get(draft, "draft")  # the one function that confines a name to the store
    if (info.model_extra or {}).get("kind") == "adapter":
        raise BadRequestError(f"{info.name} is a LoRA adapter, not a model: it cannot draft", param="draft")
    if base:
        # an adapter model runs in its base's runner, where the draft model would load
        raise BadRequestError(f"{target} runs on {base}: give the draft model to {base}", param="draft")
    why = header_mismatch(read_metadata(target_file), read_metadata(info.file))
    if why is not None:
        raise BadRequestError(f"{info.name} cannot draft for {target}: {why}", param="draft")
    return info.name


def draft_file(store: Store, info: ModelInfo, mode: str) -> Path | None:
    """The file of info's own draft model when its runner loads, None when it has none. A draft model removed
    from the store since: under `draft` the load fails saying so; otherwise the model drafts as if it had none."""
    if not info.draft:
        return None
    try:
        return store.get(info.draft, "draft").file
    except (ModelNotFoundError, BadRequestError):
        message = f"the draft model {info.draft} of {info.name} is not in the store"
        if mode == "draft":
            raise ModelLoadError(f"{message}: pull it again, or create {info.name} anew without it") from None
        log.warning("%s: %s drafts as if it had none", message, info.name)
        return None
