from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from inferno.cli import build_cli
from tests.conftest import heavy_imports


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_cli(), list(args))
    return result.exit_code, result.stdout, result.stderr


def test_pull_list_show_cp_rm(home: Path, tiny_gguf: Path) -> None:
    code, out, _ = invoke("pull", str(tiny_gguf), "--name", "mymodel")
    assert code == 0 and "pulled mymodel" in out
    code, out, _ = invoke("list")
    assert code == 0
    header, row = out.strip().splitlines()
    assert header.split() == ["NAME", "SIZE", "RAM", "QUANT", "CONTEXT", "FAMILY", "MODIFIED"]
    assert row.split()[:3] == ["mymodel", "470", "KB"] and row.split()[5:8] == ["F32", "2048", "llama"]
    assert invoke("ls")[1] == out
    code, out, _ = invoke("show", "mymodel")
    assert code == 0
    for expected in ("architecture      llama", "context length    2048", "quantization      F32",
                     "rope              freq_base 10000.0", "chat template", "source"):
        assert expected in out
    assert invoke("cp", "mymodel", "my-copy")[0] == 0
    assert {m["name"] for m in json.loads(invoke("list", "--json")[1])} == {"mymodel", "my-copy"}
    assert invoke("rm", "my-copy")[0] == 0
    assert invoke("remove", "mymodel")[0] == 0
    assert invoke("list")[1].strip() == "NAME   SIZE   RAM   QUANT   CONTEXT   FAMILY   MODIFIED"


def test_cli_pull_of_a_path_needs_no_allow_list(home: Path, tiny_gguf: Path) -> None:
    # the CLI's user is local: INFERNO_ALLOW_LOCAL_PATHS limits only what the HTTP API may read
    code, out, _ = invoke("pull", str(tiny_gguf), "--name", "from-a-path")
    assert code == 0 and "pulled from-a-path" in out


def test_link_keeps_the_file_in_place(home: Path, tiny_gguf: Path) -> None:
    assert invoke("pull", str(tiny_gguf), "--name", "linked", "--link")[0] == 0
    info = json.loads(invoke("show", "linked", "--json")[1])["info"]
    assert info["linked"] is True and info["path"] == str(tiny_gguf.resolve())


def test_errors_are_one_red_line_and_exit_1(home: Path, tmp_path: Path) -> None:
    for args, message in [
        (("show", "nope"), 'model "nope" not found'),
        (("show", "../etc/passwd"), "invalid model name"),
        (("pull", str(tmp_path / "missing.gguf")), "no such file"),
        (("rm", "nope"), "not found"),
        (("cp", "nope", "x"), "not found"),
        (("cp", "nope", "../x"), "invalid model name '../x' for destination"),
        (("cp", "../../x", "y"), "invalid model name '../../x' for source"),
        (("rm", "/etc/passwd"), "invalid model name '/etc/passwd' for model"),
        (("pull", str(tmp_path / "missing.gguf"), "--name", "../x"), "invalid model name '../x' for name"),
        (("quantize", "nope", "../x"), "invalid model name '../x' for target"),
        (("run", "..\\x", "hi"), "no source understands"),
    ]:
        code, _out, err = invoke(*args)
        assert code == 1, args
        last = err.strip().splitlines()[-1]  # progress lines may come first; the error is one line
        assert last.startswith("Error: ") and message in last and err.count("Error") == 1


def test_debug_prints_the_traceback(home: Path) -> None:
    env = {**os.environ, "INFERNO_DEBUG": "1"}
    out = subprocess.run([sys.executable, "-m", "inferno", "show", "nope"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" in out.stderr


def test_version_and_module_entry(home: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "inferno", "version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("inferno ") and "llama-cpp-python" in out.stdout


def test_help_imports_no_heavy_module() -> None:
    _, heavy = heavy_imports("from inferno.cli import build_cli\n"
                             "try:\n    build_cli()(['--help'])\nexcept SystemExit:\n    pass")
    assert heavy == []


def test_help_lists_the_commands() -> None:
    _code, out, _ = invoke("--help")
    for command in ("pull", "list", "show", "rm", "cp", "run", "serve", "ps", "plugins", "version"):
        assert f"  {command} " in out
