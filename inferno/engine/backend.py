"""One loaded model over llama-cpp-python: load, tokenize, generate events, embed.

Only the worker thread that owns a LoadedModel calls into it; nothing here is thread-safe by itself.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from inferno.engine import chat
from inferno.engine.output import StreamedText
from inferno.engine.types import (
    Done,
    Embeddings,
    EmbedRequest,
    Event,
    GenerateRequest,
    LoadOptions,
    Message,
    ToolCalls,
)
from inferno.errors import BadRequestError, ModelLoadError, UnavailableError
from inferno.metadata import ModelMetadata

DEFAULT_SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "typical_p": 1.0,
                    "repeat_penalty": 1.1, "repeat_last_n": 64, "presence_penalty": 0.0,
                    "frequency_penalty": 0.0}


def default_threads() -> int:
    """Every core the process may use: on small machines llama.cpp decodes fastest with all of them
    (benchmarks/threads.py: 1.15x llama-cpp-python's default of half the cores on 2 cores; twice the cores
    is 3x slower, as OpenMP threads then fight for them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def import_llama() -> Any:
    try:
        import llama_cpp
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise UnavailableError(f"llama-cpp-python is not installed or does not load: {e}") from e
    return llama_cpp


@lru_cache(maxsize=64)
def _grammar(kind: str, text: str) -> Any:
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    try:
        if kind == "json":
            return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        return LlamaGrammar.from_json_schema(text, verbose=False)
    except Exception as e:
        raise BadRequestError(f"cannot turn the JSON schema into a grammar: {e}", param="format") from e


def grammar_for(fmt: Any) -> Any:
    if fmt is None:
        return None
    if fmt == "json":
        return _grammar("json", "")
    if isinstance(fmt, dict):
        if not fmt:  # `{}` means "any JSON", as with JSON mode
            return _grammar("json", "")
        return _grammar("schema", json.dumps(fmt, sort_keys=True))
    raise BadRequestError("format must be \"json\" or a JSON schema object", param="format")


class LoadedModel:
    def __init__(self, name: str, path: Path, meta: ModelMetadata, options: LoadOptions,
                 default_ctx: int, defaults: dict[str, Any] | None = None, max_prompt_tokens: int = 0) -> None:
        llama_cpp = import_llama()
        self.name, self.path, self.meta, self.options = name, path, meta, options
        # A model's own system prompt, template and sampling parameters (set by /api/create).
        self.defaults = defaults or {}
        self.max_prompt_tokens = max_prompt_tokens
        trained = meta.context_length or default_ctx
        n_ctx = options.n_ctx or min(trained, default_ctx)
        kwargs: dict[str, Any] = {}
        if options.n_ctx and options.n_ctx > trained:
            # Past the trained length quality falls off a cliff unless RoPE is scaled; we scale only
            # when asked (rope_freq_scale), and say so.
            import warnings

            warnings.warn(f"{name}: n_ctx {options.n_ctx} is above the trained context {trained}; "
                          "set rope_freq_scale to extend it", stacklevel=2)
        if options.rope_freq_base:
            kwargs["rope_freq_base"] = options.rope_freq_base
        if options.rope_freq_scale:
            kwargs["rope_freq_scale"] = options.rope_freq_scale
        threads = options.n_threads or default_threads()
        if not path.is_file():
            raise ModelLoadError(f"model file of {name} is missing: {path}")
        try:
            self.llama = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_batch=options.n_batch or 512,
                n_gpu_layers=options.n_gpu_layers if options.n_gpu_layers is not None else -1,
                n_threads=threads, n_threads_batch=threads,
                use_mlock=bool(options.use_mlock), use_mmap=options.use_mmap is not False,
                flash_attn=bool(options.flash_attn), verbose=False, **kwargs)
        except Exception as e:
            raise ModelLoadError(f"cannot load {name} ({path.name}): {e}") from e
        self.n_ctx = self.llama.n_ctx()
        self.vocab = self.llama._model.vocab
        self._eog = getattr(llama_cpp, "llama_vocab_is_eog", None) or llama_cpp.llama_token_is_eog
        self._set_embeddings = llama_cpp.llama_set_embeddings
        self._pooling_none = llama_cpp.LLAMA_POOLING_TYPE_NONE
        self.add_bos = self.llama._model.add_bos_token()
        self.bos_text = meta.bos_token or ""
        self.eos_text = meta.eos_token or ""
        self.size = path.stat().st_size
        self.lock = threading.Lock()

    def close(self) -> None:
        self.llama.close()

    # tokens ---------------------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        bos = add_bos and self.add_bos and not (self.bos_text and text.startswith(self.bos_text))
        return self.llama._model.tokenize(text.encode("utf-8"), bos, special)

    def detokenize(self, tokens: list[int]) -> str:
        return self.llama.detokenize(tokens).decode("utf-8", errors="replace")

    def prompt_tokens(self, req: GenerateRequest) -> list[int]:
        if req.messages is not None:
            messages = req.messages
            system = self.defaults.get("system")
            if system and not any(m.role == "system" for m in messages):
                messages = [Message(role="system", content=system), *messages]
            text = chat.render_chat(req.template or self.defaults.get("template") or self.meta.chat_template,
                                    messages, tools=req.tools if req.tool_choice.mode != "none" else None,
                                    bos_token=self.bos_text, eos_token=self.eos_text)
            if req.context:  # Ollama's generate context: the earlier exchange's tokens come first
                return list(req.context) + self.tokenize(text, add_bos=False)
            return self.tokenize(text)
        prompt = req.prompt or ""
        if req.suffix:
            return self._infill(prompt, req.suffix)
        tokens = list(req.context or []) + self.tokenize(prompt, add_bos=not req.context)
        return tokens

    def _infill(self, prompt: str, suffix: str) -> list[int]:
        llama_cpp = import_llama()
        pre, suf, mid = (llama_cpp.llama_vocab_fim_pre(self.vocab), llama_cpp.llama_vocab_fim_suf(self.vocab),
                         llama_cpp.llama_vocab_fim_mid(self.vocab))
        if min(pre, suf, mid) < 0:
            raise BadRequestError(f"{self.name} does not support insert (no fill-in-the-middle tokens)",
                                  param="suffix")
        return [pre, *self.tokenize(prompt, add_bos=False), suf, *self.tokenize(suffix, add_bos=False), mid]

    # generation -------------------------------------------------------------------------------------

    def generate(self, req: GenerateRequest, cancelled: threading.Event, emit: Callable[[Event], None],
                 load_ns: int = 0) -> None:
        t0 = time.perf_counter_ns()
        tokens = self.prompt_tokens(req)
        if self.max_prompt_tokens and len(tokens) > self.max_prompt_tokens:
            raise BadRequestError(f"the prompt is {len(tokens)} tokens; this server accepts at most "
                                  f"{self.max_prompt_tokens} (INFERNO_MAX_PROMPT_TOKENS)", param="messages")
        if len(tokens) >= self.n_ctx:
            if not req.truncate:
                raise BadRequestError(
                    f"the prompt is {len(tokens)} tokens but the context window is {self.n_ctx}; "
                    "shorten it or load the model with a larger context (num_ctx / n_ctx)", param="messages")
            keep = self.n_ctx // 2
            tokens = tokens[:1] + tokens[-keep:] if self.add_bos else tokens[-keep:]
        s = DEFAULT_SAMPLING | self.defaults.get("parameters", {}) | req.sampling.model_dump(exclude_none=True)
        if not req.sampling.stop and self.defaults.get("parameters", {}).get("stop"):
            s["stop"] = self.defaults["parameters"]["stop"]
        forced = chat.tool_call_schema(req.tools, req.tool_choice) if req.tools else None
        grammar = grammar_for(forced if forced is not None else req.format)
        seed = s.get("seed")
        self.llama.set_seed(seed if seed is not None and seed >= 0 else int.from_bytes(os.urandom(4), "little"))
        last_n = int(s["repeat_last_n"])
        self.llama.last_n_tokens_size = self.n_ctx if last_n < 0 else last_n
        budget = self.n_ctx - len(tokens)
        max_tokens = s.get("max_tokens")
        limit = budget if max_tokens is None or max_tokens < 0 else min(max_tokens, budget)
        stops = [x for x in s.get("stop") or [] if x]
        watch_tools = bool(req.tools) and req.tool_choice.mode in ("auto", "required", "function")
        out = StreamedText(stops, watch_tools, emit)
        cached = self._prefix_len(tokens)
        generated: list[int] = []
        reason = "length"
        t_first = 0
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        want_logprobs = req.logprobs is not None
        ignore_eos = req.sampling.ignore_eos
        if limit > 0:
            for tok in self.llama.generate(
                    tokens, top_k=int(s["top_k"]), top_p=s["top_p"], min_p=s["min_p"],
                    typical_p=s["typical_p"], temp=s["temperature"], repeat_penalty=s["repeat_penalty"],
                    frequency_penalty=s["frequency_penalty"], presence_penalty=s["presence_penalty"],
                    grammar=grammar):
                if not t_first:
                    t_first = time.perf_counter_ns()
                if cancelled.is_set():
                    reason = "cancelled"
                    break
                if self._eog(self.vocab, tok) and not ignore_eos:
                    reason = "stop"
                    break
                generated.append(tok)
                piece = decoder.decode(self.llama.detokenize([tok]))
                lp = self._logprobs(tok, req.logprobs) if want_logprobs else None
                if out.feed(piece, lp):
                    reason = "stop"
                    break
                if len(generated) >= limit:
                    break
        t_end = time.perf_counter_ns()
        if reason != "cancelled":
            calls = out.finish(decoder.decode(b"", final=True), req.tools or [])
            if calls:
                emit(ToolCalls(calls))
                reason = "tool_calls"
        t_first = t_first or t_end
        emit(Done(reason=reason, prompt_tokens=len(tokens), completion_tokens=len(generated), load_ns=load_ns,
                  prompt_eval_ns=t_first - t0, eval_ns=t_end - t_first, total_ns=t_end - t0 + load_ns,
                  context=tokens + generated if req.return_context else None, cached_tokens=cached))

    def _prefix_len(self, tokens: list[int]) -> int:
        n = 0
        for a, b in zip(self.llama._input_ids[: self.llama.n_tokens], tokens, strict=False):
            if a != b:
                break
            n += 1
        return n

    def _logprobs(self, tok: int, top: int | None) -> list[dict[str, Any]]:
        import numpy as np

        # The logits the sampler just chose tok from: the context's last output row (llama-cpp-python
        # no longer copies them into Llama.scores unless every position's logits were asked for).
        llama_cpp = import_llama()
        ptr = llama_cpp.llama_get_logits_ith(self.llama._ctx.ctx, -1)
        row = np.ctypeslib.as_array(ptr, shape=(self.llama.n_vocab(),)).astype(np.float64)
        m = float(np.max(row))
        logz = m + math.log(float(np.sum(np.exp(row - m))))
        entry: dict[str, Any] = {"token": self.detokenize([tok]), "logprob": float(row[tok]) - logz}
        if top:
            best = np.argpartition(-row, top)[:top]
            best = best[np.argsort(-row[best])]
            entry["top_logprobs"] = [{"token": self.detokenize([int(t)]), "logprob": float(row[t]) - logz}
                                     for t in best]
        return [entry]

    def score(self, text: str) -> tuple[list[int], list[float]]:
        """The text's tokens and each one's log-probability given those before it (perplexity).

        Texts longer than one batch are scored in consecutive windows, each starting afresh, as
        llama.cpp's perplexity tool does with its chunks.
        """
        tokens = self.tokenize(text, special=False)
        if len(tokens) < 2:
            raise BadRequestError("text to score needs at least two tokens", param="text")
        window = min(self.n_ctx, self.llama.n_batch)
        logprobs: list[float] = []
        for start in range(0, len(tokens), window):
            chunk = tokens[start:start + window]
            if len(chunk) >= 2:
                logprobs += self._score_window(chunk)
        return tokens, logprobs

    def _score_window(self, tokens: list[int]) -> list[float]:
        import numpy as np

        llama = self.llama
        llama.reset()
        llama._ctx.kv_cache_clear()
        # Every position's logits for this one evaluation; scores has n_batch rows, and we stay within them.
        llama._logits_all = True
        try:
            llama.eval(tokens)
            logits = np.asarray(llama.scores[: len(tokens)], dtype=np.float64)
        finally:
            llama._logits_all = False
            llama.n_tokens = 0
            llama._ctx.kv_cache_clear()
        m = logits.max(axis=1, keepdims=True)
        logz = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
        picked = logits[np.arange(len(tokens) - 1), tokens[1:]] - logz[:-1]
        return [float(x) for x in picked]

    # embeddings -------------------------------------------------------------------------------------

    def embed(self, req: EmbedRequest, load_ns: int = 0) -> Embeddings:
        import numpy as np

        t0 = time.perf_counter_ns()
        limit = min(self.n_ctx, self.llama.n_batch)
        token_lists = []
        for text in req.inputs:
            toks = self.tokenize(text, special=False) or [self.llama.token_bos()]
            if len(toks) > limit:
                if not req.truncate:
                    raise BadRequestError(f"input is {len(toks)} tokens, more than the {limit} this model "
                                          "embeds at once; shorten it or allow truncation", param="input")
                toks = toks[:limit]
            token_lists.append(toks)
        llama = self.llama
        # One context serves chat and embeddings: switch it to embedding output for this call only.
        self._set_embeddings(llama._ctx.ctx, True)
        llama.context_params.embeddings = True
        try:
            vectors = []
            for toks in token_lists:
                raw = llama.embed(llama.detokenize(toks).decode("utf-8", errors="ignore"), truncate=True)
                arr = np.asarray(raw, dtype=np.float64)
                vec = arr.mean(axis=0) if arr.ndim == 2 else arr.reshape(-1)
                if req.dimensions:
                    vec = vec[: req.dimensions]
                if req.normalize:
                    norm = float(np.linalg.norm(vec))
                    vec = vec / norm if norm > 0 else vec
                vectors.append(vec.tolist())
        finally:
            self._set_embeddings(llama._ctx.ctx, False)
            llama.context_params.embeddings = False
            llama.n_tokens = 0  # embed() cleared the KV cache: nothing is cached for the next chat
        return Embeddings(vectors=vectors, prompt_tokens=sum(map(len, token_lists)), load_ns=load_ns,
                          total_ns=time.perf_counter_ns() - t0 + load_ns)
