"""The rpc plugin: `inferno rpc-worker` serves this machine's devices to a model split across machines
(llama.cpp's RPC server, started in-process). The serving side (`serve --rpc`) lives in the engine."""

from __future__ import annotations

from pathlib import Path

import click

from inferno.api import hookimpl

DEFAULT_PORT = 50052  # llama.cpp's rpc-server default


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(rpc_worker)


@click.command("rpc-worker")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (IPv4). Anything but loopback: a trusted network only.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True, help="Port.")
@click.option("--threads", type=click.IntRange(1), help="CPU threads (default: every core).")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to cache the tensors it receives: the next load of the same model sends only hashes.")
def rpc_worker(host: str, port: int, threads: int | None, cache: Path | None) -> None:
    """Serve this machine's devices (its GPUs, else its CPU and RAM) to `inferno serve --rpc HOST:PORT` on
    another machine, which then puts part of a model's layers here. Runs until Ctrl-C or SIGTERM.

    The RPC protocol has no authentication and no encryption: whoever reaches the port can use this machine's
    devices and memory. Bind beyond loopback only on a trusted network.
    """
    from .worker import run_worker

    def ready(line: str) -> None:
        click.echo(line, err=True)

    def warn(line: str) -> None:
        click.secho(line, fg="yellow", err=True)

    run_worker(host, port, threads, cache, ready=ready, warn=warn)
