"""`inferno create NAME --from BASE --adapter FILE[:SCALE]`: an adapter model in the store (engine/lora.py)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("name")
@click.option("--from", "base", required=True, help="The base model the adapters apply to (its weights are shared).")
@click.option("--adapter", "adapters", multiple=True, required=True,
              help="A LoRA adapter GGUF, FILE[:SCALE] (scale 1 by default); repeat for several.")
def create(name: str, base: str, adapters: tuple[str, ...]) -> None:
    """Create NAME: BASE's weights with LoRA adapters, kept in the store (the base weights are not copied)."""
    from inferno.host import Inferno
    from inferno.lora import parse_spec

    specs = [parse_spec(a, "--adapter") for a in adapters]
    info = Inferno().create_adapter_model(name, base, [(Path(f).expanduser(), s) for f, s in specs])
    click.echo(f"created {info.name} from {info.base} with {len(specs)} adapter(s)")


def add_commands(cli: click.Group) -> None:
    cli.add_command(create)
