"""The quantize plugin: llama.cpp's quantizer in-process on a synthetic F32 GGUF (256 dims, k-quant ready)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from inferno.cli import build_cli
from inferno.engine.types import Done, GenerateRequest, SamplingOptions
from inferno.errors import BadRequestError, InfernoError
from inferno.host import Inferno
from inferno.pluginmanager import pm
from inferno.testing_gguf import write_tiny_gguf


@pytest.fixture(scope="module")
def f32_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("q") / "base-f32.gguf", n_embd=256, n_ff=512, seed=4)


@pytest.fixture
def qhost(home: Path, f32_gguf: Path) -> Inferno:
    h = Inferno()
    h.import_file(f32_gguf, "base", source="test")
    return h


def cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(build_cli(), list(args))
    return r.exit_code, r.stdout, r.stderr


def generate(host: Inferno, name: str) -> Done:
    events = list(host.engine.submit(GenerateRequest(model=name, prompt="hello", sampling=SamplingOptions(
        max_tokens=4, ignore_eos=True))))
    done = events[-1]
    assert isinstance(done, Done)
    return done


@pytest.mark.parametrize("method, quant", [("q8_0", "Q8_0"), ("q4_0", "Q4_0"), ("Q4_K_M", "Q4_K_M")])
def test_quantize_loads_and_generates(qhost: Inferno, method: str, quant: str) -> None:
    code, _, err = cli("quantize", "base", "small", "--method", method)
    assert code == 0, err
    info = qhost.store.get("small")
    assert qhost.metadata("small").quantization == quant
    assert info.size < qhost.store.get("base").size / 3
    extra = info.model_extra or {}
    assert extra["quantized_from"] == "base" and extra["quantization_method"] == quant
    assert generate(qhost, "small").completion_tokens == 4
    qhost.engine.close()


def test_default_target_name(qhost: Inferno) -> None:
    assert cli("quantize", "base", "--method", "q8_0")[0] == 0
    assert qhost.store.exists("base-q8_0")


def test_list_methods() -> None:
    code, out, _ = cli("quantize", "--list")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert {"Q4_K_M", "Q8_0", "Q2_K", "IQ4_XS", "F16", "BF16"} <= set(lines)
    assert "4.89" in lines["Q4_K_M"] and "needs --imatrix" in lines["IQ2_XXS"]


def test_requantize_is_refused_unless_allowed(qhost: Inferno) -> None:
    assert cli("quantize", "base", "q8", "-m", "q8_0")[0] == 0
    code, _, err = cli("quantize", "q8", "q4", "-m", "q4_0")
    assert code == 1 and "already quantized (Q8_0)" in err and "--allow-requantize" in err
    assert not qhost.store.exists("q4")
    assert cli("quantize", "q8", "q4", "-m", "q4_0", "--allow-requantize")[0] == 0
    assert qhost.metadata("q4").quantization == "Q4_0"


def _write_imatrix(path: Path, host: Inferno) -> None:
    """A legacy .dat importance matrix: per matmul weight, one positive value per input column."""
    from gguf import GGUFReader

    reader = GGUFReader(host.store.get("base").file)
    entries = [(t.name, int(t.shape[0])) for t in reader.tensors
               if len(t.shape) == 2 and t.name.startswith("blk.")]
    with path.open("wb") as f:
        f.write(struct.pack("<i", len(entries)))
        for name, n in entries:
            raw = name.encode()
            f.write(struct.pack("<i", len(raw)) + raw + struct.pack("<ii", 1, n))
            f.write(struct.pack(f"<{n}f", *[1.0 + (i % 7) / 10 for i in range(n)]))


def test_importance_matrix_methods(qhost: Inferno, tmp_path: Path) -> None:
    code, _, err = cli("quantize", "base", "tiny2", "-m", "iq2_xxs")
    assert code == 1 and "needs an importance matrix" in err
    imatrix = tmp_path / "imatrix.dat"
    _write_imatrix(imatrix, qhost)
    code, _, err = cli("quantize", "base", "tiny2", "-m", "iq2_xxs", "--imatrix", str(imatrix))
    assert code == 0, err
    assert qhost.metadata("tiny2").quantization == "IQ2_XXS"


def test_unknown_method(qhost: Inferno) -> None:
    code, _, err = cli("quantize", "base", "x", "-m", "q9_z")
    assert code == 1 and "unknown quantization method" in err


def test_failure_leaves_nothing_behind(qhost: Inferno, f32_gguf: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    data = f32_gguf.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    qhost.store.add("broken", broken, source="test")
    with pytest.raises(InfernoError):
        pm.hook.quantize_model(inferno=qhost, source="broken", target="out", method="q8_0",
                               progress=lambda *a: None, options={})
    assert not qhost.store.exists("out")
    assert not list(qhost.store.staging_dir().glob("*"))


def test_hook_quantize_model(qhost: Inferno) -> None:
    seen: list[str] = []
    info = pm.hook.quantize_model(inferno=qhost, source="base", target="via-hook", method="q8_0",
                                  progress=lambda done, total, status: seen.append(status), options={})
    assert info.name == "via-hook" and qhost.metadata("via-hook").quantization == "Q8_0"
    assert "quantizing to Q8_0" in seen
    with pytest.raises(BadRequestError):
        pm.hook.quantize_model(inferno=qhost, source="base", target="x", method="nope",
                               progress=lambda *a: None, options={})


def test_compare_and_estimate(qhost: Inferno) -> None:
    assert cli("quantize", "base", "q8", "-m", "q8_0")[0] == 0
    code, out, _ = cli("compare", "base", "q8")
    assert code == 0
    header, base, q8 = (line.split() for line in out.strip().splitlines())
    assert header[:4] == ["MODEL", "SIZE", "BITS/W", "QUANT"]
    # MODEL, SIZE (number and unit), BITS/W, QUANT: F32 weights are 32 bits each, plus the file's header
    assert base[0] == "base" and base[4] == "F32" and 32 <= float(base[3]) < 33, base
    assert q8[0] == "q8" and q8[4] == "Q8_0" and 8.5 <= float(q8[3]) < 9, q8  # 34 bytes per 32 weights
    code, out, _ = cli("compare", "base", "q8", "--eval")
    assert code == 0 and "TOK/S" in out and "PPL" in out and "bundled text" in out
    rows = [line.split() for line in out.splitlines()[1:3]]
    assert all(float(r[-2]) > 0 and float(r[-1]) > 1 for r in rows)
    code, out, _ = cli("estimate", "base", "--n-ctx", "1024")
    assert code == 0 and "KV CACHE @1024" in out and "F32 (this file)" in out and "Q4_K_M" in out


def test_quantized_model_runs_in_inferno_run(qhost: Inferno) -> None:
    assert cli("quantize", "base", "runme", "-m", "q4_k_m")[0] == 0
    env = {**os.environ, "INFERNO_HOME": str(qhost.settings.home)}
    out = subprocess.run([sys.executable, "-m", "inferno", "run", "runme", "hi", "--max-tokens", "3"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_smollm2_perplexity_is_sane(smol_host: Inferno) -> None:
    code, out, _ = cli("compare", "smollm2", "--eval")
    assert code == 0
    ppl = float(out.splitlines()[1].split()[-1])
    assert 1 < ppl < 200  # a real model on plain English; random weights give millions


def test_quantizing_puts_back_the_log_callback_it_found() -> None:
    """The quantizer listens to llama.cpp's log for progress; the engine's device accounting listens too.
    Whatever callback was installed before must be the one installed after (the RPC tests read buffer sizes
    from it)."""
    import ctypes

    import llama_cpp

    from inferno.engine import devices
    from inferno_plugins.quantize import quantizer

    def current() -> int | None:
        cb, data = llama_cpp.llama_log_callback(), ctypes.c_void_p()
        llama_cpp.llama_log_get(ctypes.byref(cb), ctypes.byref(data))
        return ctypes.cast(cb, ctypes.c_void_p).value

    devices._install_tap()
    before = current()
    with quantizer._progress_from_log(lambda *a: None, "quantizing"):
        assert current() != before
    assert current() == before
