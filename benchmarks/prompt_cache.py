"""The agent workload against llama.cpp's own llama-server: a shared preamble, many clients, and a restart.

8 clients at once, each with the same ~1,500-token preamble (a system prompt and tool schemas, sent as the system
message; --preamble-in user puts it at the start of the user message instead) and a question of its own, 64
tokens out (greedy, ignore_eos), then a second round with new questions; sides one after the other, the order
alternating per round pair. Prints per side and round the median time to first token and the aggregate
tok/s, against one cold request of such a prompt alone (the limit: one evaluation of the preamble for all), and
for Inferno the first token of the same prompt after `inferno serve` restarts (its disk prompt cache) against cold.

    python benchmarks/prompt_cache.py --llama-server PATH [MODEL_PATH] [--clients 8] [--tokens 64]
        [--parallel 4] [--ctx 4096] [--threads 2] [--preamble-in system|user]

Both sides run with --parallel slots of --ctx tokens each (llama-server -np N: its default KV stream per slot).
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
from benchmarks.vs_llama_server import Streamed, free_port, run_clients, stream_chat, wait_ready
from inferno.engine.model import default_threads
from inferno.testing_server import start_inferno, stop

TOOLS = "\n".join(
    f"- tool_{i}(query: string, limit: integer, filters: object): searches the {topic} index and returns "
    f"titles, links and snippets; use it when the user asks about {topic}, never for anything else."
    for i, topic in enumerate(["news", "weather", "maps", "code", "papers", "recipes", "movies", "music", "books",
                               "sports", "finance", "travel", "health", "law", "history", "science"] * 2))
PREAMBLE = ("You are an agent in a company's support system. Follow the rules: be exact, cite the tool you used, "
            "never invent facts, answer in English.\nTools:\n" + TOOLS + "\n\n")


SYSTEM = True  # the preamble is the system message (as agents send it); --preamble-in user: the user message's start


def question(round_: int, i: int) -> str:
    return f"Round {round_}, client {i}: which tool answers question number {i * 7 + round_}?"


def ask(url: str, q: str, tokens: int) -> Streamed:
    if SYSTEM:
        return stream_chat(url, "bench", q, tokens, system=PREAMBLE)
    return stream_chat(url, "bench", PREAMBLE + q, tokens)


def wave(url: str, prompts: list[str], tokens: int) -> dict[str, Any]:
    out: list[Streamed] = [Streamed(0.0)] * len(prompts)

    def one(k: int) -> None:
        out[k] = ask(url, prompts[k], tokens)

    wall = run_clients(len(prompts), one)
    return {"ttft": statistics.median(s.ttft for s in out), "tok_s": sum(s.n for s in out) / wall,
            "failed": [s.error for s in out if s.error]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="a GGUF file (default: SmolLM2 from the tests' cache)")
    ap.add_argument("--llama-server", required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--preamble-in", choices=["system", "user"], default="system")
    args = ap.parse_args()
    global SYSTEM
    SYSTEM = args.preamble_in == "system"
    model = Path(args.model or Path.home() / ".cache/inferno-tests/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    home = Path(tempfile.mkdtemp(prefix="inferno-bench-"))
    subprocess.run([sys.executable, "-m", "inferno", "pull", str(model), "--name", "bench", "--link", "-q"],
                   check=True, env={**os.environ, "INFERNO_HOME": str(home)})
    serve_args = ["bench", "--n-ctx", str(args.ctx), "--threads", str(args.threads), "--parallel",
                  str(args.parallel), "--log-level", "warning"]

    def inferno(**env: str) -> Any:
        return start_inferno(home, args=serve_args, env=env, timeout=600)

    def peer() -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        proc = subprocess.Popen([args.llama_server, "-m", str(model), "--port", str(port), "-c",
                                 str(args.ctx * args.parallel), "-np", str(args.parallel), "-t", str(args.threads),
                                 "-tb", str(args.threads), "-fa", "off", "--no-webui", "-a", "bench"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc)
        return proc, url

    rows: dict[str, list[dict[str, Any]]] = {}
    # one cold request alone, on a fresh server of each side (no cache of it anywhere)
    s = inferno(INFERNO_PROMPT_CACHE="off")  # and leaving nothing on disk for the rounds
    cold = ask(s.url, question(0, 99), args.tokens).ttft
    stop(s.process, 60)
    p, url = peer()
    peer_cold = ask(url, question(0, 99), args.tokens).ttft
    stop(p, 60)
    for side in ("inferno", "llama-server"):  # each side fresh: two rounds of the workload
        if side == "inferno":
            s = inferno()
            proc, url = s.process, s.url
        else:
            proc, url = peer()
        rows[side] = [wave(url, [question(r, i) for i in range(args.clients)], args.tokens) for r in (1, 2)]
        stop(proc, 60)
    s = inferno()  # the disk prompt cache across the restart: the preamble of the rounds before
    restart = ask(s.url, question(3, 99), args.tokens).ttft
    stop(s.process, 60)
    where = "system" if SYSTEM else "user"
    print(f"model {model.name}, {args.clients} clients, preamble + question ~{len(PREAMBLE + question(1, 1)) // 4} "
          f"tokens, the preamble in the {where} message, "
          f"{args.tokens} tokens out, parallel {args.parallel}, ctx {args.ctx} per slot, threads {args.threads}")
    print(f"one cold request alone: first token Inferno {cold:.2f} s, llama-server {peer_cold:.2f} s")
    for r in (0, 1):
        a, b = rows["inferno"][r], rows["llama-server"][r]
        print(f"round {r + 1}: median first token Inferno {a['ttft']:.2f} s ({a['ttft'] / cold:.2f}x its cold), "
              f"llama-server {b['ttft']:.2f} s ({b['ttft'] / peer_cold:.2f}x its cold); "
              f"ratio {a['ttft'] / b['ttft']:.2f}x"
              f"; aggregate {a['tok_s']:.1f} vs {b['tok_s']:.1f} tok/s ({a['tok_s'] / b['tok_s']:.2f}x); "
              f"failed {len(a['failed'])} / {len(b['failed'])}")
    print(f"after a restart: first token {restart:.2f} s = {restart / cold:.2f}x cold (disk prompt cache)")


if __name__ == "__main__":
    main()
