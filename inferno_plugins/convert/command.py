"""`inferno convert`: a Hugging Face safetensors model (hf:owner/repo or a local folder) → a GGUF model in the store."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from . import toolenv

OUTTYPES = ("f16", "bf16", "q8_0")


def default_name(source: str) -> str:
    """hf:owner/Some-Model@rev → some-model; a folder → its name."""
    from inferno.api import name_from

    text = re.sub(r"^(hf:|huggingface:|hf\.co/|huggingface\.co/)", "", source.strip())
    if not Path(text).expanduser().is_dir() and "/" in text:
        text = text.split("@", 1)[0].split(":", 1)[0].split("/", 1)[1]
    return name_from(Path(text).name)


def setup_answer(yes: bool) -> Any:
    """What the convert_model hook's `setup` option gets: True (--yes), a question to ask, or None (no terminal)."""
    if yes:
        return True
    if not sys.stdin.isatty():
        return None
    return lambda question: click.confirm(question, default=True, err=True)


@click.command()
@click.argument("source", required=False)
@click.argument("name", required=False)
@click.option("--outtype", type=click.Choice(OUTTYPES), default="f16", show_default=True,
              help="GGUF type of the converted weights.")
@click.option("--quantize", "method", help="Quantize the result too (q4_k_m …); the intermediate GGUF is removed.")
@click.option("--keep-f16", is_flag=True, help="With --quantize: keep the intermediate GGUF as NAME-OUTTYPE.")
@click.option("--setup", is_flag=True, help="Only set up llama.cpp's converter (its own environment).")
@click.option("-y", "--yes", is_flag=True, help="Set the converter up without asking (unattended).")
@click.option("--trust-remote-code", "trust", is_flag=True,
              help="Let llama.cpp's converter run the model's own Python code (auto_map, Qwen v1, ChatGLM …): "
                   "only for a model you trust. Never possible over HTTP.")
def convert(source: str | None, name: str | None, outtype: str, method: str | None, keep_f16: bool, setup: bool,
            yes: bool, trust: bool) -> None:
    """Convert a Hugging Face safetensors model to GGUF with llama.cpp's own converter.

    SOURCE is hf:owner/repo[@revision] (only the files conversion needs are downloaded) or a local folder
    (config.json, a tokenizer, *.safetensors). NAME defaults to the repository's or folder's name. The
    converter lives in an environment of its own under INFERNO_HOME/tools (about 1.2 GB), set up on first
    use after asking, or with --setup.
    """
    from inferno.api import Inferno, ProgressBar, human_size, normalize_name

    host = Inferno()
    env = toolenv.env_dir(host.settings.home)
    if setup:
        if toolenv.is_ready(env):
            click.echo(f"the converter is ready in {env}")
            return
        bar = ProgressBar()
        try:
            toolenv.setup(env, bar)
        finally:
            bar.close()
        click.echo(f"the converter is ready in {env}")
        return
    if not source:
        raise click.UsageError("give a SOURCE (hf:owner/repo or a folder), or --setup")
    target = normalize_name(name or (f"{default_name(source)}-{method.lower()}" if method else default_name(source)),
                            "name")
    bar = ProgressBar()
    try:
        info = host.convert(source, target, outtype=outtype, method=method, keep_f16=keep_f16, progress=bar,
                            options={"setup": setup_answer(yes), "trust_remote_code": trust})
    finally:
        bar.close()
    click.echo(f"converted {source} → {info.name} ({human_size(info.size)})")
