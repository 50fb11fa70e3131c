"""One progress renderer for every source: a bar on a terminal, a line per status otherwise."""

from __future__ import annotations

import sys
import time

import click

from inferno.tables import human_size


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
