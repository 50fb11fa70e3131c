from __future__ import annotations

import json
from pathlib import Path

import pytest

from inferno.errors import BadRequestError, ModelNotFoundError
from inferno.store import Store, display_name, normalize_name


@pytest.mark.parametrize("name, expected", [
    ("smollm2", "smollm2"), ("smollm2:latest", "smollm2"), ("my-model.v2_x:q4", "my-model.v2_x:q4"),
    ("A1:B2", "A1:B2"),
])
def test_names_normalise(name: str, expected: str) -> None:
    assert normalize_name(name) == expected


@pytest.mark.parametrize("name", [
    "", "../x", "a/../../etc", "/etc/passwd", "a/b", "x:..", ".hidden", "a\x00b", "a:b:c", "x" * 200, "a b",
    "..", "a:", ":a", "~root",
])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(BadRequestError):
        normalize_name(name)


def test_display_name_adds_latest() -> None:
    assert display_name("smollm2") == "smollm2:latest"
    assert display_name("m:q4") == "m:q4"


def test_add_get_list_copy_remove(tmp_path: Path, tiny_gguf: Path) -> None:
    store = Store(tmp_path / "models")
    info = store.add("tiny", tiny_gguf, source="test")
    assert info.size == tiny_gguf.stat().st_size
    assert len(info.sha256) == 64
    assert store.get("tiny:latest").name == "tiny"
    assert [m.name for m in store.list()] == ["tiny"]
    assert Path(info.path).read_bytes() == tiny_gguf.read_bytes()
    copy = store.copy("tiny", "other:v1")
    assert copy.sha256 == info.sha256 and Path(copy.path).is_file()
    assert Path(copy.path).stat().st_ino == Path(info.path).stat().st_ino  # a hard link, no extra space
    store.remove("tiny")
    assert not store.exists("tiny")
    assert Path(copy.path).is_file()  # the copy survives its source
    with pytest.raises(ModelNotFoundError):
        store.get("tiny")


def test_link_mode_leaves_the_file_in_place(tmp_path: Path, tiny_gguf: Path) -> None:
    store = Store(tmp_path / "models")
    info = store.add("linked", tiny_gguf, source="test", mode="link")
    assert info.linked and Path(info.path) == tiny_gguf.resolve()
    store.remove("linked")
    assert tiny_gguf.is_file()


def test_half_written_models_are_never_listed(tmp_path: Path, tiny_gguf: Path) -> None:
    store = Store(tmp_path / "models")
    half = store.root / "half"
    half.mkdir(parents=True)
    (half / "model.gguf").write_bytes(b"GGUF partial")  # a download that died before info.json
    (store.root / "broken").mkdir()
    (store.root / "broken" / "info.json").write_text("{not json")
    store.staging_dir()
    assert store.list() == []
    with pytest.raises(ModelNotFoundError):
        store.get("half")


def test_info_json_is_validated_and_keeps_extra_fields(tmp_path: Path, tiny_gguf: Path) -> None:
    store = Store(tmp_path / "models")
    store.add("tiny", tiny_gguf, source="test", extra={"architecture": "llama", "plugin_fact": 3})
    raw = json.loads((store.root / "tiny" / "info.json").read_text())
    assert raw["architecture"] == "llama" and raw["plugin_fact"] == 3
    assert store.update("tiny", system="be brief").system == "be brief"  # a typed field now
    assert store.update("tiny", plugin_fact=4).model_extra["plugin_fact"] == 4  # type: ignore


def test_failed_copy_leaves_no_temp_files(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    with pytest.raises(BadRequestError):
        store.add("x", tmp_path / "missing.gguf", source="test")
    leftovers = [p for p in store.root.rglob("*") if p.is_file()]
    assert leftovers == []


def test_blob_upload_verifies_digest(tmp_path: Path) -> None:
    import hashlib

    store = Store(tmp_path / "models")
    data = b"GGUF blob bytes"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    w = store.open_blob_writer(digest)
    w.write(data)
    w.commit()
    assert store.has_blob(digest)
    bad = store.open_blob_writer("sha256:" + "0" * 64)
    bad.write(data)
    with pytest.raises(BadRequestError, match="digest mismatch"):
        bad.commit()
    assert not store.has_blob("sha256:" + "0" * 64)
    with pytest.raises(BadRequestError):
        store.blob_path("sha256:../../etc/passwd")


@pytest.mark.parametrize("filename", ["../x.gguf", "../../x.gguf", "/tmp/x.gguf", "..\\x.gguf", "a/b.gguf",
                                      "x\x00.gguf", "C:x.gguf", ".hidden.gguf", "info.json", "x" * 300])
def test_add_refuses_file_names_that_leave_the_folder(tmp_path: Path, tiny_gguf: Path, filename: str) -> None:
    store = Store(tmp_path / "store" / "models")
    with pytest.raises(BadRequestError) as info:
        store.add("m", tiny_gguf, source="test", filename=filename)
    assert info.value.param == "filename"
    with pytest.raises(BadRequestError):
        store.add("m", tiny_gguf, source="test", parts=[(tiny_gguf, filename)])
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # refused before anything was written


def test_a_users_file_with_an_odd_name_gets_a_plain_one(tmp_path: Path, tiny_gguf: Path) -> None:
    odd = tmp_path / "my..model%20v2.gguf"
    odd.write_bytes(tiny_gguf.read_bytes())
    info = Store(tmp_path / "models").add("mine:q4", odd, source="test")
    assert info.filename == "mine-q4.gguf" and Path(info.path).parent == tmp_path / "models" / "mine:q4"


def test_copy_checks_names_read_back_from_info_json(tmp_path: Path, tiny_gguf: Path) -> None:
    store = Store(tmp_path / "models")
    store.add("tiny", tiny_gguf, source="test")
    info_file = store.root / "tiny" / "info.json"
    raw = json.loads(info_file.read_text())
    raw["parts"] = ["../../../stolen.gguf"]  # a tampered info.json
    info_file.write_text(json.dumps(raw))
    with pytest.raises(BadRequestError):
        store.copy("tiny", "other")
    assert not store.exists("other") and not (tmp_path / "stolen.gguf").exists()


@pytest.mark.parametrize("digest", ["sha256-" + "a" * 64, "sha256:" + "A" * 64, "sha256:" + "a" * 63,
                                    "sha256:" + "a" * 64 + "\n", "a" * 64, "sha256:../" + "a" * 61, ""])
def test_blob_digests_are_sha256_and_64_lowercase_hex(tmp_path: Path, digest: str) -> None:
    with pytest.raises(BadRequestError) as info:
        Store(tmp_path / "models").blob_path(digest)
    assert info.value.param == "digest"


def _original_inferno_model(store: Store, name: str, gguf: Path, *, inside: bool = True) -> Path:
    """A model folder as the original inferno wrote it: no source, size or digest in info.json."""
    folder = store.root / name
    folder.mkdir(parents=True)
    file = folder / gguf.name if inside else gguf
    if inside:
        file.write_bytes(gguf.read_bytes())
    (folder / "info.json").write_text(json.dumps({
        "repo_id": "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "name": name,
        "downloaded_at": "2025-03-01T12:30:00.123456", "filename": gguf.name, "path": str(file),
        "max_context": 8192}))
    return file


def test_models_written_by_the_original_inferno_are_read(tmp_path: Path, tiny_gguf: Path) -> None:
    import hashlib

    store = Store(tmp_path / "models")
    file = _original_inferno_model(store, "old-model", tiny_gguf)
    listed = store.list()
    assert [m.name for m in listed] == ["old-model"]  # no longer silently skipped
    assert listed[0].size == tiny_gguf.stat().st_size and listed[0].sha256 == ""  # listing hashes nothing
    info = store.get("old-model")  # a model being used: filled completely, once
    assert info.sha256 == hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert info.source == "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF" and info.max_context == 8192
    assert info.file == file and not info.linked
    assert info.downloaded_at.tzinfo is not None and (info.model_extra or {})["repo_id"]
    rewritten = json.loads((store.root / "old-model" / "info.json").read_text())
    assert rewritten["sha256"] == info.sha256 and rewritten["size"] == info.size  # upgraded in place
    assert store.list()[0].sha256 == info.sha256
    copy = store.copy("old-model", "new-copy")
    assert Path(copy.path).read_bytes() == tiny_gguf.read_bytes()
    store.remove("old-model")
    assert not file.exists()


def test_an_original_model_whose_file_lives_elsewhere_is_linked(tmp_path: Path, tiny_gguf: Path) -> None:
    store = Store(tmp_path / "models")
    _original_inferno_model(store, "elsewhere", tiny_gguf, inside=False)
    info = store.get("elsewhere")
    assert info.linked and info.file == tiny_gguf
    store.remove("elsewhere")
    assert tiny_gguf.is_file()  # removing a linked model never deletes the user's file


def test_an_original_model_without_its_file_is_not_listed(tmp_path: Path, tiny_gguf: Path) -> None:
    store = Store(tmp_path / "models")
    _original_inferno_model(store, "gone", tiny_gguf).unlink()
    assert store.list() == []
    with pytest.raises(ModelNotFoundError):
        store.get("gone")
