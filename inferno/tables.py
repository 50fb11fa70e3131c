"""Plain-text output shared by the CLI and plugin commands: sizes as people read them, aligned tables."""

from __future__ import annotations

from collections.abc import Sequence


def human_size(n: int) -> str:
    """Bytes in decimal units, as Ollama prints them: 812 B, 1.2 MB, 98 MB, 4.1 GB."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{n} {unit}" if unit == "B" else f"{size:.0f} {unit}" if size >= 100 else f"{size:.1f} {unit}"
        size /= 1000
    return str(n)


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells in left-aligned columns, three spaces apart, no trailing blanks."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
