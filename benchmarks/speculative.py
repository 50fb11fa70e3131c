"""Speculative decoding (n-gram drafts) on and off through one `inferno serve`, alternating request by request.

Edit workloads (repeat a passage changing one word, rename a variable in a function, quote a sentence), greedy,
through /v1/chat/completions with `speculative: false` on the off side: decode tok/s from each answer's timings
(generated tokens / generation time, as llama-server reports them), the ratio per pair, and whether both sides
gave the same text. Then an ordinary chat workload (no repetition) the same way, and 4 concurrent edit clients
(aggregate tok/s over the wall clock), on then off.

    python benchmarks/speculative.py [MODEL_PATH] [--reps 3] [--flash-attn on|off] [--mode auto|ngram]
                                     [--draft DRAFT_GGUF]

`--llama-server PATH` adds llama.cpp's own server (built by ../shared/tools/build-llama-server.sh) with each of its
n-gram `--spec-type`s (`--spec-types`, default ngram-simple, ngram-map-k, ngram-mod) on the same edit prompts,
alternating request by request with Inferno with speculation on; both get the same sampling (greedy, repeat
penalty 1.1 over the last 64 tokens: Inferno's default, sent to llama-server, whose own default is 1.0).

`--draft` serves with that draft model (`--speculative draft`): "on" is then drafting with the model; run it
with and without to compare draft and n-gram, each against off.

`auto` drafts only where flash attention is on (there a draft's rows give the same numbers as one token at a
time); `--flash-attn off --mode ngram` measures drafting on the plain attention path (text may differ).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.vs_llama_server import run_clients
from inferno.engine.model import default_threads
from inferno.testing_server import free_port, wait_healthy

PASSAGE = (
    "The old lighthouse stood at the end of the rocky point for more than a hundred years. Every evening the keeper "
    "climbed the narrow stairs, cleaned the great lens, trimmed the wick and lit the lamp, so that the fishing boats "
    "coming home through the fog could find the harbour. In winter the storms threw waves over the gallery and the "
    "windows shook in their frames, but the light never went out. The keeper wrote the weather in a thick book "
    "every morning: the wind, the sea, the ships that passed and the birds that rested on the rail. When the "
    "harbour built a new electric beacon, the lighthouse was closed, and the book was given to the town museum, "
    "where children still read the careful lines about fog, gales and quiet summer nights.")
CODE = '''def total_price(items, tax_rate):
    subtotal = 0
    for item in items:
        subtotal += item.price * item.quantity
    discount = 0
    if subtotal > 100:
        discount = subtotal * 0.05
    taxed = (subtotal - discount) * (1 + tax_rate)
    return round(taxed, 2)
'''
DOC = ("The museum opens at ten in the morning from Tuesday to Sunday. Tickets cost twelve euros for adults and six "
       "for students. Guided tours in English start at eleven and at three. The cafe on the top floor serves lunch "
       "until half past two. Large bags must be left in the cloakroom next to the entrance.")
EDITS = [
    f"Repeat the following text exactly, but change the word 'keeper' to 'guardian':\n\n{PASSAGE}",
    f"Rewrite this Python function, renaming the variable subtotal to base_amount. Keep everything else the "
    f"same.\n\n{CODE}",
    f"Here is a document:\n\n{DOC}\n\nQuote the sentence of the document that says when the guided tours start, "
    f"then repeat the whole document.",
]
CHATS = ["Write a short story about a robot learning to paint.", "Explain photosynthesis to a child.",
         "What are the benefits of regular exercise?"]


def ask(client: httpx.Client, url: str, prompt: str, spec: bool, tokens: int,
        extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One greedy chat; either server (llama-server ignores the model name). extra: more body fields."""
    body: dict[str, Any] = {"model": "bench", "messages": [{"role": "user", "content": prompt}],
                            "max_tokens": tokens, "temperature": 0, **(extra or {})}
    if not spec:
        body["speculative"] = False
    r = client.post(f"{url}/v1/chat/completions", json=body)
    r.raise_for_status()
    out = r.json()
    t = out["timings"]
    return {"text": out["choices"][0]["message"]["content"], "n": t["predicted_n"],
            "rate": t["predicted_per_second"], "draft_n": t.get("draft_n", 0),
            "accepted": t.get("draft_n_accepted", 0)}


def alternate(url: str, prompts: list[str], reps: int, tokens: int) -> dict[str, Any]:
    """Each prompt reps times, off then on (then on then off the next time), so drifts hit both alike."""
    ratios, on_rates, off_rates, same, drafted, accepted = [], [], [], True, 0, 0
    with httpx.Client(timeout=900) as client:
        for rep in range(reps):
            for prompt in prompts:
                order = (False, True) if rep % 2 == 0 else (True, False)
                res = {spec: ask(client, url, prompt, spec, tokens) for spec in order}
                ratios.append(res[True]["rate"] / res[False]["rate"])
                on_rates.append(res[True]["rate"])
                off_rates.append(res[False]["rate"])
                same = same and res[True]["text"] == res[False]["text"]
                drafted += res[True]["draft_n"]
                accepted += res[True]["accepted"]
    med = statistics.median
    return {"on": med(on_rates), "off": med(off_rates), "ratio": med(ratios), "same": same,
            "acceptance": accepted / drafted if drafted else 0.0, "drafted": drafted}


# what Inferno applies by default (inferno.engine.sampling.DEFAULT_SAMPLING), given to llama-server explicitly
PEER_SAMPLING = {"repeat_penalty": 1.1, "repeat_last_n": 64, "top_k": 40, "top_p": 0.9}


def against_peer(url: str, binary: str, model: str, spec_type: str, threads: int, flash: str, reps: int,
                 tokens: int) -> dict[str, Any]:
    """llama-server with one n-gram --spec-type, alternating with Inferno (speculation on) prompt by prompt."""
    port = free_port()
    peer = subprocess.Popen([binary, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-t", str(threads),
                             "-c", "2048", "-np", "1", "--flash-attn", flash, "--spec-type", spec_type,
                             "--no-webui"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peer_url = f"http://127.0.0.1:{port}"
    ratios, mine, theirs, same, drafted, accepted = [], [], [], True, 0, 0
    try:
        wait_healthy(peer_url, peer)
        with httpx.Client(timeout=900) as client:
            ask(client, peer_url, "Say hello.", True, 4, PEER_SAMPLING)
            for rep in range(reps):
                for prompt in EDITS:
                    sides = ("peer", "inferno") if rep % 2 == 0 else ("inferno", "peer")
                    res = {side: (ask(client, peer_url, prompt, True, tokens, PEER_SAMPLING) if side == "peer"
                                  else ask(client, url, prompt, True, tokens)) for side in sides}
                    ratios.append(res["inferno"]["rate"] / res["peer"]["rate"])
                    mine.append(res["inferno"]["rate"])
                    theirs.append(res["peer"]["rate"])
                    same = same and res["inferno"]["text"] == res["peer"]["text"]
                    drafted += res["peer"]["draft_n"]
                    accepted += res["peer"]["accepted"]
    finally:
        peer.terminate()
        peer.wait(timeout=60)
    med = statistics.median
    return {"type": spec_type, "inferno": med(mine), "peer": med(theirs), "ratio": med(ratios), "same": same,
            "acceptance": accepted / drafted if drafted else 0.0}


def concurrent(url: str, prompts: list[str], clients: int, spec: bool, tokens: int) -> float:
    total = 0
    lock = threading.Lock()

    def client(k: int) -> None:
        nonlocal total
        with httpx.Client(timeout=900) as c:
            n = ask(c, url, prompts[k % len(prompts)], spec, tokens)["n"]
        with lock:
            total += n

    wall = run_clients(clients, client)  # first: `total / run_clients(…)` would read total before the run
    return total / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?",
                    default=str(Path.home() / ".cache/inferno-tests/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=400)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--flash-attn", choices=["on", "off"], default="on")
    ap.add_argument("--mode", choices=["auto", "ngram"], default="auto")
    ap.add_argument("--draft", help="a draft model's GGUF (drafts from it instead of n-grams)")
    ap.add_argument("--llama-server", help="llama.cpp's llama-server binary: compare with its n-gram spec types")
    ap.add_argument("--spec-types", default="ngram-simple,ngram-map-k,ngram-mod")
    ap.add_argument("--skip-own", action="store_true", help="only the llama-server comparison")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        port = free_port()
        env = {**os.environ, "INFERNO_HOME": home, "INFERNO_HOST": f"127.0.0.1:{port}"}
        subprocess.run([sys.executable, "-m", "inferno", "pull", args.model, "--name", "bench", "--link", "-q"],
                       env=env, check=True)
        url = f"http://127.0.0.1:{port}"
        mode = "draft" if args.draft else args.mode
        draft = ["--draft", args.draft] if args.draft else []
        server = subprocess.Popen([sys.executable, "-m", "inferno", "serve", "bench", "--threads", str(args.threads),
                                   "--n-ctx", "2048", "--flash-attn", args.flash_attn, "--speculative", mode, *draft,
                                   "--log-level", "warning"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_healthy(url, server)
            with httpx.Client(timeout=300) as c:
                ask(c, url, "Say hello.", True, 4)
            peers = [against_peer(url, args.llama_server, args.model, kind, args.threads, args.flash_attn,
                                  args.reps, args.tokens)
                     for kind in (args.spec_types.split(",") if args.llama_server else [])]
            if not args.skip_own:
                edit = alternate(url, EDITS, args.reps, args.tokens)
                chat = alternate(url, CHATS, args.reps, args.tokens // 2)
                agg_on = concurrent(url, EDITS, args.clients, True, args.tokens)
                agg_off = concurrent(url, EDITS, args.clients, False, args.tokens)
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(f"model {Path(args.model).name}, threads {args.threads}, flash attention {args.flash_attn}, "
          f"speculative {mode}{' ' + Path(args.draft).name if args.draft else ''}, greedy, {args.reps} alternating "
          "rounds (medians of pairs)")
    for r in peers:
        print(f"edit vs llama-server --spec-type {r['type']:12}  Inferno {r['inferno']:7.1f}  llama-server "
              f"{r['peer']:7.1f} tok/s  ratio {r['ratio']:.2f}  identical text: {r['same']}  its acceptance "
              f"{r['acceptance']:.0%}")
    if peers:
        best = max(peers, key=lambda r: r["peer"])
        print(f"against llama-server's best n-gram type ({best['type']}): {best['ratio']:.2f} (target >= 1.0)")
    if args.skip_own:
        return
    for name, r, target in (("edit", edit, 2.0), ("chat", chat, 0.97)):
        print(f"{name:5} decode tok/s  on {r['on']:7.1f}  off {r['off']:7.1f}  ratio {r['ratio']:.2f} "
              f"(target >= {target})  identical text: {r['same']}  acceptance {r['acceptance']:.0%} "
              f"of {r['drafted']} draft tokens")
    print(f"{args.clients} concurrent edit clients: aggregate on {agg_on:.1f} tok/s, off {agg_off:.1f} tok/s, "
          f"ratio {agg_on / agg_off if agg_off else float('nan'):.2f} (target >= 1.5)")


if __name__ == "__main__":
    main()
