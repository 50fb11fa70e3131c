from __future__ import annotations

from pathlib import Path

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
    from inferno import plugins
    from inferno.hookspecs import hookimpl

    class Override:
        @hookimpl
        def read_model_metadata(self, path: Path) -> dict[str, object]:
            return {"context_length": 999}

    name = plugins.register(Override(), name="override-ctx")
    try:
        meta = read_metadata(tiny_gguf)
        assert meta.context_length == 999  # the plugin's answer wins this field …
        assert meta.architecture == "llama"  # … and the GGUF reader still fills the rest
    finally:
        plugins.unregister(name)
