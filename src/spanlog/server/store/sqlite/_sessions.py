"""A page of sessions in SQLite (``store._sessions``): root spans grouped by the string at the
session key's path, each group's traces summed over their ``spans`` entries."""

from __future__ import annotations

import math
import sqlite3
from typing import Any

from spanlog.server.store._facts import TOTALS_SQL
from spanlog.server.store._sessions import SessionQuery, make_cursor, session_summary


def json_path(path: tuple[str, ...]) -> str:
    """SQLite's JSON path for ``path`` (every key quoted; keys hold no ``"``)."""
    return "$" + "".join(f'."{key}"' for key in path)


def session_page(conn: sqlite3.Connection, pid: int,
                 query: SessionQuery) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a project's sessions, latest first, and the cursor of the next page."""
    path = json_path(query.path)
    # "+": not through rows_by_trace (every row of the project) but the roots' own index.
    where = ["r.pid = ?", "r.is_root = 1", "+r.root_span_id IS NOT NULL",
             "json_type(r.data, ?) = 'text'", "s.started IS NOT NULL"]
    params: list[Any] = [path, pid, path]
    if query.since is not None or query.until is not None:
        where.append("s.started >= ? AND s.started < ?")
        params += [-math.inf if query.since is None else query.since,
                   math.inf if query.until is None else query.until]
    if query.session_id is not None:
        where.append("json_extract(r.data, ?) = ?")
        params += [path, query.session_id]
    if query.traces is not None:
        where.append(f"r.root_span_id IN ({','.join('?' * len(query.traces))})")
        params += query.traces
    having = ""
    if query.after is not None:
        having = "HAVING max(root_start) < ? OR (max(root_start) = ? AND sid < ?)"
        params += [query.after[0], query.after[0], query.after[1]]
    # One more than the page: whether there is a next page. CROSS JOIN fixes the join order:
    # the page's sessions, their roots, then each trace's spans by spans_by_trace.
    params += [query.limit + 1, pid]
    found = conn.execute(f"""
        WITH roots AS MATERIALIZED (
            SELECT r.root_span_id AS root, json_extract(r.data, ?) AS sid,
                   s.started AS root_start
            FROM rows AS r JOIN spans AS s ON s.xact = r.xact
            WHERE {' AND '.join(where)}),
        page AS (
            SELECT sid, count(*) AS traces, min(root_start) AS first_start,
                   max(root_start) AS last_start
            FROM roots GROUP BY sid {having}
            ORDER BY last_start DESC, sid DESC LIMIT ?)
        SELECT page.sid, page.traces, page.first_start, page.last_start, {TOTALS_SQL}
        FROM page CROSS JOIN roots ON roots.sid = page.sid
            CROSS JOIN spans ON spans.pid = ? AND spans.root_span_id = roots.root
        GROUP BY page.sid ORDER BY page.last_start DESC, page.sid DESC""",
                         params).fetchall()
    more = len(found) > query.limit
    found = found[:query.limit]
    sessions = [session_summary(sid, traces, first, last, tuple(totals))
                for sid, traces, first, last, *totals in found]
    cursor = make_cursor(found[-1][3], found[-1][0]) if more else None
    return sessions, cursor
