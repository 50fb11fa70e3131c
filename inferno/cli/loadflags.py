"""The load-option flags `run` and `serve` share, in both spellings: `--n-ctx` and the original inferno's `--n_ctx`.

`@load_flags` adds the options and hands the command one `load` dict of the LoadOptions fields that were
given (None-valued flags left out), so the commands' signatures do not grow with every llama.cpp knob.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

# (LoadOptions field, flag names, click type, help)
FLAGS: list[tuple[str, tuple[str, ...], Any, str]] = [
    ("n_ctx", ("--n-ctx", "--n_ctx"), click.IntRange(16), "Context window in tokens."),
    ("n_threads", ("--threads", "--n-threads", "--n_threads"), click.IntRange(1), "CPU threads per model."),
    ("n_gpu_layers", ("--n-gpu-layers", "--n_gpu_layers"), click.IntRange(-1),
     "Layers to offload to a GPU (-1: all; needs a GPU build, see `inferno version`)."),
    ("n_batch", ("--n-batch", "--n_batch"), click.IntRange(1, 1 << 16), "Prompt tokens decoded per batch."),
    ("rope_freq_base", ("--rope-freq-base", "--rope_freq_base"), click.FloatRange(0, min_open=True),
     "RoPE base frequency (default: the model's)."),
    ("rope_freq_scale", ("--rope-freq-scale", "--rope_freq_scale"), click.FloatRange(0, min_open=True),
     "RoPE frequency scale, e.g. 0.5 for twice the trained context (default: the model's)."),
]
MLOCK = ("use_mlock", ("--use-mlock", "--use_mlock"), "Lock the weights in RAM (never swapped out).")


def load_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the load flags to a click command function; it receives them as `load` (a dict for LoadOptions)."""
    names = [field for field, *_ in FLAGS] + [MLOCK[0]]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        load = {name: kwargs.pop(name) for name in names}
        load = {k: v for k, v in load.items() if v is not None and v is not False}
        return command(*args, load=load, **kwargs)

    decorated: Callable[..., Any] = click.option(*MLOCK[1], MLOCK[0], is_flag=True, default=False,
                                                 help=MLOCK[2])(wrapper)
    for field, flags, kind, text in reversed(FLAGS):
        decorated = click.option(*flags, field, type=kind, help=text)(decorated)
    return decorated
