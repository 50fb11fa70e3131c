"""llama.cpp's quantizer in a child process (`python -m inferno_plugins.quantize.child`), so that a server's
/api/create never runs it (native code, large allocations, a possible abort) inside the server process.

The parent writes one JSON line of arguments on stdin and keeps stdin open: the child ends when it closes (the
parent died). The child writes JSON lines on stdout: {"progress": [done, total, status]}, then {"done": path}
(with the method's label) or {"error": message,
"status": code, "param": name}.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from inferno.api import BadRequestError, InfernoError, Progress, UnavailableError


def quantize_in_child(src: Path, out_dir: Path, method: str, progress: Progress,
                      **options: Any) -> tuple[Path, str]:
    """quantize_file(src, out_dir, find(method), **options) run by a child process: the same file, the same
    progress, the same errors; with the method's label. The parent never loads llama.cpp."""
    proc = subprocess.Popen([sys.executable, "-m", f"{__package__}.child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    errors: list[str] = []
    drain = threading.Thread(target=lambda: errors.extend(proc.stderr.readlines()[-5:]) if proc.stderr else None,
                             daemon=True)
    drain.start()
    result: dict[str, Any] = {}
    try:
        proc.stdin.write(json.dumps({"src": str(src), "out_dir": str(out_dir), "method": method,
                                     "options": options}) + "\n")
        proc.stdin.flush()
        for line in proc.stdout:
            msg = json.loads(line)
            if "progress" in msg:
                progress(*msg["progress"])
            else:
                result = msg
    except BaseException:
        proc.kill()
        raise
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        rc = proc.wait()
        drain.join(5)
    if "done" in result:
        return Path(result["done"]), result["label"]
    if "error" in result:
        kind = {400: BadRequestError, 503: UnavailableError}.get(result.get("status") or 500, InfernoError)
        raise kind(result["error"], param=result.get("param"))
    why = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
    raise InfernoError(f"the quantizer stopped ({why}): {''.join(errors).strip()[-300:] or 'no message'}")


def main() -> None:
    from .methods import find
    from .quantizer import quantize_file

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
    args = json.loads(sys.stdin.readline())
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(1)), daemon=True).start()  # the parent went
    lock = threading.Lock()

    def say(msg: dict[str, Any]) -> None:
        with lock:
            sys.stdout.write(json.dumps(msg) + "\n")
            sys.stdout.flush()

    options = dict(args["options"])
    if options.get("imatrix"):
        options["imatrix"] = Path(options["imatrix"])
    try:
        method = find(args["method"])
        out = quantize_file(Path(args["src"]), Path(args["out_dir"]), method,
                            progress=lambda done, total=None, status="": say({"progress": [done, total, status]}),
                            **options)
    except InfernoError as e:
        say({"error": e.message, "status": e.status, "param": e.param})
        return
    say({"done": str(out), "label": method.label})


if __name__ == "__main__":
    main()
