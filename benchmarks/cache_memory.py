"""The RAM prompt cache's memory: does the runner's resident memory stay within the cache's bound?

One slot, so every conversation takes the slot from the one before and the slot's cells go to the RAM cache
(`--cache-ram MIB`, the disk cache off). First one conversation (its cells in the slot, nothing cached yet:
the baseline RSS), then --conversations more, each with a system prompt of its own (~500 tokens: a state of
about 11 MiB for SmolLM2), so the cache fills and then evicts, least recently used first. Prints the runner's
RSS growth over the baseline against the bound, and what the cache says it holds.

    python benchmarks/cache_memory.py [MODEL_PATH] [--cache-ram 64] [--conversations 24]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.vs_llama_server import rss_mib
from inferno.testing_server import start_inferno, stop

RULES = " ".join(f"Rule {i}: answer in one short sentence about the sea and its tides." for i in range(36))


def converse(url: str, name: str) -> None:
    body = {"model": "bench", "stream": False, "options": {"temperature": 0, "num_predict": 16},
            "messages": [{"role": "system", "content": f"You are {name}. {RULES}"},
                         {"role": "user", "content": "Say hello."}]}
    httpx.post(f"{url}/api/chat", json=body, timeout=600).raise_for_status()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="a GGUF file (default: SmolLM2 from the tests' cache)")
    ap.add_argument("--cache-ram", type=int, default=64, help="MiB")
    ap.add_argument("--conversations", type=int, default=24)
    args = ap.parse_args()
    model = Path(args.model or Path.home() / ".cache/inferno-tests/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    home = Path(tempfile.mkdtemp(prefix="inferno-bench-"))
    subprocess.run([sys.executable, "-m", "inferno", "pull", str(model), "--name", "bench", "--link", "-q"],
                   check=True, env={**os.environ, "INFERNO_HOME": str(home)})
    server = start_inferno(home, args=["bench", "--n-ctx", "2048", "--parallel", "1", "--cache-ram",
                                       str(args.cache_ram), "--prompt-cache", "off", "--log-level", "warning"],
                           timeout=600)
    try:
        converse(server.url, "Baseline")
        (row,) = httpx.get(f"{server.url}/inferno/ps", timeout=30).json()["models"]
        pid = row["pid"]
        base = rss_mib(pid)
        peak = base
        for i in range(args.conversations):
            converse(server.url, f"Visitor {i}")
            peak = max(peak, rss_mib(pid))
        (row,) = httpx.get(f"{server.url}/inferno/ps", timeout=30).json()["models"]
        cache = row["prompt_cache"]
        held = cache["bytes"] / 2**20
        print(f"model {model.name}, 1 slot, --cache-ram {args.cache_ram} MiB, {args.conversations} conversations")
        print(f"runner RSS: baseline {base:.0f} MiB, peak {peak:.0f} MiB, growth {peak - base:.1f} MiB "
              f"= {(peak - base) / args.cache_ram:.2f}x the bound (target <= 1.05); the cache holds {held:.1f} MiB "
              f"in {cache['entries']} entries")
    finally:
        stop(server.process, 60)


if __name__ == "__main__":
    main()
