"""A readable table of rows for ``spanlog logs``: one line per span, newest first, or with
``--roots-only`` one line per trace with its totals and score averages (``trace_totals``
and ``scores_avg``, docs/protocol.md "Trace totals")."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from typing import Any

from spanlog.server.rows._cost import format_cost


def _text(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           separators=(",", ":"))
    return " ".join(text.split())


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def _scores(scores: Any, fmt: str) -> str:
    if not isinstance(scores, dict):
        return ""
    return " ".join(f"{k}={v:{fmt}}" if isinstance(v, (int, float)) else f"{k}=-"
                    for k, v in sorted(scores.items()))


def _duration(seconds: Any) -> str:
    """Seconds as the viewer shows them: 850ms, 1.84s, 2m 05s; "running" while unknown."""
    if not isinstance(seconds, (int, float)) or not seconds >= 0:
        return "running"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.{2 if seconds < 10 else 1}f}s"
    return f"{int(seconds // 60)}m {round(seconds % 60):02d}s"


def _trace_cost(totals: dict[str, Any]) -> str:
    """The trace's cost; "≥" when some LLM calls have no known price (a lower bound)."""
    cost = totals.get("estimated_cost")
    known = format_cost(cost if isinstance(cost, (int, float)) else None)
    return f"≥{known}" if cost is not None and totals.get("unpriced_llm_calls") else known


def _created(row: dict[str, Any]) -> str:
    return str(row.get("created") or "")[:19].replace("T", " ")


def _name(row: dict[str, Any]) -> str:
    attrs = row.get("span_attributes") or {}
    return _text(attrs.get("name")) or ("comment" if row.get("comment") else "")


def _totals(row: dict[str, Any]) -> dict[str, Any]:
    totals = row.get("trace_totals")
    return totals if isinstance(totals, dict) else {}


# header, cell of a row, widest it may be, right-aligned; INPUT and OUTPUT share the rest.
_Column = tuple[str, Callable[[dict[str, Any]], str], int, bool]
_SPAN_COLUMNS: list[_Column] = [
    ("CREATED", _created, 19, False),
    ("NAME", _name, 24, False),
    ("TYPE", lambda r: _text((r.get("span_attributes") or {}).get("type")), 8, False),
    ("SCORES", lambda r: _scores(r.get("scores"), "g"), 24, False),
]
_TRACE_COLUMNS: list[_Column] = [
    ("CREATED", _created, 19, False),
    ("NAME", _name, 20, False),
    ("DURATION", lambda r: _duration(_totals(r).get("duration")), 8, True),
    ("LLM", lambda r: str(_totals(r).get("llm_calls", "")), 5, True),
    ("TOKENS", lambda r: str(_totals(r).get("tokens", "")), 9, True),
    ("COST", lambda r: _trace_cost(_totals(r)), 10, True),
    ("ERRORS", lambda r: str(_totals(r).get("errors", "")), 6, True),
    ("SCORES (AVG)", lambda r: _scores(r.get("scores_avg"), ".3g"), 24, False),
]


def format_table(rows: Sequence[dict[str, Any]], width: int | None = None, *,
                 traces: bool = False) -> str:
    """``rows`` as an aligned text table sized to the terminal (``width`` overrides);
    ``traces``: rows of a ``roots_only`` fetch, shown with their trace's totals."""
    if not rows:
        return "(no rows)"
    width = width or shutil.get_terminal_size((120, 20)).columns
    columns = _TRACE_COLUMNS if traces else _SPAN_COLUMNS
    header = [c[0] for c in columns] + ["INPUT", "OUTPUT"]
    table = [[cell(row) for _, cell, _, _ in columns]
             + [_text(row.get("input")), _text(row.get("output"))] for row in rows]
    sized = [min(max([len(header[i])] + [len(r[i]) for r in table]), most)
             for i, (_, _, most, _) in enumerate(columns)]
    rest = max(width - sum(sized) - 2 * (len(header) - 1), 20)
    sized += [rest // 2, rest - rest // 2]
    right = [c[3] for c in columns] + [False, False]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(_clip(c, w).rjust(w) if r else _clip(c, w).ljust(w)
                         for c, w, r in zip(cells, sized, right, strict=True)).rstrip()

    return "\n".join([line(header), *(line(cells) for cells in table)])
