"""llama.cpp's own quantizer, in-process through llama-cpp-python's low-level llama_model_quantize."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import struct
import threading
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

from inferno.api import BadRequestError, InfernoError, Progress

from .methods import UNQUANTIZED, Method, import_llama

_TENSOR_PROGRESS = re.compile(rb"\[\s*(\d+)/\s*(\d+)\]")
_log_lock = threading.Lock()


def read_imatrix(path: Path) -> dict[str, list[float]]:
    """An importance matrix: llama.cpp's GGUF format (<tensor>.in_sum2 / .counts) or the legacy .dat."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        return _imatrix_gguf(path)
    return _imatrix_dat(path)


def _imatrix_dat(path: Path) -> dict[str, list[float]]:
    data = path.read_bytes()
    out: dict[str, list[float]] = {}
    try:
        (n,) = struct.unpack_from("<i", data, 0)
        pos = 4
        for _ in range(n):
            (length,) = struct.unpack_from("<i", data, pos)
            name = data[pos + 4:pos + 4 + length].decode()
            pos += 4 + length
            ncall, nval = struct.unpack_from("<ii", data, pos)
            pos += 8
            values = struct.unpack_from(f"<{nval}f", data, pos)
            pos += 4 * nval
            out[name] = [v / ncall for v in values] if ncall > 0 else list(values)
    except (struct.error, UnicodeDecodeError) as e:
        raise BadRequestError(f"{path} is not an importance matrix file: {e}") from None
    if not out:
        raise BadRequestError(f"{path} holds no importance data")
    return out


def _imatrix_gguf(path: Path) -> dict[str, list[float]]:
    import numpy as np
    from gguf import GGUFReader

    reader = GGUFReader(path)
    tensors = {t.name: np.asarray(t.data, dtype=np.float64) for t in reader.tensors}
    out = {}
    for name, sums in tensors.items():
        if name.endswith(".in_sum2"):
            base = name.removesuffix(".in_sum2")
            counts = tensors.get(f"{base}.counts")
            per_matrix = sums.reshape(counts.size, -1) if counts is not None else sums.reshape(1, -1)
            divisor = counts.reshape(-1, 1) if counts is not None else 1.0
            out[base] = (per_matrix / np.maximum(divisor, 1)).reshape(-1).tolist()
    if not out:
        raise BadRequestError(f"{path} holds no importance data")
    return out


@contextlib.contextmanager
def _progress_from_log(progress: Progress, status: str) -> Generator[None]:
    """llama.cpp logs "[ i/ N] tensor …" per tensor: turn that into progress while quantizing."""
    llama_cpp = import_llama()

    @llama_cpp.llama_log_callback
    def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        m = _TENSOR_PROGRESS.search(text or b"")
        if m:
            progress(int(m.group(1)), int(m.group(2)), status)

    with _log_lock:
        # put back whatever callback was there (the engine may have its own in front of llama-cpp-python's)
        previous, previous_data = llama_cpp.llama_log_callback(), ctypes.c_void_p()
        llama_cpp.llama_log_get(ctypes.byref(previous), ctypes.byref(previous_data))
        llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
        try:
            yield
        finally:
            llama_cpp.llama_log_set(previous, previous_data)


def quantize_file(src: Path, out_dir: Path, method: Method, *, current: str | None, allow_requantize: bool,
                  imatrix: Path | None, pure: bool, threads: int, output_tensor_type: str | None,
                  token_embedding_type: str | None, progress: Progress) -> Path:
    """Quantize src into a new temp file in out_dir and return it; nothing is left behind on failure."""
    llama_cpp = import_llama()
    from gguf import GGMLQuantizationType

    if current and current.upper() not in UNQUANTIZED and not allow_requantize:
        raise BadRequestError(f"the model is already quantized ({current}); quantizing it again loses more "
                              "quality than quantizing the F16/F32 original — pass --allow-requantize to do it "
                              "anyway", param="quantize")
    if method.needs_imatrix and imatrix is None:
        raise BadRequestError(f"{method.label} needs an importance matrix: pass --imatrix FILE "
                              "(made with llama.cpp's llama-imatrix)", param="quantize")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, method.ftype)
    params.nthread = threads
    params.allow_requantize = allow_requantize
    params.pure = pure
    for field, type_name in (("output_tensor_type", output_tensor_type),
                             ("token_embedding_type", token_embedding_type)):
        if type_name:
            try:
                setattr(params, field, int(GGMLQuantizationType[type_name.upper()]))
            except KeyError:
                raise BadRequestError(f"unknown tensor type {type_name!r} (e.g. q8_0, f16)") from None
    keep: list[Any] = []  # the C arrays must outlive the call
    if imatrix is not None:
        entries = read_imatrix(imatrix)
        array = (llama_cpp.llama_model_imatrix_data * (len(entries) + 1))()
        for i, (name, values) in enumerate(entries.items()):
            buf = (ctypes.c_float * len(values))(*values)
            keep.append(buf)
            array[i].name = name.encode()
            array[i].data = ctypes.cast(buf, ctypes.POINTER(ctypes.c_float))
            array[i].size = len(values)
        keep.append(array)
        params.imatrix = ctypes.cast(array, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    out = out_dir / f".tmp-quant-{uuid.uuid4().hex[:8]}.gguf"
    result: dict[str, int] = {}

    def work() -> None:
        result["rc"] = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params))

    thread = threading.Thread(target=work, name="inferno-quantize", daemon=True)
    try:
        with _progress_from_log(progress, f"quantizing to {method.label}"):
            thread.start()
            while thread.is_alive():  # joined in slices so Ctrl-C reaches us
                thread.join(0.2)
        if result.get("rc", 1) != 0 or not out.is_file() or out.stat().st_size == 0:
            raise InfernoError(f"llama.cpp could not quantize {src.name} to {method.label} "
                               f"(status {result.get('rc')}); is it a complete GGUF with quantizable tensors?")
        return out
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(out)
        raise
