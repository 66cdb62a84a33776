"""Reading rows back from SQLite: pages, filters and how each filter picks its plan.

Plans, cheapest first (a page is always "newest ``xact`` first, stop at ``limit``"):

1. ``id = '...'`` or ``root_span_id = '...'`` as a top-level conjunct: their own indexes.
2. An equality on an indexed leaf (metadata, tags, span_attributes, scores) as a top-level
   conjunct: walk ``terms`` for that (path, value) backwards from the newest transaction.
   O(log n) per page whatever the value's frequency. With several such terms the one with the
   fewest entries drives (counted up to a cap, which is cheap: the count is an index range),
   and the rest are checked on each candidate.
3. Otherwise: walk the project's rows newest first and test each (inequality, LIKE, IS NULL
   may scan, but stop as soon as the page is full).

The filter is re-checked on candidates unless the index answers it exactly.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from spanlog.server._rows import ARRAY, INDEXED_FIELDS
from spanlog.server._sqlite_schema import index_value, path_key
from spanlog.server._store import BadRequest, Page

MAX_LIMIT = 1000
# Counting a term's entries past this tells nothing more: it is "common".
_COUNT_CAP = 10_000


def _out(xact: int, data: str, project_id: str) -> dict[str, Any]:
    row: dict[str, Any] = json.loads(data)
    row["_xact_id"] = str(xact)
    row["project_id"] = project_id
    row["log_id"] = "g"
    return row


def parse_cursor(cursor: str | None) -> int | None:
    """The transaction id a cursor continues below (:class:`BadRequest` when malformed)."""
    if cursor is None or cursor == "":
        return None
    try:
        value = int(cursor)
    except (TypeError, ValueError):
        raise BadRequest(f"cursor: not a cursor this collector returned: {cursor!r}") from None
    if value <= 0:
        raise BadRequest(f"cursor: not a cursor this collector returned: {cursor!r}")
    return value


def _term_count(conn: sqlite3.Connection, pid: int, path: int, value: Any) -> int:
    row = conn.execute("SELECT count(*) FROM (SELECT 1 FROM terms WHERE pid = ? AND path = ? "
                       "AND value = ? LIMIT ?)", (pid, path, value, _COUNT_CAP)).fetchone()
    return int(row[0])


def _parse(text: str) -> Any:
    from spanlog.server import _filter

    try:
        return _filter.parse(text)
    except _filter.FilterError as exc:
        raise BadRequest(f"filter: {exc}") from None


@dataclass
class _Plan:
    """Where a page's candidates come from and what still has to be checked on them."""

    source: str = "rows AS r"
    order: str = "r.xact"
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    residual: bool = True


def _plan(conn: sqlite3.Connection, pid: int, expr: Any) -> _Plan:
    from spanlog.server import _filter

    covered = _filter.covered_by_terms(expr, includes=True)
    equal = _filter.index_terms(expr)
    direct = [(p[0], v) for p, v in equal
              if p in (("id",), ("root_span_id",)) and isinstance(v, str)]
    if direct:
        column, value = direct[0]
        residual = not (covered and len(equal) == 1
                        and not _filter.includes_terms(expr))
        return _Plan(where=["r.pid = ?", f"r.{column} = ?"], params=[pid, value],
                     residual=residual)

    # (path key, stored value, exact) for every indexed equality and INCLUDES conjunct.
    keyed: list[tuple[int, Any, bool]] = []
    for path, literal in _filter.index_terms(expr, INDEXED_FIELDS):
        stored, exact = index_value(literal)
        keyed.append((path_key(path), stored, exact))
    for path, literal in _filter.includes_terms(expr, INDEXED_FIELDS):
        stored, exact = index_value(literal)
        keyed.append((path_key((*path, ARRAY)), stored, exact))
    if not keyed:
        return _Plan(where=["r.pid = ?"], params=[pid])
    if len(keyed) > 1:
        keyed.sort(key=lambda k: _term_count(conn, pid, k[0], k[1]))
    exact = (covered and all(k[2] for k in keyed)
             and len(keyed) == len(equal) + len(_filter.includes_terms(expr)))
    path_id, stored, _ = keyed[0]
    plan = _Plan(
        # CROSS JOIN fixes the join order: walk the index range, then fetch each row.
        source="terms AS t CROSS JOIN rows AS r ON r.xact = t.xact", order="t.xact",
        where=["t.pid = ? AND t.path = ? AND t.value = ?"], params=[pid, path_id, stored],
        residual=not exact)
    if exact:
        # The other terms are index probes on the same row, cheaper than parsing its JSON.
        for other_path, other_value, _ in keyed[1:]:
            plan.where.append("EXISTS (SELECT 1 FROM terms AS o WHERE o.pid = ? AND "
                              "o.path = ? AND o.value = ? AND o.xact = t.xact)")
            plan.params.extend([pid, other_path, other_value])
    return plan


def build_query(conn: sqlite3.Connection, *, pid: int, filter_text: str | None, limit: int,
                before: int | None, roots_only: bool) -> tuple[str, list[Any]]:
    """The SQL (and parameters) for one page: the plan is picked here."""
    expr = None
    if filter_text is not None and filter_text.strip():
        expr = _parse(filter_text)
        plan = _plan(conn, pid, expr)
    else:
        plan = _Plan(where=["r.pid = ?"], params=[pid], residual=False)
    where, params = plan.where, plan.params
    if roots_only:
        where.append("r.is_root = 1")
    if before is not None:
        where.append(f"{plan.order} < ?")
        params.append(before)
    if expr is not None and plan.residual:
        from spanlog.server._filter_sqlite import compile_sqlite

        sql, extra = compile_sqlite(expr, "r.data")
        where.append(f"({sql})")
        params.extend(extra)
    query = (f"SELECT r.xact, r.data FROM {plan.source} WHERE {' AND '.join(where)} "
             f"ORDER BY {plan.order} DESC LIMIT ?")
    return query, [*params, limit]


def fetch_page(conn: sqlite3.Connection, *, pid: int, project_id: str,
               filter_text: str | None, limit: int, cursor: str | None,
               roots_only: bool) -> Page:
    """One page of a project's rows, newest transaction first (runs on a reader thread)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    query, params = build_query(conn, pid=pid, filter_text=filter_text, limit=limit,
                                before=parse_cursor(cursor), roots_only=roots_only)
    found = conn.execute(query, params).fetchall()
    # Stored JSON is always a non-empty object without these fields: splice them in as text.
    tail = f',"project_id":{json.dumps(project_id)},"log_id":"g"}}'
    raw = [f'{data[:-1]},"_xact_id":"{xact}"{tail}' for xact, data in found]
    next_cursor = str(found[-1][0]) if len(found) == limit else None
    return Page(None, next_cursor, raw=raw)


def _start(row: dict[str, Any]) -> tuple[float, str, int]:
    metrics = row.get("metrics") or {}
    start = metrics.get("start") if isinstance(metrics, dict) else None
    return (start if isinstance(start, (int, float)) else float("inf"),
            str(row.get("created") or ""), int(row["_xact_id"]))


def trace_rows(conn: sqlite3.Connection, *, pid: int, project_id: str,
               root_span_id: str) -> list[dict[str, Any]]:
    """Every row of one trace, in start order (runs on a reader thread)."""
    rows = [_out(xact, data, project_id) for xact, data in conn.execute(
        "SELECT xact, data FROM rows WHERE pid = ? AND root_span_id = ?", (pid, root_span_id))]
    rows.sort(key=_start)
    return rows
