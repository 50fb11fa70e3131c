"""LoRA adapters in the runner: loaded with llama.cpp's own llama_adapter_lora_init onto the one loaded model,
applied to the generation context with llama_set_adapters_lora.

Design: one runner, one model load and one generation context per base model, whatever adapters its requests
use. An adapter model in the store (`inferno create NAME --from BASE --adapter FILE`) is routed by the host to
its base's runner with its adapter set on the request (GenerateRequest.adapters), so the base weights load once
and every adapter model made from them shares them; an adapter itself is small and is loaded once per runner,
on first use, and kept (a handle per file).

llama.cpp applies adapters per context, so sequences with different adapter sets cannot share a llama_decode.
The batcher therefore switches the context's adapters between decodes: each step decodes the generating tokens
of one adapter set after another (one llama_decode per set present, every set every step), then one prompt
chunk with its own sequence's set. Every sequence thus gets one token per step whichever set it uses: fair, and
with a KV stream per slot each row is computed as it would be alone, so an adapter model answering beside
another answers as alone. This is llama-server's choice too (it batches only slots whose adapters equal the
first one's). The alternative, a context (batcher) per adapter set, would hold a KV cache per set (memory grows
with the number of adapter models) and need the same turn-taking. The price of switching: a decode per set per
step, and llama.cpp re-reserves its compute graph after each change of the set (sched_need_reserve), so the
set the context already has goes first in a step: n_sets - 1 switches per step, none when all running
requests use one set. Measured on 2 CPU cores, 2 greedy sequences: SmolLM2-135M Q4 with a rank-8 adapter on
attn_q/attn_v, 24.9 tok/s both on one adapter, 19.6 base + adapter, 18.4 two adapters (0.74-0.79x); on the
tiny test model, whose decode is nearly free, about 0.45x.

A slot's cached cells were computed with one adapter set: a prompt reuses a cached prefix only from a slot
whose cells have its own set (Slot.lora, checked in slots.plan).
"""

from __future__ import annotations

import ctypes
import os
from typing import TYPE_CHECKING, Any

from inferno.errors import BadRequestError

if TYPE_CHECKING:
    from inferno.engine.model import Model
    from inferno.engine.types import LoraAdapter

# An adapter set: ((path, scale), ...) in the request's order, zero scales left out (an adapter at scale 0
# changes nothing: its requests share the base's cache and batches). () is the base.
LoraKey = tuple[tuple[str, float], ...]


def lora_key(adapters: list[LoraAdapter]) -> LoraKey:
    return tuple((a.path, float(a.scale)) for a in adapters if a.scale != 0)


class Adapters:
    """The adapters loaded onto one model (llama.cpp frees them with the model) and the set each context runs."""

    def __init__(self, model: Model) -> None:
        self.model, self.lib = model, model.lib
        self.handles: dict[str, Any] = {}
        self.current: dict[int, LoraKey] = {}  # per context (its address): the set applied now

    def load(self, key: LoraKey) -> None:
        """Load every adapter of the set not loaded yet; a file llama.cpp refuses (missing, not a LoRA, made for
        another model) is a 400 naming it, and the model is untouched."""
        from inferno.engine import devices
        from inferno.engine.rpc import plain

        for path, _ in key:
            if path in self.handles:
                continue
            name = os.path.basename(path)
            if not os.path.isfile(path):
                raise BadRequestError(f"LoRA adapter {name} of {self.model.name} is missing", param="adapters")
            with devices.llama_log() as logged:
                handle = self.lib.llama_adapter_lora_init(self.model.model, path.encode())
            if not handle:
                # llama.cpp logs why at its error level (GGML_LOG_LEVEL_ERROR, 4), after its function's name
                errors = [t.strip().split(": ", 1)[-1] for lvl, t in logged if lvl == 4 and t.strip()]
                why = errors[-1] if errors else devices.last_error(logged) or "llama.cpp refused it"
                raise BadRequestError(f"cannot apply LoRA adapter {name} to {self.model.name}: {plain(why)}",
                                      param="adapters")
            self.handles[path] = handle

    def use(self, ctx: Any, key: LoraKey) -> None:
        """Make the context decode with this set (llama.cpp does nothing when it already does)."""
        at = ctypes.cast(ctx, ctypes.c_void_p).value or 0
        if self.current.get(at, ()) == key:
            return
        n = len(key)
        handles = (self.lib.llama_adapter_lora_p_ctypes * max(n, 1))(*(self.handles[p] for p, _ in key))
        scales = (ctypes.c_float * max(n, 1))(*(s for _, s in key))
        if self.lib.llama_set_adapters_lora(ctx, handles if n else None, n, scales if n else None) != 0:
            from inferno.errors import InfernoError

            raise InfernoError(f"llama.cpp could not set the LoRA adapters of {self.model.name}")
        self.current[at] = key

    def order(self, ctx: Any, keys: list[LoraKey]) -> list[LoraKey]:
        """The distinct sets, the context's current one first."""
        current = self.current.get(ctypes.cast(ctx, ctypes.c_void_p).value or 0, ())
        distinct = list(dict.fromkeys(keys))
        return sorted(distinct, key=lambda k: k != current)

    def forget(self, ctx: Any) -> None:
        self.current.pop(ctypes.cast(ctx, ctypes.c_void_p).value or 0, None)
