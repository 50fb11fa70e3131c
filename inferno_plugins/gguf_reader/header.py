"""A GGUF header read as a stream: the key/values and tensor infos, skipping the large arrays.

Written by hand rather than with `gguf.GGUFReader` because that reader maps the whole file and turns every array
(a 49k-token vocabulary, its merges) into numpy views eagerly: 8-15 s and +150 MiB RSS for SmolLM2-135M on a
2-core EPYC, on every /api/show and every request that names a context size. Here a header costs one sequential
read of its own bytes (tens of milliseconds); only the token strings someone asks for are kept. The layout is
GGUF v2/v3 (ggml/docs/gguf.md): magic, version, tensor count, kv count, kv pairs, tensor infos.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
_STRING, _ARRAY = 8, 9
# GGUF value types → struct codes (bool is one byte).
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_BUFFER = 1 << 20


@dataclass
class Header:
    kv: dict[str, Any] = field(default_factory=dict)  # arrays longer than max_array are left out
    array_lengths: dict[str, int] = field(default_factory=dict)  # every array's length, kept or not
    tensors: list[tuple[int, int, int]] = field(default_factory=list)  # (n_elements, ggml type, n_dims)
    tokens: dict[int, str] = field(default_factory=dict)  # the token strings asked for, by id
    tokens_at: int = 0  # the file offset of the first token string (0: no vocabulary)
    order: str = "<"  # the byte order the file was written in


class _Stream:
    """The file read in 1 MiB chunks, parsed with struct.unpack_from at an offset: a header is a long run of
    small fields (a 128k-token vocabulary is 256k of them), and one read() per field would dominate."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size, self.order = f, size, "<"
        self.buf, self.pos, self.base = b"", 0, 0  # base: the file offset of buf[0]

    def _have(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            if self.base + self.pos + n > self.size:
                raise ValueError("the file ends inside its header")
            self.f.seek(self.base + self.pos)
            self.base += self.pos
            self.buf, self.pos = self.f.read(max(n, _BUFFER)), 0

    def take(self, n: int) -> bytes:
        self._have(n)
        data = self.buf[self.pos:self.pos + n]
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if self.base + self.pos + n > self.size:
            raise ValueError("the file ends inside its header")
        if self.pos + n <= len(self.buf):
            self.pos += n
        else:
            self.base, self.buf, self.pos = self.base + self.pos + n, b"", 0

    def unpack(self, code: str) -> Any:
        n = struct.calcsize(code)
        self._have(n)
        value = struct.unpack_from(self.order + code, self.buf, self.pos)[0]
        self.pos += n
        return value

    def count(self, what: str, unit: int) -> int:
        n = self.unpack("Q")
        if n * unit > self.size - self.base - self.pos:  # a corrupt count: never loop or allocate on it
            raise ValueError(f"{what} count {n} does not fit in the file")
        return n

    def string(self) -> bytes:
        return self.take(self.count("string length", 1))

    def skip_strings(self, n: int) -> None:
        length = struct.Struct(self.order + "Q")
        for _ in range(n):
            self._have(8)
            size = length.unpack_from(self.buf, self.pos)[0]
            self.pos += 8
            self.skip(size)


def _value(s: _Stream, vtype: int) -> Any:
    if vtype == _STRING:
        return s.string().decode("utf-8", errors="replace")
    code = _SCALAR.get(vtype)
    if code is None:
        raise ValueError(f"unknown GGUF value type {vtype}")
    return s.unpack(code)


def _array(s: _Stream, key: str, header: Header, max_array: int) -> None:
    vtype = s.unpack("I")
    n = s.count(f"{key} array", 1)
    header.array_lengths[key] = n
    if vtype == _ARRAY:
        raise ValueError(f"{key}: nested arrays are not GGUF metadata Inferno reads")
    if n <= max_array:
        header.kv[key] = [_value(s, vtype) for _ in range(n)]
        return
    if vtype != _STRING:
        code = _SCALAR.get(vtype)
        if code is None:
            raise ValueError(f"unknown GGUF value type {vtype}")
        s.skip(n * struct.calcsize(code))
        return
    if key == "tokenizer.ggml.tokens":
        header.tokens_at = s.base + s.pos
    s.skip_strings(n)


def _tokens(s: _Stream, n: int, want: set[int]) -> dict[int, str]:
    """The token strings of these ids, the stream at the vocabulary's first string."""
    out: dict[int, str] = {}
    done = 0
    for i in sorted(i for i in want if i < n):
        s.skip_strings(i - done)
        out[i] = s.string().decode("utf-8", errors="replace")
        done = i + 1
    return out


def read_header(path: Path, max_array: int, token_keys: tuple[str, ...] = ()) -> Header:
    """The header of the GGUF at `path`. The token strings whose ids the keys in `token_keys` hold
    (tokenizer.ggml.bos_token_id…) are read too: the ids usually follow the vocabulary, so the vocabulary is read
    again from where the first pass found it."""
    header = _read(path, max_array)
    want = {v for k in token_keys if isinstance(v := header.kv.get(k), int)}
    n = header.array_lengths.get("tokenizer.ggml.tokens", 0)
    if want and n and header.tokens_at:
        with Path(path).open("rb", buffering=_BUFFER) as f:
            s = _Stream(f, Path(path).stat().st_size)
            s.order, s.base = header.order, header.tokens_at
            header.tokens = _tokens(s, n, want)
    return header


def _read(path: Path, max_array: int) -> Header:
    with Path(path).open("rb", buffering=_BUFFER) as f:
        s = _Stream(f, Path(path).stat().st_size)
        if s.take(4) != MAGIC:
            raise ValueError("not a GGUF file (bad magic)")
        raw = s.take(4)
        version = struct.unpack("<I", raw)[0]
        if version & 0xFFFF == 0:  # written big-endian (s390x builds)
            s.order, version = ">", struct.unpack(">I", raw)[0]
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old (llama.cpp reads 2 and 3)")
        n_tensors, n_kv = s.count("tensor", 24), s.count("key/value", 12)
        header = Header(order=s.order)
        for _ in range(n_kv):
            key = s.string().decode("utf-8", errors="replace")
            vtype = s.unpack("I")
            if vtype == _ARRAY:
                _array(s, key, header, max_array)
            else:
                header.kv[key] = _value(s, vtype)
        for _ in range(n_tensors):
            s.skip_strings(1)
            n_dims = s.unpack("I")
            if n_dims > 8:
                raise ValueError(f"a tensor with {n_dims} dimensions")
            dims = struct.unpack(f"{s.order}{n_dims}Q", s.take(8 * n_dims))
            ggml_type = s.unpack("I")
            s.take(8)  # data offset
            elements = 1
            for d in dims:
                elements *= d
            header.tensors.append((elements, ggml_type, n_dims))
        return header
