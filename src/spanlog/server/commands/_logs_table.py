"""A readable table of rows for ``spanlog logs`` (one line per span, newest first)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from typing import Any


def _text(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           separators=(",", ":"))
    return " ".join(text.split())


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def _scores(row: dict[str, Any]) -> str:
    scores = row.get("scores") or {}
    return " ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}=-"
                    for k, v in scores.items())


def format_table(rows: Sequence[dict[str, Any]], width: int | None = None) -> str:
    """``rows`` as an aligned text table sized to the terminal (``width`` overrides)."""
    if not rows:
        return "(no rows)"
    width = width or shutil.get_terminal_size((120, 20)).columns
    header = ("CREATED", "NAME", "TYPE", "SCORES", "INPUT", "OUTPUT")
    table = []
    for row in rows:
        attrs = row.get("span_attributes") or {}
        created = str(row.get("created") or "")[:19].replace("T", " ")
        name = _text(attrs.get("name")) or ("comment" if row.get("comment") else "")
        table.append((created, name, _text(attrs.get("type")), _scores(row),
                      _text(row.get("input")), _text(row.get("output"))))
    fixed = [19, 24, 8, 24]
    sized = [min(max([len(header[i])] + [len(r[i]) for r in table]), fixed[i])
             for i in range(4)]
    rest = max(width - sum(sized) - 2 * 5, 20)
    sized += [rest // 2, rest - rest // 2]
    lines = ["  ".join(_clip(h, w).ljust(w) for h, w in zip(header, sized, strict=True))]
    for cells in table:
        lines.append("  ".join(_clip(c, w).ljust(w)
                               for c, w in zip(cells, sized, strict=True)).rstrip())
    return "\n".join(lines)
