"""The PostgreSQL engine's tables, and the versioned migrations that create them.

Layout, and why:

- ``spanlog_rows``: one row per (project, id), the span as ``jsonb``. ``xact`` is the
  transaction id of its last write; a write updates the row in place with a new, larger
  ``xact`` (in place, so a concurrent ``SELECT ... FOR UPDATE`` waiting on it sees the new
  version rather than a deleted one). ``(pid, xact)`` is unique and indexed, so "most
  recently updated first" is a backwards index walk; a partial index does the same for root
  spans only, and ``(pid, root_span_id)`` finds a trace.
- ``spanlog_rows_data``: a GIN index with ``jsonb_path_ops`` on the whole row: equality on
  any subfield is a containment query (``data @> '{"metadata": {"user_id": "1234"}}'``).
- ``spanlog_counter``: ONE row holding the last transaction id handed out. A writer updates
  it inside its transaction, right before writing rows, and holds that row lock until it
  commits; so ids are handed out in commit order, across every collector on the database.
  A sequence would not do: its values are taken before commit, so a reader could page past
  an id whose transaction commits later and fills the gap.
- ``spanlog_rows.origin_id`` (version 2): the target id of a comment row, generated from
  ``data`` exactly as ``rows._model.comment_target`` reads it (so every writer, ``spanlog
  migrate`` included, fills it without knowing of it). A partial index holds only the
  comments still waiting for their target's trace: a row that gets its first
  ``root_span_id`` finds its waiting comments there (see ``_writer``).
- ``spanlog_spans`` (version 3): what trace totals and aggregates need of each row that is a
  span (``store._facts``), written by the writer with the row, indexed by trace and by start
  time. Rows stored before version 3 get theirs in the migration (:func:`fill_spans`).
- ``spanlog_rollup``, ``_rollup_latency``, ``_rollup_scores`` (version 3): those figures summed
  per (project, split kind, hour, group) (``store._aggregate``), updated by every write in
  the same transaction (:func:`replace_spans`); additions commute, so collectors writing at
  once need no more than the row locks the upserts take.
- ``spanlog_project_settings`` (version 4): the settings a user set on a project, one JSON
  object per project (``store._settings``).
- Numbers (version 5): ``jsonb`` keeps a number's value, not its text; ``_numbers`` writes
  and reads them so that a row comes back with the number text SQLite gives.
- ``spanlog_migrated``: how far ``spanlog migrate`` got for each SQLite source (resume).
- Every table is prefixed ``spanlog_`` so the engine can share a database (and its
  ``search_path``) with other applications.

Migrations run on start in one transaction under an advisory lock: collectors starting
together queue on the lock, and the later ones find the work done. Each migration is applied
once and recorded in ``spanlog_schema``; a database migrated by a newer spanlog is refused.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from spanlog.server.rows._json import loads
from spanlog.server.rows._model import now_iso
from spanlog.server.store._aggregate import COUNTERS, rollup_cells, rollup_rows
from spanlog.server.store._facts import FACT_COLUMNS, span_facts

log = logging.getLogger("spanlog.server")

# pg_advisory_xact_lock key for schema changes ("spanlog" in ASCII, as a bigint).
SCHEMA_LOCK = 0x7370616E6C6F67

# The text Python's json.dumps writes for a number of jsonb text (see ``_numbers``): a float
# below 1e-4 is "1e-05" where numeric writes "0.00001", and a float from 1e16 up, stored as
# "10000000000000000.0000" (version 5 on; older rows hold an integer there), is "1e+16".
# Exponents take at least two digits (before version 5, three-digit ones lost their last).
_PY_NUMBER = r"""
CREATE OR REPLACE FUNCTION spanlog_py_number(t text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
    SELECT CASE
        WHEN t ~ '^-?0\.0000' AND t ~ '[1-9]' THEN (
            SELECT m[1] || m[3] || CASE WHEN m[4] <> '' THEN '.' || m[4] ELSE '' END
                   || 'e-' || CASE WHEN length(m[2]) < 9 THEN '0' ELSE '' END
                   || (length(m[2]) + 1)::text
            FROM regexp_match(t, '^(-?)0\.(0*)([1-9])([0-9]*)$') AS m)
        WHEN t ~ '^-?[0-9]{17,}\.0000$' THEN (
            SELECT m[1] || m[2] || CASE WHEN m[3] <> '' THEN '.' || m[3] ELSE '' END
                   || 'e+' || (length(m[2] || m[3] || m[4]) - 1)::text
            FROM regexp_match(t, '^(-?)([1-9])([0-9]*?)(0*)\.0000$') AS m)
        ELSE t END
$fn$;
"""

# The compact JSON text Python's json.dumps(..., ensure_ascii=False, separators=(",", ":"))
# writes for a jsonb value: jsonb's own text with the spaces after separators dropped (they
# only occur outside strings) and small floats in Python's exponent form. Strings are escaped
# the same way by both (quote, backslash, \b \f \n \r \t, other controls as \u00XX).
_JSON_TEXT = r"""
CREATE OR REPLACE FUNCTION spanlog_json_text(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
    SELECT coalesce(string_agg(
        CASE WHEN m[1] IS NOT NULL THEN m[1]
             WHEN m[2] IS NOT NULL THEN spanlog_py_number(m[2])
             ELSE replace(replace(m[3], ', ', ','), ': ', ':') END,
        '' ORDER BY n), '')
    FROM regexp_matches(v::text, '("(?:[^"\\]|\\.)*")|(-?[0-9][0-9.]*)|([^"0-9-]+)', 'g')
         WITH ORDINALITY AS parts(m, n)
$fn$;
"""

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, """
CREATE TABLE spanlog_orgs (
    id text PRIMARY KEY, name text NOT NULL UNIQUE, created text NOT NULL);
CREATE TABLE spanlog_projects (
    pid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id text NOT NULL UNIQUE,
    org_id text NOT NULL REFERENCES spanlog_orgs (id), name text NOT NULL,
    created text NOT NULL, UNIQUE (org_id, name));
CREATE TABLE spanlog_keys (
    id text PRIMARY KEY, hash text NOT NULL UNIQUE, name text NOT NULL,
    org_id text NOT NULL REFERENCES spanlog_orgs (id), projects jsonb,
    created text NOT NULL, revoked text);
CREATE TABLE spanlog_counter (
    one boolean PRIMARY KEY DEFAULT true CHECK (one), last bigint NOT NULL);
INSERT INTO spanlog_counter (one, last) VALUES (true, 0);
CREATE TABLE spanlog_rows (
    pid bigint NOT NULL, id text NOT NULL, xact bigint NOT NULL, root_span_id text,
    is_root boolean NOT NULL, base text, data jsonb NOT NULL, PRIMARY KEY (pid, id));
-- Keep rows up to 8 KB inline and uncompressed: compressing every ~2 KB span costs more
-- CPU on write and read than the disk it saves. Larger rows use lz4 where the server has it.
ALTER TABLE spanlog_rows SET (toast_tuple_target = 8160);
DO $lz4$ BEGIN
    ALTER TABLE spanlog_rows ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN NULL;
END $lz4$;
CREATE UNIQUE INDEX spanlog_rows_by_xact ON spanlog_rows (pid, xact);
CREATE INDEX spanlog_rows_roots ON spanlog_rows (pid, xact) WHERE is_root;
CREATE INDEX spanlog_rows_by_trace ON spanlog_rows (pid, root_span_id);
CREATE INDEX spanlog_rows_data ON spanlog_rows USING gin (data jsonb_path_ops);
CREATE TABLE spanlog_migrated (
    source text PRIMARY KEY, last_xact bigint NOT NULL, offset_xact bigint NOT NULL,
    reserved_xact bigint NOT NULL, updated text NOT NULL);
""" + _PY_NUMBER + _JSON_TEXT),
    (2, """
ALTER TABLE spanlog_rows ADD COLUMN origin_id text GENERATED ALWAYS AS (
    CASE WHEN coalesce(data -> 'comment', 'null') <> 'null'
              AND jsonb_typeof(data -> 'origin') = 'object'
              AND jsonb_typeof(data -> 'origin' -> 'id') = 'string'
         THEN data -> 'origin' ->> 'id' END) STORED;
CREATE INDEX spanlog_rows_pending_comments ON spanlog_rows (pid, origin_id)
    WHERE root_span_id IS NULL AND origin_id IS NOT NULL;
-- Comments written before version 2 whose target has a trace join it now, as a writer
-- would have (new transaction ids, after every id handed out so far).
WITH pending AS (
    SELECT c.pid, c.id, t.root_span_id AS root, t.data -> 'span_id' AS span,
           row_number() OVER (ORDER BY c.xact) AS n
    FROM spanlog_rows AS c JOIN spanlog_rows AS t ON t.pid = c.pid AND t.id = c.origin_id
    WHERE c.root_span_id IS NULL AND c.origin_id IS NOT NULL
      AND t.root_span_id IS NOT NULL),
ids AS (
    UPDATE spanlog_counter SET last = last + (SELECT count(*) FROM pending) WHERE one
    RETURNING last - (SELECT count(*) FROM pending) AS first)
UPDATE spanlog_rows AS r SET root_span_id = p.root, xact = ids.first + p.n,
    data = r.data || jsonb_build_object('root_span_id', p.root) || (
        CASE WHEN coalesce(p.span, 'null') <> 'null' AND coalesce(r.data -> 'span_parents',
                  'null') IN ('null', '[]', '{}', '""', '0', 'false')
             THEN jsonb_build_object('span_parents', jsonb_build_array(p.span))
             ELSE '{}' END)
FROM pending AS p, ids WHERE r.pid = p.pid AND r.id = p.id;
"""),
    (3, """
CREATE TABLE spanlog_spans (
    pid bigint NOT NULL, id text NOT NULL, root_span_id text, is_root smallint NOT NULL,
    started double precision, ended double precision, name text, type text, model text,
    prompt_tokens bigint, completion_tokens bigint, tokens bigint, cost double precision,
    error smallint NOT NULL, scores jsonb, tags jsonb, PRIMARY KEY (pid, id));
CREATE INDEX spanlog_spans_by_trace ON spanlog_spans (pid, root_span_id);
CREATE INDEX spanlog_spans_by_start ON spanlog_spans (pid, started);
CREATE TABLE spanlog_rollup (
    pid bigint NOT NULL, kind smallint NOT NULL, hour bigint NOT NULL, grp text NOT NULL,
    traces bigint NOT NULL, errors bigint NOT NULL, failed_traces bigint NOT NULL,
    llm_calls bigint NOT NULL, prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL, tokens bigint NOT NULL, cost double precision NOT NULL,
    priced bigint NOT NULL, unpriced_llm_calls bigint NOT NULL,
    PRIMARY KEY (pid, kind, hour, grp));
CREATE TABLE spanlog_rollup_latency (
    pid bigint NOT NULL, kind smallint NOT NULL, hour bigint NOT NULL, grp text NOT NULL,
    bin integer NOT NULL, n bigint NOT NULL, PRIMARY KEY (pid, kind, hour, grp, bin));
CREATE TABLE spanlog_rollup_scores (
    pid bigint NOT NULL, kind smallint NOT NULL, hour bigint NOT NULL, grp text NOT NULL,
    name text NOT NULL, total double precision NOT NULL, n bigint NOT NULL,
    PRIMARY KEY (pid, kind, hour, grp, name));
"""),
    (4, """
CREATE TABLE spanlog_project_settings (
    pid bigint PRIMARY KEY REFERENCES spanlog_projects (pid), settings jsonb NOT NULL);
"""),
    # Floats from 1e16 up are stored positionally with four zero decimals (``_numbers``).
    (5, _PY_NUMBER),
)

LATEST = MIGRATIONS[-1][0]


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer spanlog than this one."""


async def migrate(conn: Any) -> list[int]:
    """Bring the schema on ``conn`` (an asyncpg connection) up to date; return what ran.

    One transaction under an advisory lock, so collectors starting at the same moment apply
    each migration exactly once (the others wait, then find nothing to do).
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        # No DDL at all once the schema is current: a collector may then run as a role
        # that can only read and write rows (CREATE TABLE IF NOT EXISTS would need more).
        if await conn.fetchval("SELECT to_regclass('spanlog_schema')") is None:
            await conn.execute("CREATE TABLE spanlog_schema ("
                               "version integer PRIMARY KEY, applied text NOT NULL)")
        done = {r[0] for r in await conn.fetch("SELECT version FROM spanlog_schema")}
        if done and max(done) > LATEST:
            raise SchemaTooNew(
                f"the database has spanlog schema version {max(done)}, newer than this "
                f"collector knows ({LATEST}): upgrade spanlog on this machine")
        ran = []
        for version, sql in MIGRATIONS:
            if version in done:
                continue
            await conn.execute(sql)
            if version == 3:
                await fill_spans(conn)
            await conn.execute("INSERT INTO spanlog_schema (version, applied) VALUES ($1, $2)",
                               version, now_iso())
            ran.append(version)
        return ran


# The `spanlog_spans` columns, and an insert of many entries given column by column.
SPAN_COLUMNS = ("pid", "id", "root_span_id", *FACT_COLUMNS)
_SPAN_TYPES = ("bigint", "text", "text", "smallint", "float8", "float8", "text", "text", "text",
               "bigint", "bigint", "bigint", "float8", "smallint", "jsonb", "jsonb")
INSERT_SPANS = (
    f"INSERT INTO spanlog_spans ({', '.join(SPAN_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(_SPAN_TYPES, start=1)) + ")")
DELETE_SPANS = """
DELETE FROM spanlog_spans AS s USING unnest($1::bigint[], $2::text[]) AS d(pid, id)
WHERE s.pid = d.pid AND s.id = d.id
"""
_FILL_BATCH = 2000
_PROGRESS_EVERY = 10.0


def span_columns(entries: list[tuple[Any, ...]]) -> list[list[Any]]:
    """:data:`INSERT_SPANS`'s arguments for ``entries`` (each :data:`SPAN_COLUMNS` values)."""
    return [list(column) for column in zip(*entries, strict=True)] if entries else \
        [[] for _ in SPAN_COLUMNS]


_REMOVED = ("SELECT s.pid, " + ", ".join(f"s.{c}" for c in FACT_COLUMNS)
            + " FROM spanlog_spans AS s JOIN unnest($1::bigint[], $2::text[]) AS d(pid, id) "
            "ON s.pid = d.pid AND s.id = d.id")
_UPSERT_ROLLUP = (
    f"INSERT INTO spanlog_rollup (pid, hour, kind, grp, {', '.join(COUNTERS)}) "
    "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::text[], "
    + ", ".join(f"${i}::{'float8' if c == 'cost' else 'bigint'}[]"
                for i, c in enumerate(COUNTERS, start=5))
    + ") ON CONFLICT (pid, kind, hour, grp) DO UPDATE SET "
    + ", ".join(f"{c} = spanlog_rollup.{c} + excluded.{c}" for c in COUNTERS))
_UPSERT_LATENCY = (
    "INSERT INTO spanlog_rollup_latency (pid, hour, kind, grp, bin, n) SELECT * FROM "
    "unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::text[], $5::integer[], "
    "$6::bigint[]) ON CONFLICT (pid, kind, hour, grp, bin) DO UPDATE SET "
    "n = spanlog_rollup_latency.n + excluded.n")
_UPSERT_SCORES = (
    "INSERT INTO spanlog_rollup_scores (pid, hour, kind, grp, name, total, n) SELECT * FROM "
    "unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::text[], $5::text[], "
    "$6::float8[], $7::bigint[]) ON CONFLICT (pid, kind, hour, grp, name) DO UPDATE SET "
    "total = spanlog_rollup_scores.total + excluded.total, "
    "n = spanlog_rollup_scores.n + excluded.n")


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


async def replace_spans(conn: Any, keys: list[tuple[int, str]],
                        entries: list[tuple[Any, ...]]) -> None:
    """Replace the ``spanlog_spans`` entries of rows ``keys`` (pid, id) with ``entries``
    (:data:`SPAN_COLUMNS` values), and the rollups with them: the figures of the entries
    removed taken away, those of the entries added added (in key order, so that writers
    upserting the same cells queue instead of deadlocking)."""
    removed: list[Any] = []
    if keys:
        args = ([k[0] for k in keys], [k[1] for k in keys])
        removed = [tuple(rec) for rec in await conn.fetch(_REMOVED, *args)]
        if removed:
            await conn.execute(DELETE_SPANS, *args)
    if entries:
        await conn.execute(INSERT_SPANS, *span_columns(entries))
    added = [(entry[0], *entry[3:]) for entry in entries]
    for pid, cells in sorted(rollup_cells(added, removed).items()):
        counts, latency, scores = rollup_rows(pid, cells)
        if counts:
            await conn.execute(_UPSERT_ROLLUP, *_columns(counts, 4 + len(COUNTERS)))
        if latency:
            await conn.execute(_UPSERT_LATENCY, *_columns(latency, 6))
        if scores:
            await conn.execute(_UPSERT_SCORES, *_columns(scores, 7))


async def fill_spans(conn: Any) -> None:
    """Give every stored row that is a span its ``spanlog_spans`` entry (migration 3), with a
    progress line every few seconds."""
    total = await conn.fetchval("SELECT count(*) FROM spanlog_rows")
    if not total:
        return
    log.warning("spanlog: computing trace totals for %d rows for this spanlog version (once)",
                total)
    started = last = time.monotonic()
    after: tuple[int, str] = (-1, "")
    done = 0
    while True:
        batch = await conn.fetch(
            "SELECT pid, id, root_span_id, data::text AS data FROM spanlog_rows "
            "WHERE (pid, id) > ($1, $2) ORDER BY pid, id LIMIT $3", *after, _FILL_BATCH)
        if not batch:
            break
        entries = []
        for rec in batch:
            facts = span_facts(loads(rec["data"]))
            if facts is not None:
                entries.append((rec["pid"], rec["id"], rec["root_span_id"], *facts))
        await replace_spans(conn, [], entries)
        after = (batch[-1]["pid"], batch[-1]["id"])
        done += len(batch)
        if time.monotonic() - last >= _PROGRESS_EVERY:
            last = time.monotonic()
            log.warning("spanlog: trace totals: %d of %d rows", done, total)
    log.warning("spanlog: trace totals computed in %.1fs", time.monotonic() - started)
