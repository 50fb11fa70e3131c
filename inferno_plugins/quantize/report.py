"""Numbers for compare and estimate: sizes, bits per weight and --eval (RAM estimates: inferno/ram.py)."""

from __future__ import annotations

import time
from importlib.resources import files
from typing import Any


def bits_per_weight(size: int, params: int | None) -> float | None:
    return size * 8 / params if params else None


def human(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def eval_text() -> str:
    return files("inferno_plugins.quantize").joinpath("eval_text.txt").read_text()


def evaluate(inferno: Any, name: str, n_ctx: int, tokens: int = 64) -> dict[str, float]:
    """Measured decode tok/s (greedy, fixed token count) and perplexity on the bundled text."""
    from inferno.api import Done, GenerateRequest, LoadOptions, SamplingOptions, ScoreRequest, Scores

    load = LoadOptions(n_ctx=n_ctx)
    list(inferno.engine.load(name, load, keep_alive=0.5))
    req = GenerateRequest(model=name, prompt="Once upon a time", load=load, keep_alive=0.5,
                          sampling=SamplingOptions(temperature=0, max_tokens=tokens, ignore_eos=True))
    done = [e for e in inferno.engine.submit(req) if isinstance(e, Done)][-1]
    scores = [e for e in inferno.engine.score(ScoreRequest(model=name, text=eval_text(), load=load,
                                                           keep_alive=0))
              if isinstance(e, Scores)][-1]
    time.sleep(0.1)
    return {"tok_s": done.completion_tokens / (done.eval_ns / 1e9) if done.eval_ns else 0.0,
            "perplexity": scores.perplexity, "scored_tokens": float(len(scores.tokens))}
