"""Load options a request asks for, checked before the scheduler acts on them: a load option reloads the model
for everyone on it, so a request may set only those the operator allows (INFERNO_REQUEST_LOAD_OPTIONS;
in-process callers such as the CLI any), and never past the machine: `num_ctx` within the model's trained context
and an estimate of the memory free for its KV cache, `num_thread` within the cores this process may use."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from inferno.errors import BadRequestError

if TYPE_CHECKING:
    from inferno.engine.protocol import EngineSettings, Resolver
    from inferno.engine.types import LoadOptions

# LoadOptions field → the option's name in Ollama's options (what INFERNO_REQUEST_LOAD_OPTIONS lists)
OLLAMA_NAMES = {"n_ctx": "num_ctx", "n_batch": "num_batch", "n_gpu_layers": "num_gpu", "n_threads": "num_thread",
                "use_mmap": "use_mmap", "use_mlock": "use_mlock", "flash_attn": "flash_attn",
                "rope_freq_base": "rope_frequency_base", "rope_freq_scale": "rope_frequency_scale"}


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def available_memory() -> int | None:
    """Bytes the kernel says can be had without swapping (MemAvailable), or None where it does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_load(resolver: Resolver, name: str, load: LoadOptions, settings: EngineSettings) -> None:
    """Refuse (400, naming the limit) load options a request may not set or that the machine cannot bear."""
    allowed = settings.request_load_options
    asked = {k for k, v in load.model_dump().items() if v is not None}
    if not asked or allowed is None:  # in-process callers (the CLI, its operator) are not requests
        return
    if "*" not in allowed:
        refused = sorted(OLLAMA_NAMES[k] for k in asked if OLLAMA_NAMES[k] not in allowed and k not in allowed)
        if refused:
            raise BadRequestError(f"option {refused[0]!r} would reload {name} for every client; this server lets "
                                  f"requests set only {', '.join(allowed) or 'none'} (INFERNO_REQUEST_LOAD_OPTIONS)",
                                  param="options")
    if load.n_threads is not None and load.n_threads > cores():
        raise BadRequestError(f"num_thread {load.n_threads} is more than the {cores()} cores this server may use",
                              param="options")
    if load.n_ctx is None:
        return
    from inferno.ram import kv_cache_bytes

    meta = resolver.resolve(name).metadata
    trained = meta.context_length
    if trained and load.n_ctx > trained and load.rope_freq_scale is None:
        raise BadRequestError(f"num_ctx {load.n_ctx} is above the {trained} tokens {name} was trained for "
                              "(set rope_frequency_scale too to stretch it)", param="options")
    kv = kv_cache_bytes(meta, load.n_ctx)
    free = available_memory()
    if kv is not None and free is not None and kv > free:
        gib = 1 << 30
        raise BadRequestError(f"num_ctx {load.n_ctx} needs about {kv / gib:.1f} GiB of KV cache for {name} but "
                              f"about {free / gib:.1f} GiB of memory is free", param="options")
