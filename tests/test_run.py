"""`inferno run`: one answer from an argument or stdin, and the REPL through a pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import subprocess
import sys
import termios
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
    # greedy, with room to finish (--verbose says how many tokens: fewer than the limit means it stopped)
    out = subprocess.run([sys.executable, "-m", "inferno", "run", "smollm2", "--format", "json", "--temperature",
                          "0", "--max-tokens", "400", "--verbose"],
                         input="Give a short JSON object with a cat's name and age.",
                         env=_env(smol_host), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    counted = re.search(r"answer tokens: (\d+)", out.stderr)
    assert counted and int(counted.group(1)) < 400, (out.stdout, out.stderr)
    json.loads(out.stdout)


def test_unknown_model_is_one_error_line(home: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "inferno", "run", "nosuchmodel", "hi"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.strip().startswith("Error: no source understands 'nosuchmodel'")
    out = subprocess.run([sys.executable, "-m", "inferno", "run", "../missing.gguf", "hi"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.strip().splitlines()[-1].startswith("Error: no such file")


def _controlling_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty on stdin, as a shell gives a program.
    Only then does the terminal turn Ctrl-C into SIGINT for the child's process group."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Pty:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
                                     preexec_fn=_controlling_terminal)
        os.close(slave)
        self.buffer = ""

    def _read(self, deadline: float) -> None:
        ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            try:
                self.buffer += os.read(self.master, 4096).decode(errors="replace")
            except OSError:  # the child closed the terminal
                raise AssertionError(f"the terminal closed; output so far: {self.buffer[-2000:]!r}") from None

    def read_until(self, marker: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} in {self.buffer[-2000:]!r}")
            self._read(deadline)
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def read_at_least(self, n: int, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while len(self.buffer) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {n} characters: {self.buffer!r}")
            self._read(deadline)
        out, self.buffer = self.buffer, ""
        return out

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())


def test_repl_commands(smol_host: Inferno) -> None:
    term = Pty([sys.executable, "-m", "inferno", "run", "smollm2", "--temperature", "0", "--max-tokens", "30"],
               _env(smol_host))
    try:
        term.read_until(">>> ")
        dialogue = [  # what is typed, what its answer holds
            ("/?", "/set system"),
            ("/show context", "model maximum: 8192"),
            ("/set context 2048", "Set context to 2048"),
            ("/set parameter temperature 0", "Set parameter 'temperature'"),
            ("/set parameter temperature hot", "Bad value"),
            ("/set system You answer in one word.", "Set system message"),
            ("What colour is the sky?", ""),
            ("/show context", "context window: 2048"),
            ("/show info", "llama"),
            ("/clear", "Cleared session context"),
            ("/reset", "system prompt"),
            ("/nonsense", "Unknown command"),
        ]
        for typed, expected in dialogue:
            term.send(typed + "\n")
            answer = term.read_until(">>> ")
            assert expected in answer and answer.strip(), (typed, answer)
        term.send("/bye\n")
        assert term.proc.wait(timeout=30) == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_ctrl_c_stops_the_answer_and_ctrl_d_leaves(smol_host: Inferno) -> None:
    # An answer that cannot end by itself for 3000 tokens (~12,000 characters): only Ctrl-C can bring the
    # prompt back soon. What the terminal shows between the Ctrl-C and the prompt is bounded by characters,
    # not by time, so a slow machine cannot make this pass or fail by accident.
    term = Pty([sys.executable, "-m", "inferno", "run", "smollm2", "--max-tokens", "3000", "--ignore-eos",
                "--n-ctx", "4096", "--temperature", "0"], _env(smol_host))
    try:
        term.read_until(">>> ")
        term.send("Write a very long story about the sea, with many chapters.\n")
        term.read_until("\n")  # the echoed question
        term.read_at_least(40)  # the answer is streaming
        term.send("\x03")  # Ctrl-C: stop this answer, stay in the REPL
        after = term.read_until(">>> ")
        assert term.proc.poll() is None
        # tokens already on their way when the signal landed, and the echoed ^C: a few dozen at most
        assert len(after) < 600, f"{len(after)} characters came after Ctrl-C: the answer was not stopped"
        term.send("/show context\n")  # the REPL still answers
        assert "context window" in term.read_until(">>> ")
        term.send("\x04")  # Ctrl-D: leave
        assert term.proc.wait(timeout=60) == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
