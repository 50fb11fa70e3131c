"""One model split over two RPC workers: Inferno `serve --rpc` vs llama.cpp's own `llama-server --rpc`.

Two `inferno rpc-worker` processes on loopback hold the layers; each side in turn starts, loads the model onto
the same two workers, streams --requests greedy chat completions of --tokens tokens (ignore_eos) one after the
other, and stops (a worker serves one client at a time, so the sides cannot overlap); rounds alternate which
side goes first. Prints, per side, the median streamed decode rate (tokens after the first / time from first
to last) and first-token latency, the ratio, and the same for both sides with no RPC (the whole model in one
process, with the workers' threads together) as the local reference.

    python benchmarks/rpc.py [MODEL_PATH] [--llama-server PATH] [--rounds 3] [--requests 4] [--tokens 128]
        [--worker-threads 1] [--threads 1] [--ctx 2048] [--no-local] [--peer-args '--cache-ram 0']

llama-server: build it (with RPC) from the llama.cpp that llama-cpp-python vendors with
../shared/tools/build-llama-server.sh.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.vs_llama_server import free_port, stream_chat, wait_ready

PEER = Path("/tmp/llama-peers/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-server")
MODEL = Path.home() / ".cache/inferno-tests/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def stream(url: str, prompt: str, tokens: int) -> tuple[float, float]:
    """One streamed chat completion -> (first-token latency s, decode tok/s after the first token)."""
    r = stream_chat(url, "bench", prompt, tokens)
    if r.error:
        raise SystemExit(f"{url}: {r.error}")
    return r.ttft, (r.n - 1) / (r.last - r.first)


def start_worker(port: int, threads: int, cache: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "inferno", "rpc-worker", "--port", str(port), "--threads",
                             str(threads), "--cache", str(cache)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    for line in iter(proc.stderr.readline, b""):
        if b"serving" in line:
            return proc
    raise SystemExit("rpc-worker did not start")


def start_side(side: str, model: Path, home: Path, rpc: str | None, args: argparse.Namespace,
               threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if side == "inferno":
        cmd = [sys.executable, "-m", "inferno", "serve", "bench", "--port", str(port), "--n-ctx", str(args.ctx),
               "--threads", str(threads), "--parallel", "1", "--flash-attn", "off", *(["--rpc", rpc] if rpc else [])]
        env = {**os.environ, "INFERNO_HOME": str(home)}
    else:
        cmd = [str(args.llama_server), "-m", str(model), "--port", str(port), "-c", str(args.ctx), "-np", "1",
               "--kv-unified", "-t", str(threads), "-tb", str(threads), "-fa", "off", "--no-webui", "-a", "bench",
               *(["--rpc", rpc, "-ngl", "99"] if rpc else []), *args.peer_args.split()]
        env = dict(os.environ)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    stream(url, "warm up", 8)  # loads the model (inferno loads on the first request) and allocates buffers
    return proc, url


def run_side(side: str, model: Path, home: Path, rpc: str | None, args: argparse.Namespace, threads: int,
             salt: str) -> list[tuple[float, float]]:
    proc, url = start_side(side, model, home, rpc, args, threads)
    try:
        return [stream(url, f"{salt} {i}: tell a long story about the river number {i * 7919 % 1000}.", args.tokens)
                for i in range(args.requests)]
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", type=Path, default=MODEL)
    ap.add_argument("--llama-server", type=Path, default=PEER)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--worker-threads", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="threads of the serving process (both sides)")
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--no-local", action="store_true", help="skip the local (no RPC) reference")
    ap.add_argument("--peer-args", default="", help="more llama-server arguments, e.g. '--cache-ram 0' (its prompt "
                    "cache saves an idle slot's KV to RAM before the next prompt: over RPC that is a round trip)")
    args = ap.parse_args()
    if not args.llama_server.is_file():
        raise SystemExit(f"no llama-server at {args.llama_server}: build it with ../shared/tools/build-llama-server.sh")

    home = Path(tempfile.mkdtemp(prefix="inferno-bench-rpc-"))
    subprocess.run([sys.executable, "-m", "inferno", "pull", str(args.model), "--name", "bench", "--link"],
                   check=True, env={**os.environ, "INFERNO_HOME": str(home)}, capture_output=True)
    ports = [free_port(), free_port()]
    workers = [start_worker(p, args.worker_threads, home / f"cache-{p}") for p in ports]
    rpc = ",".join(f"127.0.0.1:{p}" for p in ports)
    sides = ["inferno", "llama-server"]
    results: dict[str, list[tuple[float, float]]] = {f"{s} {k}": [] for s in sides for k in ("rpc", "local")}
    print(f"model {args.model.name}, 2 rpc-workers x {args.worker_threads} threads on loopback, serving process "
          f"{args.threads} threads, ctx {args.ctx}, {args.tokens} tokens x {args.requests} requests x {args.rounds} "
          f"rounds; local: {args.worker_threads * 2} threads, no RPC", flush=True)
    try:
        for r in range(args.rounds):
            for side in sides if r % 2 == 0 else reversed(sides):
                results[f"{side} rpc"] += run_side(side, args.model, home, rpc, args, args.threads, f"{r}{side}")
                if not args.no_local:
                    results[f"{side} local"] += run_side(side, args.model, home, None, args,
                                                         args.worker_threads * 2, f"{r}{side}l")
            print(f"  round {r + 1} done", flush=True)
    finally:
        for w in workers:
            w.terminate()
            w.wait(30)
    rows: dict[str, Any] = {}
    for key, rs in results.items():
        if rs:
            rows[key] = (statistics.median(x[1] for x in rs), statistics.median(x[0] for x in rs))
            print(f"  {key:20s} decode {rows[key][0]:7.1f} tok/s   first token p50 {rows[key][1] * 1000:7.1f} ms")
    for kind in ("rpc", "local"):
        a, b = rows.get(f"inferno {kind}"), rows.get(f"llama-server {kind}")
        if a and b:
            print(f"  {kind}: inferno/llama-server decode {a[0] / b[0]:.2f}x, first token {a[1] / b[1]:.2f}x "
                  f"({(a[1] - b[1]) * 1000:+.1f} ms)")


if __name__ == "__main__":
    main()
