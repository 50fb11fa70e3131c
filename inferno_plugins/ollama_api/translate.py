"""Ollama bodies → core requests; core events → Ollama chunks (durations in nanoseconds)."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any

from inferno.api import BadRequestError, Done, InfernoError, LoadOptions, SamplingOptions, SpeculativeOptions

log = logging.getLogger("inferno.ollama")

_SAMPLING = {"temperature": float, "top_k": int, "top_p": float, "min_p": float, "typical_p": float,
             "repeat_penalty": float, "repeat_last_n": int, "presence_penalty": float,
             "frequency_penalty": float, "seed": int}
_LOAD = {"num_ctx": ("n_ctx", int), "num_batch": ("n_batch", int), "num_gpu": ("n_gpu_layers", int),
         "num_thread": ("n_threads", int), "use_mmap": ("use_mmap", bool), "use_mlock": ("use_mlock", bool),
         "flash_attn": ("flash_attn", bool), "rope_frequency_base": ("rope_freq_base", float),
         "rope_frequency_scale": ("rope_freq_scale", float)}
_IGNORED = {"num_keep", "tfs_z", "mirostat", "mirostat_tau", "mirostat_eta", "penalize_newline", "numa",
            "num_gqa", "low_vram", "f16_kv", "vocab_only", "main_gpu", "logits_all", "embedding_only",
            "grammar"}
_SPECULATIVE = {"speculative": ("enabled", bool), "speculative.n_max": ("n_max", int),
                "speculative.n_min": ("n_min", int), "speculative.p_min": ("p_min", float)}


def now() -> str:
    """RFC3339 UTC with sub-second digits, as Ollama writes created_at."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _typed(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise BadRequestError(f"option {key!r} must be {kind.__name__}, not {type(value).__name__} ({value!r})",
                          param="options")


def options(opts: dict[str, Any] | None) -> tuple[SamplingOptions, LoadOptions]:
    """Split Ollama's options into sampling and load options; unknown keys are logged and ignored."""
    sampling: dict[str, Any] = {}
    load: dict[str, Any] = {}
    for key, value in (opts or {}).items():
        if value is None:
            continue
        if key in _SAMPLING:
            sampling[key] = _typed(key, value, _SAMPLING[key])
        elif key == "ignore_eos":  # an extension (llama.cpp server's name): keep going past end-of-text
            sampling["ignore_eos"] = _typed(key, value, bool)
        elif key == "num_predict":
            sampling["max_tokens"] = _typed(key, value, int)
        elif key == "stop":
            stops = [value] if isinstance(value, str) else value
            if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
                raise BadRequestError("option 'stop' must be a string or a list of strings", param="options")
            sampling["stop"] = stops
        elif key in _LOAD:
            field, kind = _LOAD[key]
            load[field] = _typed(key, value, kind)
        elif key not in _IGNORED and key not in _SPECULATIVE:
            log.info("ignoring unknown option %r", key)
    if load.get("n_gpu_layers") is not None and load["n_gpu_layers"] < -1:
        load["n_gpu_layers"] = -1
    try:
        return SamplingOptions(**sampling), LoadOptions(**load)
    except ValueError as e:
        err = e.errors()[0]  # type: ignore
        raise BadRequestError(f"option {err['loc'][0]!r}: {err['msg']}", param="options") from None


def speculative(opts: dict[str, Any] | None) -> SpeculativeOptions:
    """An extension: options.speculative (false: no drafts for this request) and llama-server's
    speculative.n_max / n_min (draft lengths; p_min is accepted and checked, n-gram drafts have no probabilities)."""
    found: dict[str, Any] = {}
    for key, (name, kind) in _SPECULATIVE.items():
        value = (opts or {}).get(key)
        if value is not None:
            found[name] = _typed(key, value, kind)
    p_min = found.pop("p_min", None)
    if p_min is not None and not 0 <= p_min <= 1:
        raise BadRequestError("option 'speculative.p_min' must be between 0 and 1", param="options")
    try:
        return SpeculativeOptions(**found)
    except ValueError as e:
        err = e.errors()[0]  # type: ignore
        raise BadRequestError(f"option 'speculative.{err['loc'][0]}': {err['msg']}", param="options") from None


def grammar(opts: dict[str, Any] | None) -> str | None:
    """An extension: options.grammar, raw GBNF as llama-server takes it (constrains the whole output)."""
    value = (opts or {}).get("grammar")
    if value is not None and not isinstance(value, str):
        raise BadRequestError("option 'grammar' must be a GBNF string", param="options")
    return value or None


def fmt(value: Any) -> Any:
    if value in (None, ""):
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raise BadRequestError('format must be "json" or a JSON schema object', param="format")


def final_metrics(done: Done) -> dict[str, Any]:
    """Ollama's closing counters; prompt_eval_count is what was evaluated (as Ollama's): a prefix found in the KV
    cache is not counted."""
    reason = {"cancelled": "stop", "tool_calls": "stop"}.get(done.reason, done.reason)
    return {"done_reason": reason, "total_duration": done.total_ns, "load_duration": done.load_ns,
            "prompt_eval_count": done.prompt_tokens - done.cached_tokens, "prompt_eval_duration": done.prompt_eval_ns,
            "eval_count": done.completion_tokens, "eval_duration": done.eval_ns}


# One Go template action: `{{`, anything but braces, `}}`. Braces excluded, every match attempt stops at the next
# brace, so a scan is linear in the template's length whatever it holds (no pairing regex that rescans).
_ACTION = re.compile(r"\{\{-?([^{}]*?)-?\}\}")
_FIELD = re.compile(r"\s*\.(\w+)\s*")
_IF = re.compile(r"\s*if\s+\.(\w+)\s*")


def go_template(template: str, system: str | None, prompt: str, limit: int) -> str | None:
    """Ollama templates are Go templates; the common simple ones ({{ .System }}, {{ .Prompt }}, {{ if .System }}
    … {{ else }} … {{ end }}) are filled in here. Anything else is taken as a Jinja chat template (None
    returned). One pass over the template's actions with a stack for the ifs: linear time, size-capped; the
    route runs it off the event loop."""
    if len(template) > limit:
        raise BadRequestError(f"the template is {len(template)} characters; at most {limit} are accepted "
                              "(INFERNO_MAX_TEMPLATE_BYTES)", param="template")
    if ".Prompt" not in template:
        return None
    values = {"System": system or "", "Prompt": prompt, "Response": ""}
    out: list[str] = []
    shown = [True]  # per open if: whether its current branch is shown (and all enclosing ones are)
    pos = 0
    for m in _ACTION.finditer(template):
        if shown[-1]:
            out.append(template[pos:m.start()])
        pos = m.end()
        action = m.group(1)
        if (cond := _IF.fullmatch(action)) is not None:
            shown.append(shown[-1] and bool(values.get(cond.group(1))))
        elif action.strip() == "else" and len(shown) > 1:
            shown[-1] = shown[-2] and not shown[-1]
        elif action.strip() == "end" and len(shown) > 1:
            shown.pop()
        elif shown[-1] and (field := _FIELD.fullmatch(action)) is not None:
            out.append(values.get(field.group(1), ""))
    if len(shown) > 1:
        raise BadRequestError("the template has an {{ if }} without its {{ end }}", param="template")
    if shown[-1]:
        out.append(template[pos:])
    return "".join(out)


def error_body(error: InfernoError) -> dict[str, Any]:
    """Ollama's error shape: {"error": "message"}."""
    return {"error": error.message}
