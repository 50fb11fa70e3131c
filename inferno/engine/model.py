"""One loaded model over llama.cpp's C API: the weights, the vocabulary, prompts, and the contexts made from it.

Only the model's own worker threads call into it. llama-cpp-python is used at its low level (the ctypes
bindings of llama.h), never through the high-level `Llama` generate loop.
"""

from __future__ import annotations

import codecs
import ctypes
import warnings
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from inferno.engine import chat
from inferno.engine.infill import infill_tokens, is_infill
from inferno.engine.protocol import EngineSettings, ResolvedModel
from inferno.engine.rpc import plain
from inferno.engine.types import GenerateRequest, LoadOptions, Message
from inferno.errors import BadRequestError, ModelLoadError, UnavailableError

if TYPE_CHECKING:
    from inferno.engine.vision import Projector, PromptImages

_KV_TYPES = {"f16": "GGML_TYPE_F16", "q8_0": "GGML_TYPE_Q8_0", "q4_0": "GGML_TYPE_Q4_0"}
_FLASH = {"auto": "LLAMA_FLASH_ATTN_TYPE_AUTO", "on": "LLAMA_FLASH_ATTN_TYPE_ENABLED",
          "off": "LLAMA_FLASH_ATTN_TYPE_DISABLED"}
CPU_PROMPT_CHUNK = 64  # prompt tokens per llama_decode when the weights are in RAM (see Model.prompt_chunk)


def default_threads() -> int:
    """Every core the process may use: on small machines llama.cpp decodes fastest with all of them
    (benchmarks/threads.py: 1.15x llama-cpp-python's default of half the cores on 2 cores; twice the cores
    is 3x slower, as OpenMP threads then fight for them)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def import_llama() -> Any:
    """llama_cpp, or the clear install message when it is missing or its shared library does not load."""
    try:
        import llama_cpp
    except (ImportError, OSError, RuntimeError) as e:
        raise UnavailableError(
            f"llama-cpp-python is not installed or does not load ({e}); install it with "
            "`pip install llama-cpp-python` (it compiles llama.cpp: a C compiler and cmake are needed)") from e
    import os

    from llama_cpp import _logger

    # llama.cpp logs every load to stderr; only its errors unless INFERNO_DEBUG asks for all of it.
    _logger.set_verbose(os.environ.get("INFERNO_DEBUG", "") not in ("", "0", "false"))
    return llama_cpp


def free_memory(n_gpu_layers: int, settings: EngineSettings) -> int | None:
    """Memory a model about to load may take: the local accelerators' free memory when its layers go to them,
    else the machine's; None when split over RPC workers (their memory is theirs to report)."""
    if settings.rpc_servers and n_gpu_layers != 0:
        return None
    if n_gpu_layers != 0:
        from inferno.engine.devices import dev_memory, local_accelerators

        accelerators = local_accelerators()
        if accelerators:
            return sum(dev_memory(d)[0] for d in accelerators)
    from inferno.engine.limits import available_memory

    return available_memory()


class Model:
    """The weights and vocabulary of one model, loaded once; contexts (generation, embeddings) are made from it."""

    def __init__(self, resolved: ResolvedModel, options: LoadOptions, settings: EngineSettings) -> None:
        lib = self.lib = import_llama()
        from llama_cpp import _internals

        self.name, self.path, self.meta = resolved.name, resolved.file, resolved.metadata
        self.options, self.settings = options, settings
        self.defaults = resolved.defaults  # the model's own system prompt, template and parameters
        if not self.path.is_file():
            raise ModelLoadError(f"model file of {self.name} is missing: {self.path}")
        mp = lib.llama_model_default_params()
        mp.n_gpu_layers = options.n_gpu_layers if options.n_gpu_layers is not None else -1
        mp.use_mmap = options.use_mmap is not False
        mp.use_mlock = bool(options.use_mlock)
        mp.use_extra_bufts = not settings.no_repack  # repacked weights (CPU_REPACK, AMX); off heals llama.cpp#20824
        # With RPC workers the layers go to them and the local GPUs, as `llama-server --rpc` places them (n_gpu_layers
        # 0 keeps the model off the workers); the arrays are kept on self while llama.cpp may read them.
        self.rpc = bool(settings.rpc_servers) and mp.n_gpu_layers != 0
        if self.rpc:
            from inferno.engine.devices import local_accelerators
            from inferno.engine.rpc import pool

            devs = pool().devices(settings.rpc_servers) + local_accelerators()
            if len(settings.tensor_split) > len(devs):
                raise ModelLoadError(f"--tensor-split has {len(settings.tensor_split)} proportions but {self.name} "
                                     f"is split over {len(devs)} devices (the RPC workers', then local GPUs)")
            self._devices = (ctypes.c_void_p * (len(devs) + 1))(*devs, None)
            mp.devices = ctypes.addressof(self._devices)
        if settings.tensor_split:
            self._split = (ctypes.c_float * lib.llama_max_devices())(*settings.tensor_split)
            mp.tensor_split = ctypes.cast(self._split, ctypes.POINTER(ctypes.c_float))
        from inferno.engine import devices

        free = free_memory(mp.n_gpu_layers, settings)  # before the weights take their share
        with devices.llama_log() as logged:
            try:
                self._model = _internals.LlamaModel(path_model=str(self.path), params=mp, verbose=False)
            except Exception as e:
                why = devices.last_error(logged) or str(e)
                raise ModelLoadError(f"cannot load {self.name} ({self.path.name}): {plain(why)}") from e
        self.buffers = devices.buffer_sizes(logged)  # llama.cpp's own accounting, per buffer (see devices())
        self.model, self.vocab = self._model.model, self._model.vocab
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        from inferno.engine import context

        trained = self.meta.context_length or lib.llama_model_n_ctx_train(self.model) or context.UNKNOWN_TRAINED
        self.n_ctx, self.context_reason = context.choose(
            self.meta, self.path.stat().st_size, options, settings, trained=trained, free=free,
            flash=self.flash() == "on", n_vocab=self.n_vocab)
        if options.n_ctx and options.n_ctx > trained:
            # Past the trained length quality falls off a cliff unless RoPE is scaled; we scale only
            # when asked (rope_freq_scale), and say so.
            warnings.warn(f"{self.name}: n_ctx {options.n_ctx} is above the trained context {trained}; "
                          "set rope_freq_scale to extend it", stacklevel=2)
        self.n_batch = min(options.n_batch or 512, self.n_ctx)
        # Weights in this machine's RAM only (no GPU, no RPC worker): prompts go in small chunks at no cost in
        # speed (the CPU kernels' throughput is flat from 64 tokens up), so a cached prefix, cut to whole chunks,
        # loses little of its reuse (inferno.engine.slots.plan). Elsewhere a chunk is a whole batch.
        on_cpu = all(r["name"] == "CPU" for r in devices.device_rows(self.buffers) if r["weights"])
        self.prompt_chunk = min(CPU_PROMPT_CHUNK, self.n_batch) if on_cpu else self.n_batch
        self.threads = options.n_threads or default_threads()
        self.add_bos = self._model.add_bos_token()
        self.bos_text = self.meta.bos_token or ""
        self.eos_text = self.meta.eos_token or ""
        self.size = self.path.stat().st_size
        self.context_buffers: dict[str, dict[str, int]] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        self.piece_bytes = lru_cache(maxsize=None)(self._piece_bytes)  # per model: pieces never change
        from inferno.engine.lora import Adapters

        self.adapters = Adapters(self)  # LoRA adapters loaded onto these weights, on first use
        self.projector: Projector | None = None  # vision: the mmproj file loaded through llama.cpp's mtmd
        if resolved.projector is not None:
            from inferno.engine.vision import Projector

            try:
                self.projector = Projector(self.model, resolved.projector, threads=self.threads,
                                           use_gpu=mp.n_gpu_layers != 0)
            except BaseException:
                self._model.close()
                raise

    def close(self) -> None:
        if self.projector is not None:
            self.projector.close()
        self._model.close()

    def devices(self) -> list[dict[str, Any]]:
        """Where the model lives: per device (this machine's CPU and GPUs, each RPC worker's devices) the bytes
        of its weights, KV cache and compute buffers."""
        from inferno.engine.devices import device_rows

        merged: dict[str, dict[str, int]] = {}
        for sizes in (self.buffers, self.context_buffers):
            for name, kinds in sizes.items():
                slot = merged.setdefault(name, {})
                for kind, n in kinds.items():
                    slot[kind] = slot.get(kind, 0) + n
        return device_rows(merged)

    # contexts ---------------------------------------------------------------------------------------

    def flash(self) -> str:
        """"on" or "off": flash attention for this model's contexts."""
        o = self.options
        flash = self.settings.flash_attn if o.flash_attn is None else ("on" if o.flash_attn else "off")
        if flash == "auto":
            # llama.cpp's CPU flash attention accumulates in F16: measurably different greedy text than the
            # plain path, and no faster here (benchmarks/vs_llama_server.py); a quantized V cache needs it.
            flash = "off" if self.settings.kv_cache_type == "f16" else "on"
        return flash

    def new_context(self, *, n_ctx: int, n_seq: int, n_batch: int, embeddings: bool = False,
                    pooling: int | None = None, unified: bool = True) -> Any:
        """A llama_context on these weights for n_seq sequences: one unified KV cache of n_ctx cells shared by
        them, or (unified False) one stream of n_ctx cells per sequence, n_ctx x n_seq cells in all."""
        lib, o = self.lib, self.options
        p = lib.llama_context_default_params()
        p.n_ctx = n_ctx if unified else n_ctx * n_seq
        p.n_batch, p.n_ubatch, p.n_seq_max = n_batch, n_batch, n_seq
        p.n_threads = p.n_threads_batch = self.threads
        p.kv_unified = unified
        p.type_k = p.type_v = getattr(lib, _KV_TYPES[self.settings.kv_cache_type])
        flash = self.flash()
        p.flash_attn_type = getattr(lib, _FLASH[flash])
        if o.rope_freq_base:
            p.rope_freq_base = o.rope_freq_base
        if o.rope_freq_scale:
            p.rope_freq_scale = o.rope_freq_scale
        p.embeddings = embeddings
        if pooling is not None:
            p.pooling_type = pooling
        p.no_perf = True
        from inferno.engine import devices

        with devices.llama_log() as logged:
            ctx = lib.llama_init_from_model(self.model, p)
        if ctx and not embeddings:
            self.context_buffers = devices.buffer_sizes(logged)
        if not ctx:
            raise ModelLoadError(f"cannot create a context for {self.name} (n_ctx {n_ctx}, KV cache "
                                 f"{self.settings.kv_cache_type}, flash attention {flash}): llama.cpp refused; "
                                 "try a smaller context")
        return ctx

    # tokens ---------------------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        bos = add_bos and self.add_bos and not (self.bos_text and text.startswith(self.bos_text))
        return self._model.tokenize(text.encode("utf-8"), bos, special)

    def _piece_bytes(self, token: int) -> bytes:
        n = self.lib.llama_token_to_piece(self.vocab, token, self._piece_buf, len(self._piece_buf), 0, False)
        if n < 0:  # longer than the buffer: ask again with room
            buf = ctypes.create_string_buffer(-n)
            n = self.lib.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
            return buf.raw[:n]
        return self._piece_buf.raw[:n]

    def special_piece_bytes(self, token: int) -> bytes:
        """A token's text with control tokens spelled out (gpt-oss' <|channel|> …), for formats built of them."""
        buf = ctypes.create_string_buffer(256)
        n = self.lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self.lib.llama_token_to_piece(self.vocab, token, buf, -n, 0, True)
        return buf.raw[:n]

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.piece_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    def piece(self, token: int) -> str:
        return codecs.decode(self.piece_bytes(token), "utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(self.lib.llama_vocab_is_eog(self.vocab, token))

    def check_tokens(self, tokens: list[int]) -> None:
        bad = [t for t in tokens if not 0 <= t < self.n_vocab]
        if bad:
            raise BadRequestError(f"token {bad[0]} is outside the vocabulary of {self.name}", param="tokens")

    def chat_template(self, req: GenerateRequest) -> str | None:
        """The template a chat request is rendered with: the request's, the model's own (store), the GGUF's."""
        return req.template or self.defaults.template or self.meta.chat_template

    def prompt_tokens(self, req: GenerateRequest) -> list[int]:
        return self.prompt(req)[0]

    def prompt(self, req: GenerateRequest) -> tuple[list[int], str, PromptImages | None]:
        """The prompt's tokens, for a chat the rendered text ("" otherwise), and its images (None without)."""
        images = [i for m in req.messages or [] for i in m.images or []] + list(req.images or [])
        if self.meta.pooling_type == "rank":  # its output is a classifier's scores: it cannot write text
            raise BadRequestError(f"{self.name} is a reranker: it scores documents against a query (/v1/rerank) "
                                  "and cannot chat or complete text", param="model")
        if images and self.projector is None:
            raise BadRequestError(f"{self.name} has no vision: it was pulled without a projector (mmproj) file, "
                                  "so it cannot take images", param="images")
        if req.messages is not None:
            from inferno.engine.thinking import template_vars

            messages = req.messages
            if images:
                messages = [with_markers(m) for m in messages]
            system = self.defaults.system
            if system and not any(m.role == "system" for m in messages):
                messages = [Message(role="system", content=system), *messages]
            text = chat.render_chat(self.chat_template(req),
                                    messages, tools=req.tools if req.tool_choice.mode != "none" else None,
                                    bos_token=self.bos_text, eos_token=self.eos_text,
                                    extra=template_vars(req.think), limits=self.settings)
            if images:
                tokens, found = self._with_images(text, images, add_bos=not req.context, context=req.context)
                return tokens, text, found
            if req.context:  # Ollama's generate context: the earlier exchange's tokens come first
                self.check_tokens(req.context)
                return list(req.context) + self.tokenize(text, add_bos=False), text, None
            return self.tokenize(text), text, None
        prompt = req.prompt or ""
        if is_infill(req):
            return infill_tokens(self, req), "", None
        if images:
            from inferno.engine.vision import MARKER

            missing = len(images) - prompt.count(MARKER)
            prompt = MARKER * max(0, missing) + prompt
            tokens, found = self._with_images(prompt, images, add_bos=not req.context, context=req.context)
            return tokens, "", found
        if req.context:
            self.check_tokens(req.context)
        return list(req.context or []) + self.tokenize(prompt, add_bos=not req.context), "", None

    def _with_images(self, text: str, images: list[str], *, add_bos: bool,
                     context: list[int] | None) -> tuple[list[int], PromptImages]:
        from inferno.engine.vision import check_pixels, image_bytes

        assert self.projector is not None
        raw = [image_bytes(x, i, self.settings.max_image_bytes) for i, x in enumerate(images)]
        check_pixels(raw, self.settings.max_image_pixels, self.settings.max_request_pixels)
        add = add_bos and self.add_bos and not (self.bos_text and text.startswith(self.bos_text))
        tokens, found = self.projector.tokenize(text, raw, add_special=add)
        if tokens and tokens[-1] < 0:
            raise BadRequestError("a prompt cannot end with an image: put the question after it", param="images")
        if context:
            self.check_tokens(context)
            found.spans = {k + len(context): v for k, v in found.spans.items()}
            tokens = list(context) + tokens
        return tokens, found


def with_markers(m: Message) -> Message:
    """A message with one media marker per image: where the dialect put them, else before its text."""
    from inferno.engine.vision import MARKER

    if not m.images:
        return m
    missing = len(m.images) - m.content.count(MARKER)
    return m.model_copy(update={"content": MARKER * max(0, missing) + m.content}) if missing > 0 else m
