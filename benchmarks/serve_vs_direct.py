"""Streamed chat through `inferno serve` (/v1/chat/completions, SSE) against llama-cpp-python called
directly: same model, threads and prompt, 128 tokens, each request with its own first line (no cache hit on
either side).
Then 4 concurrent streaming clients: failures, aggregate tok/s and median time to first token. Also the model's
load time on both sides (the served one in the runner started ahead, once it has done its imports) and resident
memory: the server process, its runner, and the direct process with the same model and context.

    python benchmarks/serve_vs_direct.py [MODEL_PATH] [--reps 5] [--clients 4]
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

from inferno.engine.chat import render_chat
from inferno.engine.model import default_threads
from inferno.engine.types import Message
from inferno.metadata import read_metadata
from inferno.testing_server import start_inferno, stop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.vs_llama_server import rss_mib, rss_with_children, run_clients

# Each request's own text comes first, as its system message: SmolLM2's template puts a default system prompt in
# front of a lone user message (25 of 46 tokens), which direct llama-cpp-python reuses from its previous request
# while Inferno reuses only whole 64-token chunks (for batch invariance: see README, prompt cache). With the unique
# text first, neither side has a cache hit and first token compares the same work.
SYSTEM = "Request {i}. You are a helpful assistant."
QUESTION = "Write a detailed essay about the history of the printing press."


def messages(i: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM.format(i=i)}, {"role": "user", "content": QUESTION}]


_clients = threading.local()


def stream_once(url: str, i: str, tokens: int, timings: dict[str, Any] | None = None) -> tuple[float, float, int]:
    """One streamed chat on this thread's keep-alive connection, as a real client holds one."""
    if not hasattr(_clients, "client"):
        _clients.client = httpx.Client(timeout=300)
    body = {"model": "bench", "messages": messages(i), "stream": True,
            "max_tokens": tokens, "temperature": 0, "ignore_eos": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    first = last = 0.0
    n = 0
    with _clients.client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
            if chunk.get("usage"):
                n = chunk["usage"]["completion_tokens"]
            if chunk.get("timings") and timings is not None:  # llama-server's, in the last chunk
                timings.update(chunk["timings"])
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
    return first - t0, (n - 1) / (last - first) if last > first else 0.0, n


def direct_worker(path: Path, threads: int, tokens: int) -> None:
    """Answer "i" lines on stdin with one direct measurement each (JSON), so both sides can alternate."""
    for line in sys.stdin:
        part = direct_once(path, threads, line.strip(), tokens)
        print(json.dumps(part), flush=True)


_llama: dict[str, Any] = {}


def direct_once(path: Path, threads: int, i: str, tokens: int) -> dict[str, float]:
    from llama_cpp import Llama

    if "llama" not in _llama:
        t = time.perf_counter()
        _llama["llama"] = Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                                verbose=False)
        _llama["load"] = time.perf_counter() - t
    llama: Any = _llama["llama"]
    meta = read_metadata(path)  # what a Llama object holds once loaded (its chat template, special tokens)
    # the clock starts where the served side's does, before the chat template and the tokenizer: as in
    # Llama.create_chat_completion, which renders and tokenizes inside the call
    t0 = time.perf_counter()
    text = render_chat(meta.chat_template, [Message.model_validate(m) for m in messages(i)], tools=None,
                       bos_token=meta.bos_token or "", eos_token=meta.eos_token or "")
    prompt = llama.tokenize(text.encode(), add_bos=True, special=True)
    llama.reset()  # no reuse of the previous prompt's first tokens (the template's own): the whole prompt, as served
    first, n = 0.0, 0
    for tok in llama.generate(prompt, temp=0.0, top_k=40, top_p=0.9, min_p=0.0, repeat_penalty=1.1):
        llama.detokenize([tok])
        n += 1
        first = first or time.perf_counter()
        if n >= tokens:
            break
    return {"ttft": first - t0, "rate": (n - 1) / (time.perf_counter() - first), "load": _llama["load"],
            "rss": rss_mib(os.getpid())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?",
                    default=str(Path.home() / ".cache/inferno-tests/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--reps", type=int, default=12)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--direct-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    path = Path(args.model)
    if args.direct_worker:
        direct_worker(path, args.threads, args.tokens)
        return
    d: dict[str, list[float]] = {"ttft": [], "rate": []}
    s: dict[str, list[float]] = {"ttft": [], "rate": [], "prompt_ms": []}
    with tempfile.TemporaryDirectory() as home:
        subprocess.run([sys.executable, "-m", "inferno", "pull", str(path), "--name", "bench", "--link", "-q"],
                       env={**os.environ, "INFERNO_HOME": home}, check=True)
        # no model named: it loads on the timed load request below, as for a client
        server = start_inferno(Path(home), args=["--threads", str(args.threads), "--n-ctx", "2048",
                                                 "--log-level", "warning"], timeout=600, keep_inferno_env=True)
        url = server.url
        worker = subprocess.Popen([sys.executable, __file__, str(path), "--direct-worker", "--threads",
                                   str(args.threads), "--tokens", str(args.tokens)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert worker.stdin is not None and worker.stdout is not None
        try:
            # The server answers /health before its spare runner has done its imports (~0.4 s on two cores, in
            # the background): a load right then waits for them too. The timed load comes once the spare is
            # ready, as for any load but the first instants after a start; the wait is printed beside it.
            t = time.perf_counter()
            while httpx.get(f"{url}/health", timeout=30).json().get("spare_runner") != "ready":
                time.sleep(0.02)
            spare_ready_s = time.perf_counter() - t
            # Ollama's load request, timed by the client: the host's side and the model's load in the runner
            t = time.perf_counter()
            httpx.post(f"{url}/api/generate", json={"model": "bench"}, timeout=300).raise_for_status()
            served_load_s = time.perf_counter() - t
            stream_once(url, "warm", 4)
            worker.stdin.write("warm\n")
            worker.stdin.flush()
            direct_load_s = json.loads(worker.stdout.readline())["load"]
            # Alternate one direct and one served request, so drifts in machine speed hit both alike;
            # the idle side sleeps meanwhile (each is its own process).
            for i in range(args.reps):
                worker.stdin.write(f"d{i}\n")
                worker.stdin.flush()
                part = json.loads(worker.stdout.readline())
                d["ttft"].append(part["ttft"])
                d["rate"].append(part["rate"])
                time.sleep(0.2)
                timings: dict[str, Any] = {}
                ttft, rate, _ = stream_once(url, f"s{i}", args.tokens, timings)
                s["prompt_ms"].append(float(timings.get("prompt_ms", "nan")))
                s["ttft"].append(ttft)
                s["rate"].append(rate)
                time.sleep(0.2)
            host_rss, runner_rss, spare_rss = rss_with_children(server.process.pid, url)
            direct_rss = part["rss"]
            worker.stdin.close()
            worker.wait(timeout=60)
            concurrent = run_concurrent(url, args.clients, args.tokens)
        finally:
            stop(server.process, timeout=60)
            if worker.poll() is None:
                worker.kill()
    med = statistics.median
    pair = [sr / dr for sr, dr in zip(s["rate"], d["rate"], strict=True)]
    print(f"model {path.name}, threads {args.threads}, {args.tokens} tokens, {args.reps} alternating pairs (medians)")
    print(f"decode tok/s     direct {med(d['rate']):8.1f}   served {med(s['rate']):8.1f}   "
          f"ratio {med(pair):.3f} (median of pairs)  (target >= 0.97)")
    print(f"first token ms   direct {1000 * med(d['ttft']):8.1f}   served {1000 * med(s['ttft']):8.1f}   "
          f"delta {1000 * (med(s['ttft']) - med(d['ttft'])):+.1f} ms  (target <= +10 ms)")
    print(f"  of the served first token: the runner's prompt evaluation {med(s['prompt_ms']):.1f} ms (its timings), "
          f"the rest (HTTP, template, tokenizer, sockets) {1000 * med(s['ttft']) - med(s['prompt_ms']):.1f} ms")
    print(f"model load s     direct {direct_load_s:8.2f}   served {served_load_s:8.2f}   "
          f"delta {served_load_s - direct_load_s:+.2f} s  (target <= +0.5 s)")
    print(f"  the served load took the spare runner, ready {spare_ready_s:.2f} s after the server answered /health "
          "(its interpreter and imports, done ahead)")
    print(f"RSS MiB          direct {direct_rss:8.0f}   runner {runner_rss:8.0f}   ratio {runner_rss / direct_rss:.2f}"
          f"   server process {host_rss:.0f} (target < 150)   spare runner {spare_rss:.0f}")
    print(concurrent)


def run_concurrent(url: str, clients: int, tokens: int, per_client: int = 2) -> str:
    ttfts: list[float] = []
    failures: list[str] = []
    served = [0] * clients
    total_tokens = 0
    lock = threading.Lock()

    def client(k: int) -> None:
        nonlocal total_tokens
        for j in range(per_client):
            try:
                ttft, _, n = stream_once(url, f"c{k}-{j}", tokens)
            except Exception as e:
                with lock:
                    failures.append(f"{type(e).__name__}: {e}")
                continue
            with lock:
                ttfts.append(ttft)
                served[k] += 1
                total_tokens += n

    wall = run_clients(clients, client)
    return (f"{clients} concurrent clients x {per_client} streams: {len(failures)} failed, every client served: "
            f"{all(served)}, aggregate {total_tokens / wall:.1f} tok/s, median first token "
            f"{1000 * statistics.median(ttfts):.0f} ms" + (f"; failures: {failures[:3]}" if failures else ""))


if __name__ == "__main__":
    main()
