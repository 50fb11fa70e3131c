"""`inferno serve`: the HTTP server (every dialect plugin's routes) on INFERNO_HOST, 127.0.0.1:8000."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import click

from inferno.cli.loadflags import load_flags

if TYPE_CHECKING:
    from inferno.config import Settings


def with_rpc(settings: Settings, rpc: str | None, tensor_split: str | None) -> Settings:
    """settings with --rpc and --tensor-split (comma lists) over INFERNO_RPC_SERVERS / INFERNO_TENSOR_SPLIT."""
    from pydantic import ValidationError

    from inferno.errors import BadRequestError

    updates = {k: [v.strip() for v in value.split(",") if v.strip()] for k, value in
               (("rpc_servers", rpc), ("tensor_split", tensor_split)) if value is not None}
    try:
        settings = settings.model_validate(settings.model_dump() | updates) if updates else settings
    except ValidationError as e:
        err = e.errors()[0]
        flag = "--rpc" if err["loc"][0] == "rpc_servers" else "--tensor-split"
        raise BadRequestError(f"{flag}: {err['msg'].removeprefix('Value error, ')}") from None
    if settings.rpc_servers:  # say it now, not at the first request; asked in a child: the host never loads llama.cpp
        import subprocess
        import sys

        from inferno.engine.devices import RPC_REBUILD
        from inferno.errors import UnavailableError

        check = "from inferno.engine.devices import rpc_supported; raise SystemExit(0 if rpc_supported() else 3)"
        if subprocess.run([sys.executable, "-c", check], check=False).returncode == 3:
            raise UnavailableError(RPC_REBUILD)
    return settings


def server_url() -> str:
    from inferno.config import load_settings

    s = load_settings()
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{s.port}"


def server_ps() -> list[dict[str, Any]]:
    """The running server's loaded models (`inferno ps`), through the native client."""
    from inferno.client import InfernoClient, InfernoClientError
    from inferno.errors import UnavailableError

    try:
        with InfernoClient(server_url(), max_retries=0, timeout=10) as client:
            return [m.model_dump() for m in client.ps().models]
    except InfernoClientError as e:
        raise UnavailableError(e.message) from None


@click.command()
@click.argument("model", required=False)
@click.option("--host", help="Address to bind (default 127.0.0.1; INFERNO_HOST).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default 8000; INFERNO_HOST=host:port).")
@load_flags
@click.option("--keep-alive", help="How long an idle model stays loaded (5m, 1h, -1 forever, 0).")
@click.option("--parallel", type=click.IntRange(1, 256),
              help="Sequences decoded together per model, each with the full context: the KV cache holds "
                   "context x parallel cells (default 4; INFERNO_NUM_PARALLEL).")
@click.option("--kv-type", type=click.Choice(["f16", "q8_0", "q4_0"]),
              help="KV cache type (default f16; INFERNO_KV_CACHE_TYPE). Quantized caches use flash attention.")
@click.option("--flash-attn", type=click.Choice(["auto", "on", "off"]),
              help="Flash attention (default auto: on for a quantized KV cache; INFERNO_FLASH_ATTN).")
@click.option("--kv-unified", is_flag=True,
              help="One KV cache shared by all slots (llama-server's --kv-unified): a single sequence may use all of "
                   "parallel x context, but greedy output then depends on the other requests (INFERNO_KV_UNIFIED=1).")
@click.option("--cache-ram", type=click.IntRange(min=0), metavar="MIB",
              help="Prompt cache in RAM per loaded model: the KV cells of a slot another prompt takes are kept and "
                   "restored for a prompt that continues them (llama-server's --cache-ram; default 1024; 0: off; "
                   "INFERNO_CACHE_RAM).")
@click.option("--prompt-cache", metavar="DIR|off",
              help="The prompt cache on disk, kept across restarts (default: INFERNO_HOME/prompt-cache; "
                   "INFERNO_PROMPT_CACHE; its bound: INFERNO_PROMPT_CACHE_SIZE MiB, default 4096).")
@click.option("--speculative", type=click.Choice(["auto", "ngram", "draft", "off"]),
              help="Speculative decoding (default auto: drafts from --draft's model, else n-gram drafts from the "
                   "context, verified in the decode, where flash attention keeps greedy answers token for token; "
                   "ngram / draft: also without it, where rounding may change them; off: never. "
                   "INFERNO_SPECULATIVE).")
@click.option("--draft", metavar="GGUF|MODEL",
              help="A small model of the same vocabulary that drafts tokens for the served models to verify "
                   "(llama-server's --model-draft): a GGUF file or a model of the store (INFERNO_DRAFT).")
@click.option("--rpc", help="llama.cpp RPC workers (`inferno rpc-worker`) to split models across: "
                            "HOST:PORT[,HOST:PORT…] (INFERNO_RPC_SERVERS).")
@click.option("--tensor-split", help="Proportions of the layers per device, the RPC workers' first, then local GPUs: "
                                     "3,1 (default: by free memory; INFERNO_TENSOR_SPLIT).")
@click.option("--no-repack", is_flag=True, help="Never repack weights into llama.cpp's extra buffer types (CPU_REPACK, "
                                            "AMX): llama-server's --no-repack (INFERNO_REPACK=0).")
@click.option("--lora", multiple=True, help="A LoRA adapter GGUF for the served MODEL, FILE[:SCALE] (llama-server's "
                                          "--lora / --lora-scaled); repeat for several. GET/POST /lora-adapters.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
def serve(model: str | None, host: str | None, port: int | None, load: dict[str, Any], keep_alive: str | None,
          parallel: int | None, kv_type: str | None, flash_attn: str | None, kv_unified: bool,
          cache_ram: int | None, prompt_cache: str | None, speculative: str | None, draft: str | None, rpc: str | None,
          tensor_split: str | None, no_repack: bool, lora: tuple[str, ...], log_level: str) -> None:
    """Serve every local model over the Ollama (/api) and OpenAI (/v1) APIs.

    With MODEL, that model is pulled if needed and loaded before requests come. On an empty store the
    built-in default model (smollm2) is pulled first, so a fresh install answers at once.
    """
    import asyncio

    from inferno.cli.models import interactive_choose
    from inferno.config import load_settings
    from inferno.engine.types import LoadOptions
    from inferno.host import Inferno
    from inferno.progress import ProgressBar
    from inferno.server import serve as run_server

    settings = load_settings()
    updates: dict[str, Any] = {k: v for k, v in {
        "host": host, "port": port, "keep_alive": keep_alive, "num_parallel": parallel, "kv_cache_type": kv_type,
        "flash_attn": flash_attn, "repack": False if no_repack else None,
        "kv_unified": True if kv_unified else None, "cache_ram": cache_ram,
        "prompt_cache": prompt_cache, "speculative": speculative, "draft": draft}.items() if v is not None}
    settings = with_rpc(settings.model_validate(settings.model_dump() | updates), rpc, tensor_split)
    logging.basicConfig(level=getattr(logging, log_level.upper()), format="%(message)s")
    inferno = Inferno(settings)
    if model is None and not inferno.store.list():
        model = settings.default_model
        click.echo(f"no models yet: pulling the default model {model}", err=True)
    name = None
    if model is not None:
        bar = ProgressBar()
        try:
            name = inferno.ensure(model, progress=bar, choose=interactive_choose).name
        finally:
            bar.close()
    options = LoadOptions(**load)
    inferno.engine.set_defaults(name, options)
    if lora:
        from pathlib import Path

        from inferno.lora import ServedLora, check_adapter, parse_spec

        if name is None:
            raise click.UsageError("--lora needs the MODEL it applies to")
        info = inferno.lookup(name)
        specs = [(Path(f).expanduser(), s) for f, s in (parse_spec(x, "--lora") for x in lora)]
        for f, _ in specs:
            check_adapter(f, inferno.lookup(info.base).architecture if info.base else info.architecture, "--lora")
        inferno.engine.served_lora = ServedLora(name, specs)

    def ready(url: str) -> None:
        click.echo(f"Inferno serving on {url} (Ollama API at /api, OpenAI API at /v1)", err=True)

    asyncio.run(run_server(inferno, preload=name, preload_options=options, ready=ready))


def add_commands(cli: click.Group) -> None:
    cli.add_command(serve)
