"""Without a working llama-cpp-python — not installed, or installed with a library that does not load — the
engine and the quantizer each answer with one clear line that names the package, instead of a traceback.

Both go through their public doors (`Inferno(...).engine.submit`, the quantize_model hook and the CLI), so the
test holds whatever the internals become."""

from __future__ import annotations

import importlib.abc
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from inferno.engine.types import GenerateRequest, SamplingOptions
from inferno.errors import InfernoError, UnavailableError
from inferno.host import Inferno
from tests.conftest import hide_llama_cpp


class _BrokenLibrary(importlib.abc.MetaPathFinder):
    """llama_cpp is there, but its shared library fails to load (what llama_cpp raises then)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name == "llama_cpp" or name.startswith("llama_cpp."):
            raise RuntimeError("Failed to load shared library 'libllama.so': libggml.so: cannot open shared object "
                               "file: No such file or directory")
        return None


_CHILD_IMPORT = {
    # what `import llama_cpp` raises in the model's runner and the quantizer's child processes
    "not installed": "raise ModuleNotFoundError(\"No module named 'llama_cpp'\", name='llama_cpp')\n",
    "library fails to load": "raise RuntimeError(\"Failed to load shared library 'libllama.so': libggml.so: cannot "
                             "open shared object file: No such file or directory\")\n",
}


@pytest.fixture(params=["not installed", "library fails to load"])
def no_llama(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    # Child processes (each model's runner, the quantizer) import llama_cpp themselves: a package that fails the
    # same way comes first on their path.
    fake = tmp_path / "fake-site" / "llama_cpp"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(_CHILD_IMPORT[request.param])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(fake.parent),
                                                                   os.environ.get("PYTHONPATH")])))
    hide_llama_cpp(monkeypatch)
    if request.param == "not installed":
        monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp → ImportError
    else:
        monkeypatch.setattr(sys, "meta_path", [_BrokenLibrary(), *sys.meta_path])
    yield request.param


def _says_how_to_install(error: InfernoError) -> None:
    assert isinstance(error, UnavailableError), repr(error)
    assert "llama-cpp-python" in error.message and "install" in error.message
    assert "\n" not in error.message


def test_engine_says_how_to_install(no_llama: str, home: Path, tiny_gguf: Path) -> None:
    host = Inferno()
    host.import_file(tiny_gguf, "tiny", source="t")
    try:
        with pytest.raises(InfernoError) as info:
            list(host.engine.submit(GenerateRequest(model="tiny", prompt="hi",
                                                    sampling=SamplingOptions(max_tokens=1))))
        _says_how_to_install(info.value)
    finally:
        host.engine.close()


def test_quantizer_says_how_to_install(no_llama: str, home: Path, tiny_gguf: Path) -> None:
    from inferno.cli import build_cli
    from inferno.pluginmanager import pm

    host = Inferno()
    host.import_file(tiny_gguf, "tiny", source="t")
    with pytest.raises(InfernoError) as info:
        pm.hook.quantize_model(inferno=host, source="tiny", target="out", method="q8_0",
                               progress=lambda *a: None, options={})
    _says_how_to_install(info.value)
    for args in (["quantize", "tiny", "out", "-m", "q8_0"], ["quantize", "--list"]):
        result = CliRunner().invoke(build_cli(), args)
        assert result.exit_code == 1 and "pip install llama-cpp-python" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not host.store.exists("out")
