"""Load: N concurrent streaming clients over both dialects against `inferno serve`, a fixed number of
requests each. Every request must either finish its stream or get a 503 "busy" (the queue bound) — never a
hang, a cut stream or another 5xx. Prints throughput, p50/p95 time to first token and the 503 count.

    python benchmarks/load.py [MODEL_PATH] [--clients 1 4 16 64] [--requests 2] [--tokens 32] [--max-queue 16]
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
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.vs_llama_server import run_clients
from inferno.testing_server import start_inferno, stop


def one_request(client: httpx.Client, url: str, dialect: str, i: str, tokens: int) -> tuple[str, float, int]:
    """→ ("ok" | "busy" | "failed: …", time to first token, tokens)."""
    question = f"Request {i}: tell me about rivers."
    if dialect == "openai":
        path, body = "/v1/chat/completions", {"model": "bench", "stream": True, "max_tokens": tokens,
                                              "ignore_eos": True, "stream_options": {"include_usage": True},
                                              "messages": [{"role": "user", "content": question}]}
    else:
        path, body = "/api/chat", {"model": "bench", "messages": [{"role": "user", "content": question}],
                                   "options": {"num_predict": tokens, "ignore_eos": True}}
    t0 = time.perf_counter()
    first, n, finished = 0.0, 0, False
    try:
        with client.stream("POST", url + path, json=body) as r:
            if r.status_code == 503:
                r.read()
                return "busy", 0.0, 0
            if r.status_code != 200:
                return f"failed: HTTP {r.status_code}", 0.0, 0
            for line in r.iter_lines():
                if dialect == "openai":
                    if line == "data: [DONE]":
                        finished = True
                    elif line.startswith("data: "):
                        chunk = json.loads(line[6:])
                        if "error" in chunk:
                            return f"failed: {chunk['error']}", 0.0, 0
                        if chunk.get("usage"):
                            n = chunk["usage"]["completion_tokens"]
                        elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                            first = first or time.perf_counter()
                elif line:
                    chunk = json.loads(line)
                    if "error" in chunk:
                        return f"failed: {chunk['error']}", 0.0, 0
                    if chunk.get("done"):
                        finished, n = True, chunk["eval_count"]
                    elif chunk["message"]["content"]:
                        first = first or time.perf_counter()
    except httpx.HTTPError as e:
        return f"failed: {type(e).__name__}", 0.0, 0
    if not finished:
        return "failed: stream cut", 0.0, 0
    return "ok", first - t0, n


def run_level(url: str, clients: int, requests: int, tokens: int) -> dict[str, Any]:
    results: list[tuple[str, float, int]] = []
    lock = threading.Lock()

    def client_loop(k: int) -> None:
        with httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0)) as client:
            for j in range(requests):
                dialect = "openai" if (k + j) % 2 == 0 else "ollama"
                out = one_request(client, url, dialect, f"{clients}-{k}-{j}", tokens)
                with lock:
                    results.append(out)

    wall = run_clients(clients, client_loop)
    ok = [r for r in results if r[0] == "ok"]
    ttfts = sorted(r[1] for r in ok)

    def pct(p: float) -> float:
        return ttfts[min(len(ttfts) - 1, int(p * len(ttfts)))] if ttfts else float("nan")

    return {"clients": clients, "requests": len(results), "ok": len(ok),
            "busy": sum(r[0] == "busy" for r in results),
            "failed": [r[0] for r in results if r[0].startswith("failed")],
            "tok_s": sum(r[2] for r in ok) / wall, "p50": pct(0.5), "p95": pct(0.95), "wall": wall,
            "median": statistics.median(ttfts) if ttfts else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?",
                    default=str(Path.home() / ".cache/inferno-tests/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--max-queue", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        subprocess.run([sys.executable, "-m", "inferno", "pull", args.model, "--name", "bench", "--link", "-q"],
                       env={**os.environ, "INFERNO_HOME": home}, check=True)
        server = start_inferno(Path(home), args=["bench", "--n-ctx", "1024", "--log-level", "warning"],
                               env={"INFERNO_MAX_QUEUE": str(args.max_queue)}, timeout=600, keep_inferno_env=True)
        url = server.url
        try:
            print(f"model {Path(args.model).name}, {args.tokens} tokens per request, {args.requests} requests per "
                  f"client, INFERNO_MAX_QUEUE={args.max_queue}, both dialects alternating")
            print(f"{'clients':>7} {'requests':>8} {'ok':>5} {'503':>5} {'failed':>6} {'tok/s':>8} "
                  f"{'p50 TTFT':>10} {'p95 TTFT':>10} {'wall s':>7}")
            failures = []
            for n in args.clients:
                r = run_level(url, n, args.requests, args.tokens)
                failures += r["failed"]
                print(f"{n:>7} {r['requests']:>8} {r['ok']:>5} {r['busy']:>5} {len(r['failed']):>6} "
                      f"{r['tok_s']:>8.1f} {1000 * r['p50']:>8.0f}ms {1000 * r['p95']:>8.0f}ms {r['wall']:>7.1f}")
            alive = httpx.get(url + "/health", timeout=5).status_code == 200
            print(f"server alive afterwards: {alive}; failures: {failures[:5] or 'none'}")
        finally:
            stop(server.process, timeout=60)


if __name__ == "__main__":
    main()
