"""The runner started ahead (inferno.engine.spawn): a model's load takes the spare runner, whose imports are done;
a new spare follows once the model has loaded; a spare started under another environment is not used."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from inferno.engine.spawn import Spawner

from .conftest import start_server, stop_server, wait_for
from .test_runner import alive, generate, home_with, ps


def runner_children(pid: int) -> set[int]:
    """The server's child processes that are runners."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue
            if b"inferno.engine.runner" in cmd and alive(int(child)):
                out.add(int(child))
    return out


def spare_state(url: str) -> str | None:
    """/health's word on the spare runner: "starting" while its imports run, "ready" once they are done."""
    return httpx.get(f"{url}/health", timeout=30).json().get("spare_runner")


def test_a_load_takes_the_spare_runner_and_a_new_spare_follows(tmp_path: Path, tiny_gguf: Path) -> None:
    server = start_server(home_with(tmp_path, {"tiny": tiny_gguf}))
    try:
        pid = server.proc.pid
        wait_for(lambda: len(runner_children(pid)) == 1, "the spare runner to start")
        (spare,) = runner_children(pid)
        assert spare_state(server.url) in ("starting", "ready")
        wait_for(lambda: spare_state(server.url) == "ready", "the spare runner's imports (its ready frame)")
        r = generate(server.url, "tiny", "hi")
        assert r.status_code == 200, r.text
        assert ps(server.url)["tiny"]["pid"] == spare  # the model loaded in the runner started ahead
        wait_for(lambda: len(runner_children(pid)) == 2, "the next spare after the load")
        (fresh,) = runner_children(pid) - {spare}
        assert alive(fresh)
        wait_for(lambda: spare_state(server.url) == "ready", "the next spare's imports")
    finally:
        stop_server(server)


def test_no_spare_when_turned_off(tmp_path: Path, tiny_gguf: Path) -> None:
    server = start_server(home_with(tmp_path, {"tiny": tiny_gguf}), env_extra={"INFERNO_SPARE_RUNNER": "0"})
    try:
        assert generate(server.url, "tiny", "hi").status_code == 200
        assert runner_children(server.proc.pid) == {ps(server.url)["tiny"]["pid"]}
        assert spare_state(server.url) is None
    finally:
        stop_server(server)


def test_a_spare_from_another_environment_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    spawner = Spawner(spare=True)
    try:
        wait_for(lambda: spawner.spare is not None, "the spare to start")
        spare = spawner.spare
        assert spare is not None
        monkeypatch.setenv("GGML_SCHED_MAX_COPIES", "1")  # llama.cpp reads such variables at import
        taken = spawner.take()
        try:
            assert taken.proc.pid != spare.proc.pid and taken.env["GGML_SCHED_MAX_COPIES"] == "1"
            assert spare.proc.poll() is not None  # the stale spare was ended, not left behind
        finally:
            taken.conn.close()
            taken.proc.wait(30)
        monkeypatch.delenv("GGML_SCHED_MAX_COPIES")
        spawner.refill()
        wait_for(lambda: spawner.spare is not None, "the next spare")
        current = spawner.spare
        assert current is not None and spawner.take() is current  # a current, live spare is what a load gets
        current.conn.close()
        current.proc.wait(30)
    finally:
        spawner.close()
    assert os.environ.get("GGML_SCHED_MAX_COPIES") is None
