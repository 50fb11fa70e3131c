"""Which thread count decodes fastest here? Each count runs in a fresh process (OpenMP teams spin).

    python benchmarks/threads.py [MODEL_PATH] [--tokens 96]

Prints decode tok/s per thread count and the ratio against llama-cpp-python's own default (cpu_count // 2),
which is what inferno's default (every available core) is chosen against.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def measure(path: str, threads: int, tokens: int) -> float:
    from llama_cpp import Llama

    llama = Llama(model_path=path, n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
    rates = []
    for i in range(3):
        prompt = llama.tokenize(f"Run {i}: an essay about rivers.".encode(), add_bos=True, special=True)
        n, first = 0, 0.0
        for _ in llama.generate(prompt, temp=0.0):
            n += 1
            if n == 1:
                first = time.perf_counter()
            if n >= tokens:
                break
        rates.append((n - 1) / (time.perf_counter() - first))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?")
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.model, args.measure, args.tokens)))
        return
    path = args.model or str(Path.home() / ".cache/inferno-tests/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    cores = len(os.sched_getaffinity(0))
    counts = sorted({1, max(1, cores // 2), cores, cores * 2})
    rates = {}
    for n in counts:
        out = subprocess.run([sys.executable, __file__, path, "--measure", str(n), "--tokens", str(args.tokens)],
                             capture_output=True, text=True, check=True)
        rates[n] = json.loads(out.stdout.strip().splitlines()[-1])
    base = rates[max(1, cores // 2)]
    for n, r in rates.items():
        mark = " (llama-cpp-python default)" if n == max(1, cores // 2) else " (inferno default)" if n == cores else ""
        print(f"threads {n:3d}: {r:7.1f} tok/s  x{r / base:.2f}{mark}")


if __name__ == "__main__":
    main()
