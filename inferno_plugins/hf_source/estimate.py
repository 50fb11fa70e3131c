"""RAM needed before a download: weights plus the KV cache at the default context, from the remote header.

Only the first megabytes of the file are fetched (an HTTP range), and only its key/value section is parsed.
"""

from __future__ import annotations

import struct
from typing import Any

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise EOFError
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("<Q")
        if self.pos + n > len(self.data):
            raise EOFError
        text = self.data[self.pos:self.pos + n].decode("utf-8", errors="replace")
        self.pos += n
        return text

    def value(self, vtype: int) -> Any:
        if vtype == 8:
            return self.string()
        if vtype == 9:
            item_type, count = self.take("<I"), self.take("<Q")
            if item_type == 8:
                for _ in range(count):
                    self.string()
                return None
            size = struct.calcsize(_SCALAR[item_type])
            self.pos += size * count  # arrays (token lists) are skipped, not read
            if self.pos > len(self.data):
                raise EOFError
            return None
        return self.take(_SCALAR[vtype])


def header_fields(data: bytes) -> dict[str, Any]:
    """The scalar key/values of a GGUF header prefix; as many as the bytes hold."""
    r = _Reader(data)
    if data[:4] != b"GGUF":
        return {}
    r.pos = 4
    out: dict[str, Any] = {}
    try:
        r.take("<I")  # version
        r.take("<Q")  # tensor count
        n_kv = r.take("<Q")
        for _ in range(n_kv):
            key = r.string()
            value = r.value(r.take("<I"))
            if value is not None:
                out[key] = value
    except (EOFError, KeyError, struct.error):
        pass
    return out


def kv_cache_bytes(fields: dict[str, Any], n_ctx: int) -> int | None:
    arch = fields.get("general.architecture")
    if not arch:
        return None
    layers = fields.get(f"{arch}.block_count")
    embd = fields.get(f"{arch}.embedding_length")
    heads = fields.get(f"{arch}.attention.head_count")
    kv_heads = fields.get(f"{arch}.attention.head_count_kv", heads)
    if not (layers and embd and heads and kv_heads):
        return None
    ctx = min(n_ctx, fields.get(f"{arch}.context_length") or n_ctx)
    return 2 * layers * ctx * (embd // heads) * kv_heads * 2  # K and V, f16


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
