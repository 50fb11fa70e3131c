"""Model metadata: every read_model_metadata implementation answers, the host merges field by field.

Implementations are called in pluggy's order (the GGUF reader is trylast), and the first non-None value
of each field wins, so a plugin can correct one field without re-reading the rest.
"""

from __future__ import annotations

import stat
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from inferno.errors import BadRequestError


class ModelMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    architecture: str | None = None
    model_name: str | None = None
    parameter_count: int | None = None
    context_length: int | None = None
    embedding_length: int | None = None
    block_count: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    vocab_size: int | None = None
    rope_freq_base: float | None = None
    rope_freq_scale: float | None = None
    rope_scaling_type: str | None = None
    file_type: int | None = None
    quantization: str | None = None
    chat_template: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pooling_type: str | None = None
    has_fim: bool | None = None  # fill-in-the-middle tokens: the model can "insert" (suffix)
    # The raw scalar key/values of the file (general.*, <arch>.*), for Ollama's /api/show model_info.
    model_info: dict[str, Any] = {}


# The last files read, by identity (path, inode, size, mtime) and the plugins that answer: /api/show, /api/ps and
# every request that names a context size read a model's metadata; a changed file or plugin set is a new key.
_CACHE: OrderedDict[tuple[object, ...], ModelMetadata] = OrderedDict()
_CACHE_SIZE = 32
_CACHE_LOCK = threading.Lock()


def read_metadata(path: Path) -> ModelMetadata:
    from inferno.pluginmanager import load_plugins, pm

    load_plugins()
    try:
        st = Path(path).stat()
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        raise BadRequestError(f"no such file: {path}")
    readers = tuple(id(impl.plugin) for impl in pm.hook.read_model_metadata.get_hookimpls())
    key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns, readers)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key].model_copy(deep=True)
    meta = _read_metadata(Path(path))
    with _CACHE_LOCK:
        _CACHE[key] = meta.model_copy(deep=True)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return meta


def _read_metadata(path: Path) -> ModelMetadata:
    from inferno.pluginmanager import pm

    merged: dict[str, Any] = {}
    for answer in pm.hook.read_model_metadata(path=Path(path)):
        if not answer:
            continue
        for key, value in answer.items():
            if value is not None and merged.get(key) is None:
                merged[key] = value
    return ModelMetadata.model_validate(merged)


def format_parameter_size(count: int | None) -> str:
    """135_000_000 → "135M", 7_240_000_000 → "7.2B", as Ollama shows it."""
    if not count:
        return ""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            value = count / scale
            text = f"{value:.1f}".rstrip("0").rstrip(".") if value < 100 else f"{value:.0f}"
            return f"{text}{unit}"
    return str(count)
