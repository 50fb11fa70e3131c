"""`inferno run`: one answer from an argument or stdin, and the REPL through a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from inferno.host import Inferno


def _env(host: Inferno) -> dict[str, str]:
    return {**os.environ, "INFERNO_HOME": str(host.settings.home)}


def test_one_answer_from_the_argument(smol_host: Inferno) -> None:
    out = subprocess.run([sys.executable, "-m", "inferno", "run", "smollm2", "Name three primary colours",
                          "--temperature", "0", "--max-tokens", "60"], env=_env(smol_host), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert sum(c in out.stdout.lower() for c in ("red", "blue", "yellow")) >= 2


def test_prompt_from_stdin_with_json_format(smol_host: Inferno) -> None:
    out = subprocess.run([sys.executable, "-m", "inferno", "run", "smollm2", "--format", "json", "--seed", "7",
                          "--max-tokens", "80"], input="Give a JSON object describing a cat.",
                         env=_env(smol_host), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    json.loads(out.stdout)


def test_unknown_model_is_one_error_line(home: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "inferno", "run", "nosuchmodel", "hi"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.strip().startswith("Error: no source understands 'nosuchmodel'")
    out = subprocess.run([sys.executable, "-m", "inferno", "run", "../missing.gguf", "hi"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.strip().splitlines()[-1].startswith("Error: no such file")


class Pty:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.buffer = ""

    def read_until(self, marker: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {marker!r} in {self.buffer[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.buffer += os.read(self.master, 4096).decode(errors="replace")
                except OSError:
                    break
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())


def test_repl_commands(smol_host: Inferno) -> None:
    term = Pty([sys.executable, "-m", "inferno", "run", "smollm2", "--temperature", "0", "--max-tokens", "30"],
               _env(smol_host))
    try:
        term.read_until(">>> ")
        term.send("/?\n")
        assert "/set system" in term.read_until(">>> ")
        term.send("/show context\n")
        assert "model maximum: 8192" in term.read_until(">>> ")
        term.send("/set context 2048\n")
        assert "Set context to 2048" in term.read_until(">>> ")
        term.send("/set parameter temperature 0\n")
        assert "Set parameter 'temperature'" in term.read_until(">>> ")
        term.send("/set parameter temperature hot\n")
        assert "Bad value" in term.read_until(">>> ")
        term.send("/set system You answer in one word.\n")
        assert "Set system message" in term.read_until(">>> ")
        term.send("What colour is the sky?\n")
        answer = term.read_until(">>> ")
        assert len(answer.strip()) > 0
        term.send("/show context\n")
        assert "context window: 2048" in term.read_until(">>> ")
        term.send("/show info\n")
        assert "llama" in term.read_until(">>> ")
        term.send("/clear\n")
        assert "Cleared session context" in term.read_until(">>> ")
        term.send("/reset\n")
        assert "system prompt" in term.read_until(">>> ")
        term.send("/nonsense\n")
        assert "Unknown command" in term.read_until(">>> ")
        term.send("/bye\n")
        assert term.proc.wait(timeout=30) == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_ctrl_c_stops_the_answer_and_ctrl_d_leaves(smol_host: Inferno) -> None:
    term = Pty([sys.executable, "-m", "inferno", "run", "smollm2", "--max-tokens", "4000", "--n-ctx", "4096"],
               _env(smol_host))
    try:
        term.read_until(">>> ")
        term.send("Write a very long story about the sea, with many chapters.\n")
        time.sleep(1.5)
        term.send("\x03")  # Ctrl-C: stop this answer, stay in the REPL
        term.read_until(">>> ", timeout=60)
        assert term.proc.poll() is None
        term.send("\x04")  # Ctrl-D: leave
        assert term.proc.wait(timeout=30) == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
