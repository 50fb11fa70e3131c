"""What the engine is to the rest of Inferno, and all it needs from it.

The engine is a leaf: the host hands it a resolver (model name → file, metadata, the model's own defaults),
the settings it reads, and an observer for metrics. It never sees the host object, the store or the plugins,
so another engine (a remote one, a different runtime) can stand in by implementing `Engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from inferno.engine.types import SamplingOptions

if TYPE_CHECKING:
    from inferno.engine.handle import RequestHandle
    from inferno.engine.types import (
        Done,
        EmbedRequest,
        GenerateRequest,
        LoadedModelInfo,
        LoadOptions,
        LoraAdapter,
        RerankRequest,
        ScoreRequest,
        TokenizeRequest,
    )
    from inferno.lora import ServedLora
    from inferno.metadata import ModelMetadata

KVCacheType = Literal["f16", "q8_0", "q4_0"]
FlashAttn = Literal["auto", "on", "off"]
SpeculativeMode = Literal["auto", "ngram", "draft", "off"]


@dataclass(frozen=True)
class ModelDefaults:
    """A model's own settings, as /api/create (a Modelfile's SYSTEM, TEMPLATE, PARAMETER) stored them."""

    system: str | None = None
    template: str | None = None  # a Jinja chat template overriding the GGUF's own
    parameters: SamplingOptions | None = None  # sampling defaults under each request's own options


@dataclass(frozen=True)
class ResolvedModel:
    """A model the engine can load: its canonical name, file, metadata and its own defaults."""

    name: str
    file: Path
    metadata: ModelMetadata
    defaults: ModelDefaults = field(default_factory=ModelDefaults)
    projector: Path | None = None  # a vision model's mmproj file (llama.cpp's mtmd)
    draft: Path | None = None  # the model's own draft model file (inferno/drafts.py): drafts instead of --draft


class Resolver(Protocol):
    def canonical(self, name: str) -> str:
        """The canonical name of a local model (raises ModelNotFoundError). Called as a request is accepted, on the
        event loop: it reads the store's small info.json and never a model file."""
        ...

    def lora(self, name: str) -> tuple[str, list[LoraAdapter]]:
        """The model whose runner serves a canonical name, and the LoRA adapters its generations add (an adapter
        model: its base, whose weights it shares, and its adapters)."""
        ...

    def resolve(self, name: str) -> ResolvedModel:
        """Everything needed to load the model (raises ModelNotFoundError / ModelLoadError)."""
        ...


class Observer(Protocol):
    """Where the engine reports what operators watch (Prometheus metrics in the server)."""

    def observe_generation(self, model: str, done: Done) -> None: ...

    def observe_load(self, model: str, load_ns: int) -> None: ...


class NullObserver:
    def observe_generation(self, model: str, done: Done) -> None:
        pass

    def observe_load(self, model: str, load_ns: int) -> None:
        pass


@dataclass(frozen=True)
class EngineSettings:
    """The settings the engine reads (a subset of inferno.config.Settings)."""

    default_context: int | None = None  # INFERNO_CONTEXT_LENGTH; None: sized to the model (inferno.engine.context)
    max_prompt_tokens: int = 0  # 0: the context window is the only limit
    max_image_bytes: int = 20 * 1024 * 1024  # one image's size limit (INFERNO_MAX_IMAGE_BYTES)
    keep_alive: float | None = 300.0  # seconds; None = forever
    max_loaded_models: int = 2
    max_queue: int = 64
    num_parallel: int = 4
    kv_cache_type: KVCacheType = "f16"
    flash_attn: FlashAttn = "auto"
    kv_unified: bool = False  # one KV cache shared by the slots (llama-server --kv-unified); else a stream per slot
    cache_ram: int = 1024 << 20  # bytes of the prompt cache in RAM per loaded model (inferno.engine.promptcache)
    prompt_cache_dir: str | None = None  # the prompt cache on disk (inferno.engine.diskcache); None: none
    prompt_cache_bytes: int = 4096 << 20
    speculative: SpeculativeMode = "auto"  # n-gram drafts (inferno.engine.speculate); "off": none
    draft: str | None = None  # a draft model's GGUF file (inferno.engine.draftmodel); auto and draft use it
    rpc_servers: tuple[str, ...] = ()  # llama.cpp RPC workers (host:port) that hold the layers with the GPUs
    tensor_split: tuple[float, ...] = ()  # proportions per device: the RPC workers' in order, then local GPUs
    # bounds on what one request may make the engine do (inferno.config.Settings names each; docs/security.md)
    max_grammar_bytes: int = 100_000
    max_grammar_depth: int = 1000
    max_schema_repeat: int = 10_000
    max_template_bytes: int = 128 * 1024
    template_max_steps: int = 1_000_000
    template_timeout: float = 5.0
    template_max_string: int = 16 << 20
    max_image_pixels: int = 4096 * 4096
    max_request_pixels: int = 4 * 4096 * 4096
    # the load options a request may set (Ollama's names); None: any (in-process callers, the CLI). The server
    # sets it from INFERNO_REQUEST_LOAD_OPTIONS: another option would reload a shared model for everyone.
    request_load_options: tuple[str, ...] | None = None
    no_repack: bool = False  # never use llama.cpp's extra buffer types (llama-server --no-repack; INFERNO_REPACK=0)
    home: str | None = None  # INFERNO_HOME: where a model's healed setting (no repack) is remembered
    crash_limit: int = 3  # runner deaths within crash_window seconds that mark a model failed
    crash_window: float = 60.0
    # keep one runner process started ahead, imports done (inferno.engine.spawn): a load does not wait for them.
    # Off for in-process callers unless asked; the server and `inferno run` turn it on (INFERNO_SPARE_RUNNER).
    spare_runner: bool = False
    # several prompts' chunks in one decode where that keeps each one's numbers (inferno.engine.batcher): off by
    # default, since on a CPU prompt evaluation is compute-bound and sharing decodes delays the first prompts
    mix_prompts: bool = False

    @classmethod
    def from_settings(cls, s: Any) -> EngineSettings:
        return cls(default_context=s.default_context, max_prompt_tokens=s.max_prompt_tokens,
                   max_image_bytes=s.max_image_bytes,
                   keep_alive=s.keep_alive_seconds, max_loaded_models=s.max_loaded_models,
                   max_queue=s.max_queue, num_parallel=s.num_parallel, kv_cache_type=s.kv_cache_type,
                   flash_attn=s.flash_attn, kv_unified=s.kv_unified, cache_ram=s.cache_ram << 20,
                   prompt_cache_dir=_prompt_cache_dir(s), prompt_cache_bytes=s.prompt_cache_size << 20,
                   speculative=s.speculative, draft=s.draft, rpc_servers=tuple(s.rpc_servers),
                   tensor_split=tuple(s.tensor_split),
                   max_grammar_bytes=s.max_grammar_bytes, max_grammar_depth=s.max_grammar_depth,
                   max_schema_repeat=s.max_schema_repeat, max_template_bytes=s.max_template_bytes,
                   template_max_steps=s.template_max_steps, template_timeout=s.template_timeout,
                   template_max_string=s.template_max_string, max_image_pixels=s.max_image_pixels,
                   max_request_pixels=s.max_request_pixels,
                   no_repack=not s.repack, home=str(s.home), crash_window=s.crash_window,
                   spare_runner=s.spare_runner, mix_prompts=s.mix_prompts)


class Engine(Protocol):
    """The engine surface every dialect and command uses. Requests return a RequestHandle at once
    (unknown model → ModelNotFoundError, full queue → BusyError); its events arrive as they are made."""

    settings: EngineSettings  # what it runs under; the server narrows request_load_options before serving
    served_lora: ServedLora | None  # `serve --lora`: the served model's adapters and their scales (inferno.lora)

    def submit(self, request: GenerateRequest) -> RequestHandle:
        """A generation: TextDelta / ToolCalls events, then one Done."""
        ...

    def embed(self, request: EmbedRequest) -> RequestHandle:
        """One Embeddings event."""
        ...

    def rerank(self, request: RerankRequest) -> RequestHandle:
        """One Ranked event."""
        ...

    def tokenize(self, request: TokenizeRequest) -> RequestHandle:
        """One Tokens event (detokenizes when request.tokens is given)."""
        ...

    def score(self, request: ScoreRequest) -> RequestHandle:
        """One Scores event: each token's log-probability."""
        ...

    def load(self, name: str, options: LoadOptions | None = None, keep_alive: float | None = None) -> RequestHandle:
        """Load (or keep) a model; one Done(reason="load")."""
        ...

    def unload(self, name: str) -> bool:
        """Unload once its running sequences end; False if it was not loaded."""
        ...

    def loaded(self) -> list[LoadedModelInfo]: ...

    def failed(self) -> list[LoadedModelInfo]:
        """Models whose engine kept stopping (state "failed", error the cause): their requests get a 503 for a while."""
        ...

    def spare_runner(self) -> str | None:
        """The runner process kept started ahead of the next load: "ready" (its imports done), "starting", or None."""
        ...

    def rpc_workers(self) -> list[dict[str, Any]]:
        """Each llama.cpp RPC worker of settings.rpc_servers: endpoint, state (connected, ready, gone), error.
        May block for a TCP probe: call it off the event loop."""
        ...

    def set_defaults(self, name: str | None, options: LoadOptions) -> None:
        """Load options for one model (or every model, name None) when a request sets none."""
        ...

    @property
    def queued(self) -> int:
        """Requests accepted but not yet running, across every model."""
        ...

    def close(self, timeout: float = 10.0) -> None: ...


def _prompt_cache_dir(s: Any) -> str | None:
    """INFERNO_PROMPT_CACHE: a folder, "off", or unset (a folder under INFERNO_HOME)."""
    if s.prompt_cache == "off" or s.prompt_cache_size == 0:
        return None
    return str(s.prompt_cache or Path(s.home) / "prompt-cache")
