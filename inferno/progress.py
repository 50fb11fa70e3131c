"""One progress renderer for every source: a bar on a terminal, a line per status otherwise; and the one
spelling of a layer's download status, which the Ollama dialect turns into Ollama's `digest` lines."""

from __future__ import annotations

import re
import sys
import time

import click

from inferno.tables import human_size

_LAYER = re.compile(r"^pulling (sha256:([0-9a-f]{64}))$")


def layer_status(digest: str) -> str:
    """The status a source reports while it downloads the file whose digest (`sha256:<hex>`) it knows, as
    Ollama reports a layer: `pulling sha256:<hex>`. Shown as `pulling <first 12 hex>`, with the digest beside it
    where the wire has room for one (Ollama's /api/pull lines; front-ends draw their bars from those)."""
    return f"pulling {digest}"


def layer_of(status: str) -> tuple[str, str | None]:
    """(the status to show, the layer's digest or None): `pulling sha256:<hex>` → (`pulling <12 hex>`, digest)."""
    m = _LAYER.fullmatch(status)
    return (f"pulling {m.group(2)[:12]}", m.group(1)) if m else (status, None)


class ProgressBar:
    """A progress(completed, total, status) callback that draws on stderr."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.status = ""
        self.last_draw = 0.0
        self.drawn = False

    def __call__(self, completed: int, total: int | None, status: str) -> None:
        if self.quiet:
            return
        status = layer_of(status)[0]
        if status != self.status:
            self._finish_line()
            self.status = status
            if not self.tty or not total:
                click.echo(status, err=True)
                return
        if not self.tty or not total:
            return
        now = time.monotonic()
        if now - self.last_draw < 0.1 and completed < total:
            return
        self.last_draw = now
        width = 30
        filled = int(width * min(completed, total) / total)
        pct = 100 * completed / total
        line = f"\r{status} [{'#' * filled}{'.' * (width - filled)}] {pct:5.1f}% " \
               f"{human_size(completed)}/{human_size(total)}"
        click.echo(line, err=True, nl=False)
        self.drawn = True

    def _finish_line(self) -> None:
        if self.drawn:
            click.echo("", err=True)
            self.drawn = False

    def close(self) -> None:
        self._finish_line()
