from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inferno.errors import BadRequestError
from inferno.metadata import format_parameter_size, read_metadata
from inferno.testing_gguf import TINY_TEMPLATE


def test_tiny_gguf_metadata(tiny_gguf: Path) -> None:
    meta = read_metadata(tiny_gguf)
    assert meta.architecture == "llama"
    assert meta.context_length == 2048 and meta.embedding_length == 64 and meta.block_count == 2
    assert meta.quantization == "F32"
    assert meta.rope_freq_base == 10000.0
    assert meta.chat_template == TINY_TEMPLATE
    assert meta.bos_token == "<s>" and meta.eos_token == "</s>"
    assert meta.parameter_count and meta.parameter_count > 100_000
    assert meta.model_info["llama.context_length"] == 2048


def test_smollm2_metadata(smollm2_path: Path) -> None:
    meta = read_metadata(smollm2_path)
    assert meta.architecture == "llama"
    assert meta.context_length == 8192
    assert meta.quantization == "Q4_1"
    assert format_parameter_size(meta.parameter_count) == "135M"
    assert "<|im_start|>" in (meta.chat_template or "")
    assert meta.eos_token == "<|im_end|>"


def test_truncated_gguf_is_a_clear_error(tmp_path: Path, tiny_gguf: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_gguf.read_bytes()[:100])
    with pytest.raises(BadRequestError, match="not a readable GGUF"):
        read_metadata(broken)


def test_non_gguf_gives_no_fields(tmp_path: Path) -> None:
    other = tmp_path / "other.bin"
    other.write_bytes(b"PK\x03\x04 not a gguf")
    assert read_metadata(other).architecture is None


@pytest.mark.parametrize("count, text", [(134_515_008, "135M"), (7_241_732_096, "7.2B"), (115_392, "115K"),
                                         (70_553_706_496, "70.6B"), (None, "")])
def test_parameter_size(count: int | None, text: str) -> None:
    assert format_parameter_size(count) == text


def test_a_plugin_overrides_one_field(tiny_gguf: Path) -> None:
    from inferno import pluginmanager
    from inferno.hookspecs import hookimpl

    class Override:
        @hookimpl
        def read_model_metadata(self, path: Path) -> dict[str, object]:
            return {"context_length": 999}

    name = pluginmanager.register(Override(), name="override-ctx")
    try:
        meta = read_metadata(tiny_gguf)
        assert meta.context_length == 999  # the plugin's answer wins this field …
        assert meta.architecture == "llama"  # … and the GGUF reader still fills the rest
    finally:
        pluginmanager.unregister(name)


def _gguf_library_view(path: Path) -> dict[str, Any]:
    """What gguf's own GGUFReader finds in a header: the oracle for Inferno's streaming reader."""
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(path, "r")
    kv: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or field.types[0] == GGUFValueType.ARRAY:
            continue
        part = field.parts[field.data[0]]
        kv[key] = bytes(part).decode() if field.types[0] == GGUFValueType.STRING else part.tolist()[0]
    tokens = reader.fields["tokenizer.ggml.tokens"]
    return {"kv": kv, "params": sum(int(t.n_elements) for t in reader.tensors), "vocab": len(tokens.data),
            "eos": bytes(tokens.parts[tokens.data[kv["tokenizer.ggml.eos_token_id"]]]).decode()}


@pytest.mark.smollm2
def test_streaming_reader_agrees_with_the_gguf_library(smollm2_path: Path, tiny_gguf: Path) -> None:
    from inferno_plugins.gguf_reader import read_gguf

    for path in (tiny_gguf, smollm2_path):
        ours, theirs = read_gguf(path), _gguf_library_view(path)
        for key, value in theirs["kv"].items():
            if not key.startswith("tokenizer."):
                assert ours["model_info"][key] == pytest.approx(value), key
        assert ours["chat_template"] == theirs["kv"].get("tokenizer.chat_template")
        assert ours["parameter_count"] == theirs["params"]
        assert ours["vocab_size"] == theirs["vocab"] and ours["eos_token"] == theirs["eos"]


def test_every_truncation_is_a_clear_error(tmp_path: Path, tiny_gguf: Path) -> None:
    """A header cut anywhere (a partial download, a corrupt count) is a 400, never a hang or another error."""
    from inferno_plugins.gguf_reader.header import read_header

    data = tiny_gguf.read_bytes()
    whole = read_header(tiny_gguf, 64)
    broken = tmp_path / "cut.gguf"
    outcomes = set()
    for cut in range(4, min(len(data), 8192), 5):
        broken.write_bytes(data[:cut])
        try:
            header = read_header(broken, 64)
        except ValueError:
            outcomes.add("error")
            continue
        outcomes.add("read")
        assert header.tensors == whole.tensors and header.kv == whole.kv, cut  # cut after the header: all there
    assert outcomes == {"error", "read"}
    huge = bytearray(data)
    huge[16:24] = (2**60).to_bytes(8, "little")  # the key/value count
    broken.write_bytes(bytes(huge))
    with pytest.raises(BadRequestError, match="does not fit"):
        read_metadata(broken)


def test_reading_a_header_leaves_numpy_unimported(tiny_gguf: Path) -> None:
    """The host reads a model's header on its first load: gguf-py's type names come without `import gguf`, whose
    package imports numpy (0.2 s of that load), and the quantization is still named as llama.cpp names it."""
    code = ("import sys; from pathlib import Path; from inferno_plugins.gguf_reader import read_gguf; "
            f"m = read_gguf(Path({str(tiny_gguf)!r})); "
            "print(m['quantization'], m['eos_token'], 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] and out[0] != "None" and out[2] == "False", out
