"""docs/scaling.md's recipe, run as written: two `inferno serve` replicas behind a real haproxy on loopback,
concurrent clients through it, and a replica killed while they run."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from inferno.config import load_settings
from inferno.host import Inferno

from .conftest import free_port, start_server, stop_server, wait_for

ROOT = Path(__file__).resolve().parent.parent
HAPROXY = shutil.which("haproxy")


def recipe() -> str:
    text = (ROOT / "docs" / "scaling.md").read_text()
    (block,) = re.findall(r"```haproxy\n(.*?)```", text, re.S)
    return block


def states(stats_url: str) -> dict[str, str]:
    """haproxy's view of each replica: UP, DOWN … (nothing while haproxy is not listening yet)"""
    try:
        rows = httpx.get(stats_url + ";csv", timeout=10).text.splitlines()
    except httpx.ConnectError:
        return {}
    head = rows[0].lstrip("# ").split(",")
    out = {}
    for row in rows[1:]:
        cells = dict(zip(head, row.split(","), strict=False))
        if cells.get("pxname") == "replicas" and cells.get("svname", "").startswith("replica"):
            out[cells["svname"]] = cells["status"]
    return out


def chats(base_url: str, clients: int, per_client: int) -> list[str]:
    def one(i: int) -> list[str]:
        client = OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=120)
        return [client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": f"client {i} turn {t}"}], max_tokens=8,
            extra_body={"ignore_eos": True}).choices[0].message.content or "" for t in range(per_client)]

    with ThreadPoolExecutor(clients) as pool:
        return [a for answers in pool.map(one, range(clients)) for a in answers]


def served(log: Path) -> int:
    return log.read_text(errors="replace").count('"path": "/v1/chat/completions", "status": 200')


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (.ci/run installs Debian's package)")
def test_two_replicas_behind_haproxy(tmp_path: Path, tiny_gguf: Path) -> None:
    assert HAPROXY is not None
    models = tmp_path / "models"  # one models folder, read by both replicas; everything else their own
    Inferno(load_settings({"INFERNO_HOME": str(tmp_path / "setup"), "INFERNO_MODELS": str(models)})).import_file(
        tiny_gguf, "tiny", source="test")
    replicas = [start_server(tmp_path / f"replica{i}", {"INFERNO_MODELS": str(models)}, ("tiny",)) for i in (1, 2)]
    front, stats = free_port(), free_port()
    ports = {"8080": front, "8404": stats, "8001": replicas[0].url.rsplit(":", 1)[1],
             "8002": replicas[1].url.rsplit(":", 1)[1]}
    config = re.sub(r"127\.0\.0\.1:(8080|8404|8001|8002)\b", lambda m: f"127.0.0.1:{ports[m.group(1)]}", recipe())
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(config)
    check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    log = (tmp_path / "haproxy.log").open("wb")
    proxy = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    url, stats_url = f"http://127.0.0.1:{front}", f"http://127.0.0.1:{stats}/stats"
    try:
        wait_for(lambda: states(stats_url) == {"replica1": "UP", "replica2": "UP"}, "haproxy to see both replicas up")
        assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "ok"

        answers = chats(url, clients=8, per_client=2)
        assert len(answers) == 16 and all(answers)
        assert served(replicas[0].log) > 0 and served(replicas[1].log) > 0  # both took a share
        assert served(replicas[0].log) + served(replicas[1].log) == 16

        # a replica dies while clients keep coming: none of them sees an error, haproxy takes it out
        replicas[1].proc.send_signal(signal.SIGKILL)
        replicas[1].proc.wait(timeout=30)
        before = served(replicas[0].log)
        answers = chats(url, clients=6, per_client=2)
        assert len(answers) == 12 and all(answers)
        assert served(replicas[0].log) - before == 12
        wait_for(lambda: states(stats_url)["replica2"].startswith("DOWN"), "haproxy to mark the dead replica down")
        assert states(stats_url)["replica1"] == "UP"
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(timeout=30)
        log.close()
        for r in replicas:
            stop_server(r)
