"""The original inferno's CLI habits: load flags on run and serve in both spellings (--n-ctx and --n_ctx), the
same settings per request (OpenAI extra body, Ollama options), the list RAM column, show's RAM table,
`version`'s build report, a client base_url ending in /v1, and a truthful size_vram."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from click.testing import CliRunner
from openai import OpenAI

from inferno.cli import build_cli
from inferno.client import InfernoClient
from inferno.client._core import server_root
from inferno.config import load_settings
from inferno.host import Inferno
from inferno.ram import default_context
from tests.conftest import Server, start_server, stop_server, wait_for


def invoke(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_cli(), list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


ORIGINAL = ("--n_ctx", "96", "--n_threads", "1", "--n_batch", "32", "--n_gpu_layers", "0", "--use_mlock",
            "--rope_freq_base", "20000", "--rope_freq_scale", "0.5")
EXPECTED = {"n_ctx": 96, "n_threads": 1, "n_batch": 32, "n_gpu_layers": 0, "use_mlock": True,
            "rope_freq_base": 20000.0, "rope_freq_scale": 0.5}


@pytest.fixture(scope="module")
def flagged(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Server]:
    """`inferno serve tiny` started with every load flag in the original's underscore spelling."""
    home = tmp_path_factory.mktemp("parity-home")
    Inferno(load_settings({"INFERNO_HOME": str(home)})).import_file(tiny_gguf, "tiny", source=str(tiny_gguf))
    # requests below set every load option: this operator lets them (the default allows num_ctx only)
    server = start_server(home, {"INFERNO_REQUEST_LOAD_OPTIONS": "*"}, args=("tiny", *ORIGINAL))
    yield server
    stop_server(server)


def loaded(server: Server) -> dict[str, dict[str, object]]:
    with InfernoClient(server.url + "/v1", max_retries=0) as client:  # the original README's base_url
        return {m.name: m.model_dump() for m in client.ps().models}


def test_serve_takes_the_original_spellings(flagged: Server) -> None:
    wait_for(lambda: "tiny" in loaded(flagged), "the preloaded model")
    row = loaded(flagged)["tiny"]
    assert row["context_length"] == 96
    assert row["load_options"] == EXPECTED


def test_load_options_per_request(flagged: Server) -> None:
    client = OpenAI(base_url=flagged.url + "/v1", api_key="unused")
    client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                   extra_body={"num_ctx": 128, "n_threads": 1, "num_batch": 16, "use_mlock": False,
                                               "rope_freq_base": 10000, "rope_freq_scale": 1.0})
    row = loaded(flagged)["tiny"]
    assert row["context_length"] == 128
    assert row["load_options"] == {"n_ctx": 128, "n_threads": 1, "n_batch": 16, "n_gpu_layers": 0,
                                   "use_mlock": False, "rope_freq_base": 10000.0, "rope_freq_scale": 1.0}
    bad = httpx.post(flagged.url + "/v1/chat/completions", json={
        "model": "tiny", "messages": [{"role": "user", "content": "hi"}], "n_gpu_layers": -5})
    assert bad.status_code == 400

    ol = ollama.Client(host=flagged.url)
    ol.generate(model="tiny", prompt="hi", options={"num_ctx": 160, "num_thread": 1, "num_gpu": 0,
                                                    "use_mlock": True, "rope_frequency_base": 15000.0,
                                                    "num_batch": 8, "num_predict": 2})
    row = loaded(flagged)["tiny"]
    assert row["context_length"] == 160
    options = row["load_options"]
    assert isinstance(options, dict) and options["rope_freq_base"] == 15000.0 and options["n_batch"] == 8
    # no GPU here (and none asked for): every byte of the model is in RAM, as llama.cpp's buffers say
    (ps,) = ol.ps().models
    assert ps.size_vram == 0 and (ps.size or 0) > 0


def test_size_vram_counts_only_local_gpus() -> None:
    from inferno_plugins.ollama_api.manage import vram_bytes

    rows = [{"name": "CPU", "endpoint": None, "memory": 100}, {"name": "CUDA0", "endpoint": None, "memory": 40},
            {"name": "RPC0[10.0.0.2:50052]", "endpoint": "10.0.0.2:50052", "memory": 7}]
    assert vram_bytes(rows) == 40
    assert vram_bytes(rows[:1]) == 0


@pytest.mark.parametrize("spelling", ["--n_ctx", "--n-ctx"])
def test_run_flags_reach_the_engine(host: Inferno, spelling: str) -> None:
    long_prompt = " ".join(["word"] * 200)
    code, _out, err = invoke("run", "tiny", long_prompt, spelling, "16", "--max-tokens", "2")
    assert code == 1 and "context" in err  # 16 tokens cannot hold the prompt: the flag was applied
    code, out, err = invoke("run", "tiny", "hello", spelling, "64", "--threads", "1", "--n_gpu_layers", "0",
                            "--use-mlock", "--n_batch", "16", "--rope-freq-base", "10000", "--rope_freq_scale",
                            "1", "--max-tokens", "3", "--temperature", "0")
    assert code == 0, err
    assert out.strip()


def test_flags_are_validated(home: Path) -> None:
    for args in (("--n_ctx", "4"), ("--n-gpu-layers", "-2"), ("--rope_freq_scale", "0"), ("--n_batch", "0")):
        code, _out, err = invoke("run", "tiny", "hi", *args)
        assert code == 2 and "Invalid value" in err, (args, err)
    _code, out, _err = invoke("serve", "--help")
    for flag in ("--n-ctx, --n_ctx", "--threads, --n-threads, --n_threads", "--n-gpu-layers, --n_gpu_layers",
                 "--use-mlock, --use_mlock", "--n-batch, --n_batch", "--rope-freq-base, --rope_freq_base",
                 "--rope-freq-scale, --rope_freq_scale", "--rpc", "--parallel"):
        assert flag in out, flag


def test_list_ram_column_and_json(host: Inferno) -> None:
    meta = host.metadata("tiny")
    ctx = default_context(meta, host.settings.default_context)  # the trained length, INFERNO_CONTEXT_LENGTH unset
    assert ctx == meta.context_length
    assert meta.block_count and meta.embedding_length and meta.head_count
    kv = meta.block_count * (meta.head_count_kv or meta.head_count) * (meta.embedding_length // meta.head_count) \
        * ctx * 2 * 2
    code, out, _ = invoke("list", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["name"] == "tiny" and row["ram_context"] == ctx
    assert row["ram"] == host.store.get("tiny").size + kv
    code, out, _ = invoke("list")
    header, line = out.strip().splitlines()
    assert header.split()[:3] == ["NAME", "SIZE", "RAM"]
    from inferno.api import human_size

    assert line.split()[3:5] == human_size(row["ram"]).split()
    # the same figure as `inferno estimate` gives for this file
    _code, est, _ = invoke("estimate", "tiny")
    assert human_size(row["ram"]).replace(" ", "") in est.replace(" ", "")


def test_show_has_the_per_quantization_ram_table(host: Inferno) -> None:
    code, out, _ = invoke("show", "tiny")
    assert code == 0
    table = out.split("RAM needed", 1)[1]
    labels = [line.split()[0] for line in table.strip().splitlines()[1:] if line.strip()]
    assert labels[:4] == ["F32", "F16", "Q8_0", "Q6_K"] and "Q4_K_M" in labels and "Q2_K" in labels


def test_version_reports_the_build(home: Path) -> None:
    import llama_cpp

    code, out, _ = invoke("version")
    assert code == 0
    assert "backends" in out and "CPU" in out and "GPU offload" in out
    assert f"RPC          {'yes' if llama_cpp.llama_supports_rpc() else 'no'}" in out
    info = json.loads(invoke("version", "--json")[1])
    assert "CPU" in info["backends"] and info["rpc"] == bool(llama_cpp.llama_supports_rpc())
    assert info["gpu_offload"] == bool(set(info["backends"]) - {"CPU", "BLAS", "RPC"})


def test_version_when_llama_cpp_does_not_load(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from tests.conftest import hide_llama_cpp

    hide_llama_cpp(monkeypatch)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp → ImportError
    code, out, _ = invoke("version")
    assert code == 0 and "llama.cpp    does not load: ModuleNotFoundError" in out and "backends" not in out


def test_client_base_url_with_or_without_v1() -> None:
    for url in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/"):
        assert server_root(url) == "http://h:1"
    assert server_root("http://h:1/prefix/v1") == "http://h:1/prefix"
    assert InfernoClient("http://127.0.0.1:9/v1").base_url == "http://127.0.0.1:9"
