"""Plain-text tables for the console (index summary, per-genre metrics, predictions)."""

from __future__ import annotations

from typing import Any, Sequence

from genreflow.core.console import display_name


def _cell(value: Any) -> str:
    """A cell as one visible line: a name with a newline, tab or bidi control would break the
    table or spoof its neighbours, so such characters are shown escaped."""
    if isinstance(value, float):
        return f"{value:.3f}"
    return display_name(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-align the first column, right-align the others; returns lines joined by newlines.
    Every cell (genre and file names included) goes through ``display_name``."""
    headers = [display_name(h) for h in headers]
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(values[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    return "\n".join(out)
