"""`inferno create NAME --from BASE [--adapter FILE[:SCALE]] [--draft MODEL]`: a model made from another in the
store: LoRA adapters on its weights (engine/lora.py), or its own draft model for speculative decoding (drafts.py)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("name")
@click.option("--from", "base", required=True,
              help="The model it is made from (its weights are shared); NAME itself to change that model.")
@click.option("--adapter", "adapters", multiple=True,
              help="A LoRA adapter GGUF, FILE[:SCALE] (scale 1 by default); repeat for several.")
@click.option("--draft", default=None,
              help="A model of the store that drafts for NAME (speculative decoding; in place of serve --draft).")
def create(name: str, base: str, adapters: tuple[str, ...], draft: str | None) -> None:
    """Create NAME from BASE: with LoRA adapters, or with its own draft model; kept in the store (the base
    weights are not copied)."""
    from inferno.host import Inferno
    from inferno.lora import parse_spec
    from inferno.store import normalize_name

    if not adapters and draft is None:
        raise click.UsageError("give --adapter (LoRA adapters) or --draft (a draft model), or both")
    host = Inferno()
    if adapters:
        if draft is not None:  # refused before anything is written
            raise click.UsageError("an adapter model runs on its base's runner: give --draft to the base model")
        specs = [parse_spec(a, "--adapter") for a in adapters]
        info = host.create_adapter_model(name, base, [(Path(f).expanduser(), s) for f, s in specs])
        click.echo(f"created {info.name} from {info.base} with {len(specs)} adapter(s)")
        return
    assert draft is not None
    parent = host.lookup(base)
    target = normalize_name(name)
    checked = host.check_draft(draft, target, parent.file, parent.base)  # before the copy: nothing half made
    if target != parent.name:
        host.store.copy(parent.name, target)
    info = host.store.update(target, draft=checked)
    click.echo(f"{info.name} drafts with {checked}" + (f" (made from {parent.name})" if target != parent.name
                                                        else ""))


def add_commands(cli: click.Group) -> None:
    cli.add_command(create)
