"""A page of sessions in PostgreSQL (``store._sessions``): root spans grouped by the string at
the session key's path, each group's traces summed over their ``spanlog_spans`` entries.
Session ids compare in byte order (``COLLATE "C"``), as in SQLite. The page carries its
sessions' trace ids, so the spans are read by trace without scanning the roots again (the
planner cannot tell how many rows a CTE has)."""

from __future__ import annotations

from typing import Any

from spanlog.server.store._facts import TOTALS_SQL
from spanlog.server.store._sessions import SessionQuery, make_cursor, session_summary


async def session_page(conn: Any, pid: int,
                       query: SessionQuery) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a project's sessions, latest first, and the cursor of the next page."""
    params: list[Any] = [pid, list(query.path)]
    where = ["r.pid = $1", "r.is_root", "r.root_span_id IS NOT NULL",
             "jsonb_typeof(r.data #> $2::text[]) = 'string'", "s.started IS NOT NULL"]

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if query.since is not None:
        where.append(f"s.started >= {param(query.since)}::float8")
    if query.until is not None:
        where.append(f"s.started < {param(query.until)}::float8")
    if query.session_id is not None:
        where.append(f"r.data #>> $2::text[] = {param(query.session_id)}::text")
    if query.traces is not None:
        where.append(f"r.root_span_id = ANY({param(list(query.traces))}::text[])")
    having = ""
    if query.after is not None:
        last, sid = param(query.after[0]), param(query.after[1])
        having = (f"HAVING max(root_start) < {last}::float8 OR (max(root_start) = "
                  f"{last}::float8 AND sid < {sid}::text COLLATE \"C\")")
    limit = param(query.limit + 1)  # one more than the page: whether there is a next page
    found = await conn.fetch(f"""
        WITH roots AS MATERIALIZED (
            SELECT r.root_span_id AS root, r.data #>> $2::text[] COLLATE "C" AS sid,
                   s.started AS root_start
            FROM spanlog_rows AS r JOIN spanlog_spans AS s ON s.pid = r.pid AND s.id = r.id
            WHERE {' AND '.join(where)}),
        page AS (
            SELECT sid, count(*) AS traces, min(root_start) AS first_start,
                   max(root_start) AS last_start, array_agg(root) AS trace_ids
            FROM roots GROUP BY sid {having}
            ORDER BY last_start DESC, sid DESC LIMIT {limit})
        SELECT page.sid, page.traces, page.first_start, page.last_start, {TOTALS_SQL}
        FROM page CROSS JOIN LATERAL unnest(page.trace_ids) AS t(root)
            JOIN spanlog_spans AS sp ON sp.pid = $1 AND sp.root_span_id = t.root
        GROUP BY page.sid, page.traces, page.first_start, page.last_start
        ORDER BY page.last_start DESC, page.sid DESC""", *params)
    more = len(found) > query.limit
    found = found[:query.limit]
    sessions = [session_summary(rec[0], rec[1], rec[2], rec[3], tuple(rec)[4:])
                for rec in found]
    cursor = make_cursor(found[-1][3], found[-1][0]) if more else None
    return sessions, cursor
