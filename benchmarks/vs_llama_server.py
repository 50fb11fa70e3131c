"""Inferno vs llama.cpp's own llama-server under concurrency, on the same model, threads and prompts.

Both servers run side by side (one idle while the other is measured); rounds alternate sides. Each client
streams one OpenAI chat completion of --tokens tokens (ignore_eos, greedy) with a prompt of its own. Prints
aggregate tokens/s, median time to first token and resident memory for each side (Inferno's: the server and its
runner processes), and the ratios.

    python benchmarks/vs_llama_server.py [MODEL_PATH] --llama-server PATH [--clients 1 4 16] [--rounds 3]
        [--tokens 128] [--ctx 8192] [--parallel 4] [--threads 2] [--flash-attn off] [--kv-unified]
        [--default-system]

llama-server: build it from the llama.cpp that llama-cpp-python vendors with ../shared/tools/build-llama-server.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from inferno.engine.model import default_threads
from inferno.testing_server import free_port, start_inferno, stop, wait_healthy

__all__ = ["free_port", "run_clients", "wait_ready"]  # the other benchmarks start their sides with these


def wait_ready(url: str, proc: subprocess.Popen[Any], deadline: float = 600) -> None:
    """Either side answering /health (llama-server answers 503 while it loads)."""
    wait_healthy(url, proc, deadline)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    """The process's direct children (Inferno's runners: one per loaded model)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def rss_with_children(pid: int, url: str | None = None) -> tuple[float, float, float]:
    """(the process's own RSS, its loaded models' runners' together, the other children's: Inferno's spare runner),
    MiB. Inferno's loaded runners are the pids its /inferno/ps names (url); without it every child is a runner."""
    loaded = set(children(pid))
    if url is not None:
        loaded = {m["pid"] for m in httpx.get(f"{url}/inferno/ps", timeout=30).json()["models"]}
    kids = children(pid)
    return (rss_mib(pid), sum(rss_mib(c) for c in kids if c in loaded),
            sum(rss_mib(c) for c in kids if c not in loaded))


@dataclass
class Streamed:
    """One streamed chat completion, timed: start, first and last content chunk, tokens, and a failure or ""."""

    t0: float
    first: float = 0.0
    last: float = 0.0
    n: int = 0
    error: str = ""

    @property
    def ttft(self) -> float:
        return (self.first or time.perf_counter()) - self.t0


def stream_chat(url: str, model: str, prompt: str, tokens: int, system: str | None = None) -> Streamed:
    """Stream one greedy chat completion of `tokens` tokens (ignore_eos) through /v1/chat/completions."""
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": prompt}]
    body = {"model": model, "stream": True, "max_tokens": tokens, "temperature": 0, "ignore_eos": True,
            "stream_options": {"include_usage": True}, "messages": messages}
    out = Streamed(time.perf_counter())
    with httpx.Client(timeout=600) as c, c.stream("POST", url + "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            out.error = f"HTTP {r.status_code}"
            return out
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                out.n = chunk["usage"]["completion_tokens"]
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                out.last = time.perf_counter()
                out.first = out.first or out.last
    if out.n != tokens:
        out.error = f"{out.n} tokens"
    return out


def run_clients(n: int, client: Callable[[int], None]) -> float:
    """client(0) … client(n - 1), each on a thread of its own, all at once; the wall-clock seconds they took."""
    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def measure(url: str, model: str, clients: int, tokens: int, salt: str, shared: bool = False) -> dict[str, Any]:
    """`clients` streams at once. Each prompt starts with its own system message (no prefix in common, so no side
    has a cache hit); `shared`: a lone user message, behind the chat template's default system prompt (SmolLM2:
    25 tokens in common), which llama-server reuses and Inferno does not (it reuses whole 64-token chunks only,
    so that a cached answer is the cold one: README, prefix reuse)."""
    results = [Streamed(0.0, error="not run")] * clients

    def one(i: int) -> None:
        prompt = f"Write a long story about a river called {i * 7919 % 1000}."
        own = f"Client {salt}-{i}."
        results[i] = (stream_chat(url, model, f"{own} {prompt}", tokens) if shared
                      else stream_chat(url, model, prompt, tokens, system=own))

    wall = run_clients(clients, one)
    failed = [r.error for r in results if r.error]
    return {"tok_s": sum(r.n for r in results) / wall, "ttft": statistics.median(r.ttft for r in results),
            "failed": failed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="a GGUF file (default: SmolLM2 from the tests' cache)")
    ap.add_argument("--llama-server", required=True)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--ctx", type=int, default=8192)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--flash-attn", choices=["on", "off", "auto"], default="off")
    ap.add_argument("--kv-unified", action="store_true", help="both sides share one KV cache between slots "
                    "(default: a stream per slot, the default of both)")
    ap.add_argument("--default-system", action="store_true", help="prompts share the chat template's default "
                    "system prompt (llama-server reuses it, Inferno reuses only whole 64-token chunks)")
    args = ap.parse_args()
    model = Path(args.model or Path.home() / ".cache/inferno-tests/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

    home = Path(tempfile.mkdtemp(prefix="inferno-bench-"))
    subprocess.run([sys.executable, "-m", "inferno", "pull", str(model), "--name", "bench", "--link"], check=True,
                   env={**os.environ, "INFERNO_HOME": str(home)}, capture_output=True)
    lp = free_port()
    inferno = start_inferno(home, args=["bench", "--n-ctx", str(args.ctx), "--threads", str(args.threads),
                                        "--parallel", str(args.parallel), "--flash-attn", args.flash_attn,
                                        *(["--kv-unified"] if args.kv_unified else [])],
                            env={"INFERNO_MAX_QUEUE": "256"}, timeout=600, keep_inferno_env=True)
    peer = subprocess.Popen(
        # the same cells per slot: Inferno's --n-ctx is per slot with a stream per slot, llama-server's -c is all slots'
        [args.llama_server, "-m", str(model), "--port", str(lp), "-c",
         str(args.ctx if args.kv_unified else args.ctx * args.parallel), "-np", str(args.parallel),
         *(["--kv-unified"] if args.kv_unified else []), "-t", str(args.threads), "-tb", str(args.threads),
         "-fa", args.flash_attn,
         "--no-webui", "-a", "bench"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sides = {"inferno": inferno.url, "llama-server": f"http://127.0.0.1:{lp}"}
    pids = {"inferno": inferno.process.pid, "llama-server": peer.pid}
    try:
        wait_ready(sides["llama-server"], peer)
        for url in sides.values():  # warm both: first decode allocates buffers
            measure(url, "bench", 1, 8, "warm")
        print(f"model {model.name}, ctx {args.ctx} per slot, parallel {args.parallel}, threads {args.threads}, "
              f"flash-attn {args.flash_attn}, {args.tokens} tokens per client, {args.rounds} rounds", flush=True)
        for clients in args.clients:
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
            for r in range(args.rounds):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for side in order:
                    runs[side].append(measure(sides[side], "bench", clients, args.tokens, f"{r}{side}",
                                              args.default_system))
            row = {}
            for side, rs in runs.items():
                own, runners, spare = rss_with_children(pids[side], sides[side] if side == "inferno" else None)
                row[side] = (statistics.median(x["tok_s"] for x in rs), statistics.median(x["ttft"] for x in rs),
                             sum(len(x["failed"]) for x in rs), own + runners)
                split = f" (host {own:.0f} + runner {runners:.0f}; spare {spare:.0f})" if side == "inferno" else ""
                print(f"  {clients:3d} clients  {side:12s} {row[side][0]:7.1f} tok/s  ttft p50 "
                      f"{row[side][1] * 1000:7.0f} ms  failed {row[side][2]}  RSS {row[side][3]:6.0f} MiB{split}",
                      flush=True)
            a, b = row["inferno"], row["llama-server"]
            print(f"  {clients:3d} clients  ratio inferno/llama-server: throughput {a[0] / b[0]:.2f}x, "
                  f"ttft {a[1] / b[1]:.2f}x, RSS {a[3] / b[3]:.2f}x", flush=True)
    finally:
        for p in (inferno.process, peer):
            stop(p, timeout=30)


if __name__ == "__main__":
    main()
