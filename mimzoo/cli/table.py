"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 1 else f"{value:.3g}"
    return str(value)


def render(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as an aligned table; `columns` are (key, header) pairs. Numbers align right."""
    cells = [[_cell(r.get(key)) for key, _ in columns] for r in rows]
    headers = [h for _, h in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(r.get(key), (int, float)) or r.get(key) is None for r in rows) for key, _ in columns]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    return "\n".join(out)


def markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as a GitHub-flavoured markdown table (what the README's generated tables are)."""
    def esc(value: Any) -> str:
        return _cell(value).replace("|", "\\|")

    numeric = [all(isinstance(r.get(key), (int, float)) or r.get(key) is None for r in rows) for key, _ in columns]
    out = ["| " + " | ".join(h for _, h in columns) + " |",
           "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    out += ["| " + " | ".join(esc(r.get(key)) for key, _ in columns) + " |" for r in rows]
    return "\n".join(out)
