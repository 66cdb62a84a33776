"""Reading rows back from SQLite: pages, filters and how each filter picks its plan.

Plans, cheapest first (a page is always "newest ``xact`` first, stop at ``limit``"):

1. ``_xact_id = '...'``, ``id = '...'`` or ``root_span_id = '...'`` as a top-level conjunct:
   the rowid, the id index (``_ids``) or ``rows_by_trace``.
2. An equality on an indexed leaf (metadata, tags, span_attributes, scores) as a top-level
   conjunct: walk the ``postings`` of that (field, value) backwards from the newest
   transaction, epoch by epoch, each entry's ids in order (``json_each``). A probe per epoch
   plus O(log n) per page whatever the value's frequency; after a cursor the walk starts at
   the entry holding it. With several such terms the one with the fewest rows drives
   (summed over a capped number of entries, which is cheap: an index range), and the rest
   are checked on each candidate's JSON. Rows with more leaves than the index keeps
   (``rows.capped``) may match without an entry, so when the project has any, they are
   candidates too (a second, residual-checked branch merged into the page).
3. Otherwise: walk the project's rows newest first and test each (inequality, LIKE, IS NULL
   may scan, but stop as soon as the page is full).

The filter is re-checked on candidates unless the index answers it exactly. ``_xact_id`` and
``project_id`` are not in the stored JSON; the residual check maps them to the row's
transaction id and the project's id. A ``roots_only`` page also carries ``scores_avg`` and
``trace_totals`` for each root, from one read of all its traces (:func:`root_scores`,
:func:`root_totals`).
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from spanlog.server.query import FilterError, covered_by_terms, includes_terms, index_terms, parse
from spanlog.server.query._compile_sqlite import compile_sqlite
from spanlog.server.rows._json import dumps, loads
from spanlog.server.rows._leaves import ARRAY, INDEXED_FIELDS
from spanlog.server.store._aggregate import COUNTERS, Folder, Window
from spanlog.server.store._errors import BadRequest
from spanlog.server.store._facts import FACT_COLUMNS, TOTALS_SQL, trace_totals
from spanlog.server.store._reading import (
    MAX_TRACE_SPANS,
    api_row,
    check_trace_size,
    parse_cursor,
    trace_order,
)
from spanlog.server.store._records import Page
from spanlog.server.store._scores import (
    TraceLink,
    root_averages,
    roots_by_trace,
    with_score_averages,
)
from spanlog.server.store.sqlite._ids import ROW_IDS
from spanlog.server.store.sqlite._schema import EPOCH_BITS, field_sql, index_value, path_key

MAX_LIMIT = 1000
# Summing a term's postings past this many entries tells nothing more: it is "common".
_COUNT_CAP = 1_000


# A value's postings, newest epoch first (CROSS JOIN fixes that join order); the caller adds
# the field and value.
_POSTINGS = "epochs AS e CROSS JOIN postings AS p ON p.epoch = e.epoch"


def _term_count(conn: sqlite3.Connection, pid: int, path: int, value: Any) -> int:
    row = conn.execute(f"SELECT total(n) FROM (SELECT p.n FROM {_POSTINGS} WHERE p.field = "
                       f"{field_sql()} AND p.value = ? ORDER BY e.epoch DESC LIMIT ?)",
                       (pid, path, value, _COUNT_CAP)).fetchone()
    return int(row[0])


def _parse(text: str) -> Any:
    try:
        return parse(text)
    except FilterError as exc:
        raise BadRequest(f"filter: {exc}") from None


_XACT = re.compile(r"[1-9][0-9]{0,18}")


@dataclass
class _Plan:
    """Where a page's candidates come from and what still has to be checked on them."""

    source: str = "rows AS r"
    # What the page is ordered by, newest first; and conditions, each with one ``?`` for the
    # cursor's xact, that make a page continue below it.
    order: str = "r.xact DESC"
    bounds: tuple[str, ...] = ("r.xact < ?",)
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    residual: bool = True
    # Also take the project's capped rows (residual-checked): an indexed plan would miss
    # a match whose leaf is past the cap.
    capped: bool = False


def _direct(expr: Any, pid: int) -> _Plan | None:
    """A plan on the rowid, the id index (``_ids``) or ``rows_by_trace``, when the
    filter allows."""
    equal = index_terms(expr)
    direct = {p[0]: v for p, v in reversed(equal)
              if p in (("_xact_id",), ("id",), ("root_span_id",)) and isinstance(v, str)}
    if not direct:
        return None
    residual = not (covered_by_terms(expr, includes=True) and len(equal) == 1
                    and not includes_terms(expr))
    if "_xact_id" in direct:
        value = direct["_xact_id"]
        if not _XACT.fullmatch(value) or int(value) >= 2**63:
            # No transaction id is written that way: nothing matches, and nothing is read.
            return _Plan(where=["r.pid = ?", "0"], params=[pid], residual=False)
        return _Plan(where=["r.pid = ?", "r.xact = ?"], params=[pid, int(value)],
                     residual=residual)
    if "id" in direct:
        # The ids select the project: `r.pid = ?` here would lead SQLite to walk the
        # project's rows below a cursor instead.
        return _Plan(where=[f"r.xact IN (SELECT xact FROM {ROW_IDS} WHERE pid = ? AND id = ?)"],
                     params=[pid, direct["id"]], residual=residual)
    return _Plan(where=["r.pid = ?", "r.root_span_id = ?"],
                 params=[pid, direct["root_span_id"]], residual=residual)


def _plan(conn: sqlite3.Connection, pid: int, expr: Any) -> _Plan:
    direct = _direct(expr, pid)
    if direct is not None:
        return direct
    covered = covered_by_terms(expr, includes=True)
    equal = index_terms(expr)
    # (path key, stored value, exact) for every indexed equality and INCLUDES conjunct.
    keyed: list[tuple[int, Any, bool]] = []
    for path, literal in index_terms(expr, INDEXED_FIELDS):
        stored, exact = index_value(literal)
        keyed.append((path_key(path), stored, exact))
    for path, literal in includes_terms(expr, INDEXED_FIELDS):
        stored, exact = index_value(literal)
        keyed.append((path_key((*path, ARRAY)), stored, exact))
    if not keyed:
        return _Plan(where=["r.pid = ?"], params=[pid])
    if len(keyed) > 1:
        keyed.sort(key=lambda k: _term_count(conn, pid, k[0], k[1]))
    # One term, stored exactly, that is the whole filter: the postings answer it alone.
    exact = (covered and len(keyed) == 1 and keyed[0][2]
             and len(keyed) == len(equal) + len(includes_terms(expr)))
    path_id, stored, _ = keyed[0]
    plan = _Plan(
        # CROSS JOIN fixes the join order: epochs newest first, in each the value's postings
        # newest first (the key's order), each one's ids in their stored order (newest
        # first), then each row. Entries hold disjoint ranges, so that is newest first
        # overall: no sort.
        source=f"{_POSTINGS} CROSS JOIN json_each(p.xacts) AS t "
               "CROSS JOIN rows AS r ON r.xact = t.value",
        order="e.epoch DESC, p.first DESC",
        bounds=(f"e.epoch <= (? >> {EPOCH_BITS})", "p.first < ?", "t.value < ?"),
        where=[f"p.field = {field_sql()} AND p.value = ?"],
        params=[pid, path_id, stored], residual=not exact)
    plan.capped = bool(conn.execute("SELECT EXISTS (SELECT 1 FROM rows WHERE pid = ? AND "
                                    "capped = 1)", (pid,)).fetchone()[0])
    return plan


def _residual(expr: Any, project_id: str) -> tuple[str, list[Any]]:
    literal = "'" + project_id.replace("'", "''") + "'"
    return compile_sqlite(expr, "r.data", fields={"_xact_id": "CAST(r.xact AS TEXT)",
                                                  "project_id": literal})


_COLUMNS = "r.xact, r.data, r.root_span_id, r.id"


def build_query(conn: sqlite3.Connection, *, pid: int, filter_text: str | None, limit: int,
                before: int | None, roots_only: bool, project_id: str = "",
                since: float | None = None, until: float | None = None
                ) -> tuple[str, list[Any]]:
    """The SQL (and parameters) for one page: the plan is picked here. ``since``/``until``
    keep the spans that started in that range (their ``spans`` entry, found by ``xact``).

    The query yields ``(xact, data, root_span_id, id)`` per row, newest first.
    """
    expr = None
    if filter_text is not None and filter_text.strip():
        expr = _parse(filter_text)
        plan = _plan(conn, pid, expr)
    else:
        plan = _Plan(where=["r.pid = ?"], params=[pid], residual=False)
    check: tuple[str, list[Any]] | None = None
    if expr is not None and (plan.residual or plan.capped):
        check = _residual(expr, project_id)

    def page(part: _Plan) -> tuple[str, list[Any]]:
        where, params = list(part.where), list(part.params)
        if roots_only:
            where.append("r.is_root = 1")
        if since is not None or until is not None:
            where.append("EXISTS (SELECT 1 FROM spans AS s WHERE s.xact = r.xact AND "
                         "s.started >= ? AND s.started < ?)")
            params.extend([-math.inf if since is None else since,
                           math.inf if until is None else until])
        if before is not None:
            where.extend(part.bounds)
            params.extend([before] * len(part.bounds))
        if part.residual and check is not None:
            where.append(f"({check[0]})")
            params.extend(check[1])
        return (f"SELECT {_COLUMNS} FROM {part.source} WHERE {' AND '.join(where)} "
                f"ORDER BY {part.order} LIMIT ?", [*params, limit])

    query, params = page(plan)
    if plan.capped:
        # UNION, not UNION ALL: a capped row may come from both branches.
        extra, extra_params = page(_Plan(where=["r.pid = ?", "r.capped = 1"], params=[pid]))
        query = (f"SELECT * FROM ({query}) UNION SELECT * FROM ({extra}) "
                 "ORDER BY 1 DESC LIMIT ?")
        params = [*params, *extra_params, limit]
    return query, params


def root_scores(conn: sqlite3.Connection, pid: int,
                roots: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, float]]:
    """``scores_avg`` of the page's roots ``(root_span_id, id)``: one read of what averaging
    needs of their traces (``rows.links``: tree links and scores), not of whole rows."""
    wanted = roots_by_trace(roots)
    traces: dict[str, list[TraceLink]] = {}
    names = list(wanted)
    # A page holds at most MAX_LIMIT roots: one statement for all of them.
    for start in range(0, len(names), MAX_LIMIT):
        chunk = names[start:start + MAX_LIMIT]
        marks = ",".join("?" * len(chunk))
        found = conn.execute("SELECT id, root_span_id, links FROM rows WHERE pid = ? AND "
                             f"root_span_id IN ({marks})", (pid, *chunk)).fetchall()
        # One decode of all the links: a call per row would cost more than the decoding.
        decoded = loads("[" + ",".join(links for _, _, links in found) + "]")
        for (row_id, root, _), (span_id, parents, scores) in zip(found, decoded, strict=True):
            traces.setdefault(root, []).append((row_id, span_id, parents, scores))
    return root_averages(traces, wanted)


def root_totals(conn: sqlite3.Connection, pid: int,
                found: list[tuple[int, str, str | None, str]]) -> dict[int, dict[str, Any]]:
    """``trace_totals`` of the page's roots ``(xact, data, root_span_id, id)`` by xact: one
    grouped read of their traces' ``spans`` entries (a root without a ``root_span_id`` is a
    trace of one: its own entry)."""
    traces = sorted({root for _, _, root, _ in found if root is not None})
    by_trace: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(traces), MAX_LIMIT):
        chunk = traces[start:start + MAX_LIMIT]
        marks = ",".join("?" * len(chunk))
        for root, *values in conn.execute(
                f"SELECT root_span_id, {TOTALS_SQL} FROM spans WHERE pid = ? AND "
                f"root_span_id IN ({marks}) GROUP BY root_span_id", (pid, *chunk)):
            by_trace[root] = tuple(values)
    totals: dict[int, dict[str, Any]] = {}
    for xact, _, root, _ in found:
        if root is not None:
            totals[xact] = trace_totals(by_trace.get(root))
        else:
            alone = conn.execute(f"SELECT {TOTALS_SQL} FROM spans WHERE xact = ?",
                                 (xact,)).fetchone()
            totals[xact] = trace_totals(alone if alone[0] else None)
    return totals


def fetch_page(conn: sqlite3.Connection, *, pid: int, project_id: str,
               filter_text: str | None, limit: int, cursor: str | None,
               roots_only: bool, since: float | None = None,
               until: float | None = None) -> Page:
    """One page of a project's rows, newest transaction first (runs on a reader thread)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    query, params = build_query(conn, pid=pid, filter_text=filter_text, limit=limit,
                                before=parse_cursor(cursor), roots_only=roots_only,
                                project_id=project_id, since=since, until=until)
    # Stored JSON is always a non-empty object without these fields: splice them in as text.
    tail = f',"project_id":{json.dumps(project_id)},"log_id":"g"}}'
    if not roots_only:
        found = conn.execute(query, params).fetchall()
        raw = [f'{data[:-1]},"_xact_id":"{xact}"{tail}' for xact, data, _, _ in found]
    else:
        # The page and its traces' scores from one snapshot.
        conn.execute("BEGIN")
        try:
            found = conn.execute(query, params).fetchall()
            averages = root_scores(conn, pid, [(root, row_id) for _, _, root, row_id in found
                                               if root is not None])
            totals = root_totals(conn, pid, found)
        finally:
            conn.execute("COMMIT")
        raw = []
        for xact, data, root, row_id in found:
            average = averages.get((root, row_id))
            if average is None:  # a root span without a root_span_id: a trace of one
                average = with_score_averages([loads(data)])[0]["scores_avg"]
            raw.append(f'{data[:-1]},"_xact_id":"{xact}","scores_avg":{dumps(average)},'
                       f'"trace_totals":{dumps(totals[xact])}{tail}')
    next_cursor = str(found[-1][0]) if len(found) == limit else None
    return Page(None, next_cursor, raw=raw)


def trace_rows(conn: sqlite3.Connection, *, pid: int, project_id: str,
               root_span_id: str) -> list[dict[str, Any]]:
    """Every row of one trace, in start order (runs on a reader thread)."""
    found = conn.execute("SELECT xact, data FROM rows WHERE pid = ? AND root_span_id = ? "
                         "LIMIT ?", (pid, root_span_id, MAX_TRACE_SPANS + 1)).fetchall()
    check_trace_size(len(found), root_span_id)
    rows = [api_row(xact, data, project_id) for xact, data in found]
    rows.sort(key=trace_order)
    return rows


_FACTS = ", ".join(FACT_COLUMNS)
_CELL = "SELECT hour, kind, grp, {columns} FROM {table} WHERE pid = ? AND kind = ? AND " \
        "hour >= ? AND hour < ?"


def aggregate(conn: sqlite3.Connection, *, pid: int, project_id: str,
              win: Window) -> dict[str, Any]:
    """A project's figures over ``win`` (``store._aggregate``; runs on a reader thread): the
    rollups' cells of its whole hours, and the spans of the rest, from one snapshot."""
    folder = Folder(win)
    conn.execute("BEGIN")
    try:
        traces = None
        if win.filter is not None:
            check, params = _residual(_parse(win.filter), project_id)
            found = conn.execute(
                "SELECT s.root_span_id FROM spans AS s JOIN rows AS r ON r.xact = s.xact "
                "WHERE s.pid = ? AND s.is_root = 1 AND s.started >= ? AND s.started < ? "
                f"AND s.root_span_id IS NOT NULL AND ({check})",
                (pid, win.since, win.until, *params)).fetchall()
            traces = dumps([root for (root,) in found])
        for since, until in folder.raw_ranges():
            if traces is None:
                spans = conn.execute(f"SELECT {_FACTS} FROM spans WHERE pid = ? AND "
                                     "started >= ? AND started < ?", (pid, since, until))
            else:
                spans = conn.execute(
                    f"SELECT {_FACTS} FROM spans WHERE pid = ? AND started >= ? AND "
                    "started < ? AND root_span_id IN (SELECT value FROM json_each(?))",
                    (pid, since, until, traces))
            folder.spans(spans)
        hours = folder.rollup_hours()
        if hours is not None:
            for kind in folder.kinds:
                args = (pid, kind, *hours)
                folder.rollup_counts(conn.execute(_CELL.format(
                    columns=", ".join(COUNTERS), table="rollup"), args))
                folder.rollup_latency(conn.execute(_CELL.format(
                    columns="bin, n", table="rollup_latency"), args))
                folder.rollup_scores(conn.execute(_CELL.format(
                    columns="name, total, n", table="rollup_scores"), args))
    finally:
        conn.execute("COMMIT")
    return folder.result()
