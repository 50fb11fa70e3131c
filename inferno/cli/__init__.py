"""The `inferno` command line. Core commands live beside this file; plugins add theirs through
register_commands while the CLI is built (never at import), so `inferno --help` stays fast.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import click

from inferno import __version__


def _debug() -> bool:
    return os.environ.get("INFERNO_DEBUG", "") not in ("", "0", "false")


ALIASES = {"ls": "list", "remove": "rm", "copy": "cp"}


class InfernoGroup(click.Group):
    """Turns every failure into one red line and exit code 1 (the traceback with INFERNO_DEBUG=1)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, ALIASES.get(cmd_name, cmd_name))

    def invoke(self, ctx: click.Context) -> Any:
        from inferno.errors import InfernoError

        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("", err=True)
            sys.exit(130)
        except Exception as e:
            if _debug():
                traceback.print_exc()
            message = e.message if isinstance(e, InfernoError) else f"{type(e).__name__}: {e}"
            click.secho(f"Error: {message}", fg="red", err=True)
            sys.exit(1)


def build_cli() -> click.Group:
    from inferno.cli import createcmd, models, runcmd, servecmd
    from inferno.pluginmanager import load_plugins, pm

    @click.group(cls=InfernoGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, "--version", prog_name="inferno")
    def cli() -> None:
        """Inferno: run GGUF models locally, served over the Ollama and OpenAI APIs."""

    models.add_commands(cli)
    createcmd.add_commands(cli)
    runcmd.add_commands(cli)
    servecmd.add_commands(cli)
    load_plugins()
    pm.hook.register_commands(cli=cli)
    return cli


def main() -> None:
    build_cli()(prog_name="inferno")
