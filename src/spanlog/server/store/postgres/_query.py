"""Reading rows back from PostgreSQL: pages, filters, and how a filtered page finds its rows.

A page is always "newest ``xact`` first, stop at ``limit``". Plans:

1. No filter, an inequality-only filter, or ``id``/``root_span_id`` equality: one query, and
   PostgreSQL walks the ``(pid, xact)`` index backwards (or the id/trace index).
2. An equality (containment) conjunct, which the GIN index can answer: the best plan depends
   on how common the value is, which PostgreSQL cannot tell us. It estimates ``@>`` from
   statistics on the whole ``data`` value, and ANALYZE keeps none for values over 1 KB
   (typical spans with an LLM prompt in them), so it guesses 1% whatever the value. Walking
   the newest rows is right for a common value (the page fills at once) and disastrous for
   a rare one (it reads the whole project); the GIN bitmap is the reverse. So:

   a. check the newest ``RECENT`` rows (an index walk of bounded cost); a common value fills
      the page here;
   b. if the page is not full and older rows remain, take the rest below them from the GIN
      index (index and sequential scans disabled for that one statement, so the bitmap is
      used) and sort the matches by ``xact``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spanlog.server.query import FilterError, includes_terms, index_terms, parse
from spanlog.server.query._compile_postgres import Params, compile_postgres, containment
from spanlog.server.rows._json import loads
from spanlog.server.store._aggregate import COUNTERS, Folder, Window
from spanlog.server.store._errors import BadRequest
from spanlog.server.store._facts import FACT_COLUMNS, TOTALS_SQL, trace_totals
from spanlog.server.store._scores import TraceLink, root_averages, roots_by_trace

MAX_LIMIT = 1000
# How many of the newest rows step (a) checks: a value in at least limit/RECENT of the rows
# fills its page here. Bounded: each checked row costs a containment test (~2 us).
RECENT_MIN = 500
RECENT_MAX = 5000


def check_limit(limit: Any) -> int:
    """``limit`` when it is an integer from 1 to MAX_LIMIT, else :class:`BadRequest`."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    return limit


@dataclass
class FetchPlan:
    """The statements for one page; ``recent``/``rest`` only for a GIN-indexed filter."""

    query: str
    params: list[Any]
    # Step (a), returning (seen, low, xact, data) rows; step (b), taking two more
    # parameters: the lowest xact step (a) saw and how many rows are still wanted.
    recent: tuple[str, list[Any]] | None = None
    rest: tuple[str, list[Any]] | None = None
    recent_rows: int = 0


def _recent_rows(limit: int) -> int:
    return min(max(RECENT_MIN, 10 * limit), RECENT_MAX)


def row_fields(project_id: str) -> dict[str, str]:
    """The fields a row has outside its JSON, as SQL over ``r`` (for filters on them)."""
    return {"_xact_id": "r.xact::text",
            "project_id": "'" + project_id.replace("'", "''") + "'::text"}


def plan_fetch(pid: int, filter_text: str | None, limit: int, before: int | None,
               roots_only: bool, project_id: str = "", since: float | None = None,
               until: float | None = None) -> FetchPlan:
    """The SQL for one page of project ``pid`` (id ``project_id``), newest transaction
    first; ``since``/``until`` keep the spans that started in that time range."""
    expr = None
    if filter_text is not None and filter_text.strip():
        try:
            expr = parse(filter_text)
        except FilterError as exc:
            raise BadRequest(f"filter: {exc}") from None

    def scope(params: Params) -> list[str]:
        where = ["r.pid = $1::bigint"]
        if roots_only:
            where.append("r.is_root")
        if before is not None:
            where.append(f"r.xact < {params.add(before, 'bigint')}")
        if since is not None or until is not None:
            bounds = ["s.pid = r.pid", "s.id = r.id"]
            if since is not None:
                bounds.append(f"s.started >= {params.add(since, 'float8')}")
            if until is not None:
                bounds.append(f"s.started < {params.add(until, 'float8')}")
            where.append(f"EXISTS (SELECT 1 FROM spanlog_spans AS s WHERE "
                         f"{' AND '.join(bounds)})")
        return where

    # Each statement numbers its own parameters: PostgreSQL wants every one of them used.
    params = Params([pid])
    where = scope(params)
    if expr is None:
        return FetchPlan(_page(where, params, limit), params.values)
    fields = row_fields(project_id)
    direct = False
    for path, value in index_terms(expr):
        # The row's own columns for its id and trace: their b-tree indexes beat the GIN.
        if path in (("id",), ("root_span_id",)) and isinstance(value, str):
            column = "id" if path == ("id",) else "root_span_id"
            where.append(f"r.{column} = {params.add(value, 'text')}")
            direct = True
    where.append(compile_postgres(expr, "r.data", params, fields)[0])
    plan = FetchPlan(_page(where, params, limit), params.values)
    # Terms on fields outside the JSON never go through the GIN index.
    indexed = any(containment(path, value) is not None and str(path[0]) not in fields
                  for path, value in index_terms(expr)) or any(
        containment(path, value, element=True) is not None and str(path[0]) not in fields
        for path, value in includes_terms(expr))
    if direct or not indexed:
        return plan

    plan.recent_rows = _recent_rows(limit)
    params = Params([pid])
    newest = scope(params)
    test = compile_postgres(expr, "r.data", params, fields)[0]
    k, n = params.add(plan.recent_rows, "int"), params.add(limit, "int")
    plan.recent = (
        f"WITH recent AS MATERIALIZED (SELECT r.xact, r.data FROM spanlog_rows AS r "
        f"WHERE {' AND '.join(newest)} ORDER BY r.xact DESC LIMIT {k}) "
        f"SELECT s.seen, s.low, h.xact, h.data FROM "
        f"(SELECT count(*) AS seen, min(xact) AS low FROM recent) AS s LEFT JOIN LATERAL "
        f"(SELECT r.xact, r.data FROM recent AS r WHERE {test} ORDER BY r.xact DESC "
        f"LIMIT {n}) AS h ON true ORDER BY h.xact DESC", params.values)
    params = Params([pid])
    older = scope(params)
    older.append(compile_postgres(expr, "r.data", params, fields)[0])
    low = len(params.values) + 1
    older.append(f"r.xact < ${low}::bigint")
    plan.rest = (_page(older, params, f"${low + 1}::int"), params.values)
    return plan


def _page(where: list[str], params: Any, limit: int | str) -> str:
    bound = limit if isinstance(limit, str) else params.add(limit, "int")
    return (f"SELECT r.xact, r.data FROM spanlog_rows AS r WHERE {' AND '.join(where)} "
            f"ORDER BY r.xact DESC LIMIT {bound}")


async def fetch_rows(conn: Any, plan: FetchPlan, limit: int) -> list[tuple[int, str]]:
    """Run ``plan`` on ``conn``: (xact, data text) pairs, newest first."""
    if plan.recent is None:
        return [(rec["xact"], rec["data"]) for rec in await conn.fetch(plan.query, *plan.params)]
    recs = await conn.fetch(plan.recent[0], *plan.recent[1])
    found = [(rec["xact"], rec["data"]) for rec in recs if rec["xact"] is not None]
    seen, low = recs[0]["seen"], recs[0]["low"]
    if len(found) == limit or seen < plan.recent_rows:
        return found  # the page is full, or there is nothing older to look at
    assert plan.rest is not None
    async with conn.transaction(readonly=True):
        # Only for this statement: neither an index walk nor a scan of the whole project,
        # so the GIN bitmap answers the equality (the value was rare among the newest rows).
        await conn.execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_seqscan = off")
        more = await conn.fetch(plan.rest[0], *plan.rest[1], low, limit - len(found))
    return found + [(rec["xact"], rec["data"]) for rec in more]


# What averaging needs of each row of some traces (``store._scores.trace_links``): a comment row's
# scores never count (origin_id is set exactly for comment rows).
_TRACE_LINKS = """
SELECT jsonb_build_array(r.id, r.root_span_id, r.data -> 'span_id', r.data -> 'span_parents',
                         CASE WHEN r.origin_id IS NULL THEN r.data -> 'scores' END)::text
FROM spanlog_rows AS r WHERE r.pid = $1 AND r.root_span_id = ANY($2::text[])
"""


async def root_totals(conn: Any, pid: int, roots: list[tuple[str | None, str]]
                      ) -> dict[str, dict[str, Any]]:
    """``trace_totals`` of a page's roots ``(root_span_id, id)`` by row id: ONE grouped read
    of their traces' ``spanlog_spans`` entries (a root without a ``root_span_id`` is a trace
    of one: its own entry)."""
    traces = sorted({root for root, _ in roots if root is not None})
    alone = [row_id for root, row_id in roots if root is None]
    found = await conn.fetch(
        f"SELECT root_span_id AS key, {TOTALS_SQL} FROM spanlog_spans "
        "WHERE pid = $1 AND root_span_id = ANY($2::text[]) GROUP BY root_span_id "
        f"UNION ALL SELECT id, {TOTALS_SQL} FROM spanlog_spans "
        "WHERE pid = $1 AND id = ANY($3::text[]) AND root_span_id IS NULL GROUP BY id",
        pid, traces, alone)
    by_key = {rec[0]: tuple(rec)[1:] for rec in found}
    return {row_id: trace_totals(by_key.get(root if root is not None else row_id))
            for root, row_id in roots}


async def root_scores(conn: Any, pid: int,
                      roots: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, float]]:
    """``scores_avg`` of a page's roots ``(root_span_id, id)``: ONE statement reads what
    averaging needs of all their traces (tree links and scores, not whole rows)."""
    wanted = roots_by_trace(roots)
    if not wanted:
        return {}
    found = await conn.fetch(_TRACE_LINKS, pid, list(wanted))
    # One decode of all the links: a call per row would cost more than the decoding.
    decoded = loads("[" + ",".join(rec[0] for rec in found) + "]")
    traces: dict[str, list[TraceLink]] = {}
    for row_id, root, span_id, parents, scores in decoded:
        traces.setdefault(root, []).append((row_id, span_id, parents, scores))
    return root_averages(traces, wanted)


_FACTS = ", ".join(FACT_COLUMNS)
_CELL = "SELECT hour, kind, grp, {columns} FROM {table} WHERE pid = $1 AND kind = $2 AND " \
        "hour >= $3 AND hour < $4"


async def aggregate(conn: Any, pid: int, project_id: str, win: Window) -> dict[str, Any]:
    """A project's figures over ``win`` (``store._aggregate``): the rollups' cells of its
    whole hours, and the spans of the rest, every statement in one read-only snapshot."""
    folder = Folder(win)
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        traces = None
        if win.filter is not None:
            try:
                expr = parse(win.filter)
            except FilterError as exc:
                raise BadRequest(f"filter: {exc}") from None
            params = Params([pid, win.since, win.until])
            check = compile_postgres(expr, "r.data", params, row_fields(project_id))[0]
            found = await conn.fetch(
                "SELECT s.root_span_id FROM spanlog_spans AS s JOIN spanlog_rows AS r "
                "ON r.pid = s.pid AND r.id = s.id WHERE s.pid = $1::bigint AND s.is_root = 1 "
                "AND s.started >= $2::float8 AND s.started < $3::float8 "
                f"AND s.root_span_id IS NOT NULL AND {check}", *params.values)
            traces = [rec[0] for rec in found]
        for since, until in folder.raw_ranges():
            if traces is None:
                spans = await conn.fetch(f"SELECT {_FACTS} FROM spanlog_spans WHERE pid = $1 "
                                         "AND started >= $2 AND started < $3", pid, since, until)
            else:
                spans = await conn.fetch(
                    f"SELECT {_FACTS} FROM spanlog_spans WHERE pid = $1 AND started >= $2 "
                    "AND started < $3 AND root_span_id = ANY($4::text[])",
                    pid, since, until, traces)
            folder.spans(tuple(rec) for rec in spans)
        hours = folder.rollup_hours()
        if hours is not None:
            for kind in folder.kinds:
                args = (pid, kind, *hours)
                folder.rollup_counts(tuple(rec) for rec in await conn.fetch(_CELL.format(
                    columns=", ".join(COUNTERS), table="spanlog_rollup"), *args))
                folder.rollup_latency(tuple(rec) for rec in await conn.fetch(_CELL.format(
                    columns="bin, n", table="spanlog_rollup_latency"), *args))
                folder.rollup_scores(tuple(rec) for rec in await conn.fetch(_CELL.format(
                    columns="name, total, n", table="spanlog_rollup_scores"), *args))
    return folder.result()
