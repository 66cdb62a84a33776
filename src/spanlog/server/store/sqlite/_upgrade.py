"""Creating the SQLite schema, and bringing a database written by an older spanlog up to date.

Only the index layout has changed so far (``meta.index_version``, see ``_schema``):

- version 1 (no ``index_version`` row): ``terms`` keyed (pid, path hash, value, xact), roots
  in a full index, comment rows left out of their target's trace;
- version 2: ``terms`` keyed by ``fields`` ids, ``rows.origin_id``, ``rows.capped`` and
  ``rows.links``, comments placed in their target's trace;
- version 3: ``postings`` (one entry per value per transaction) instead of ``terms``;
- version 4: ``postings`` keyed by epoch first, and the ``epochs`` they are in;
- version 5: row ids in two tiers, ``ids_recent`` and ``ids_settled`` (``_ids``),
  instead of the unique index ``rows_by_id``;
- version 6: ``spans``, what trace totals and aggregates read (``store._facts``).

An upgrade rebuilds the index from the stored rows in one transaction (a collector on the
file waits for it; a crash leaves the old version, and the next start begins again); from
version 4 only the id index is rebuilt, a sort of the ids, and from version 5 only
``spans`` is filled. Rows
keep their ``xact`` and their data, except that waiting comments get their trace position.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from spanlog.server.rows._apply import StoredRow
from spanlog.server.rows._json import dumps, loads
from spanlog.server.rows._model import comment_target
from spanlog.server.store._comments import link_comment
from spanlog.server.store._facts import span_facts
from spanlog.server.store._scores import trace_links
from spanlog.server.store.sqlite._ids import ROW_IDS
from spanlog.server.store.sqlite._leaf_keys import leaf_keys
from spanlog.server.store.sqlite._pieces import (
    Postings,
    add_leaves,
    insert_many,
    insert_postings,
    update_rollups,
)
from spanlog.server.store.sqlite._schema import INDEX_VERSION, SCHEMA, SPAN_COLUMNS
from spanlog.server.store.sqlite._writer import Txn

log = logging.getLogger("spanlog.server")

_BATCH = 2000
# Seconds between two progress lines of a long rebuild.
_PROGRESS_EVERY = 10.0
_NEW_COLUMNS = frozenset({"origin_id", "capped", "links"})


class SchemaTooNew(RuntimeError):
    """The database was written by a newer spanlog than this one."""


def _statements(script: str) -> list[str]:
    # The schema has no ';' inside a statement; executescript would COMMIT first.
    return [s for s in (part.strip() for part in script.split(";")) if s]


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create every table and index, upgrading an older index layout first (one
    transaction; several processes starting at once take turns)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        has_rows = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                "AND name = 'rows'").fetchone()
        if has_rows:
            found = conn.execute("SELECT value FROM meta WHERE key = 'index_version'").fetchone()
            version = int(found[0]) if found else 1
            if version > INDEX_VERSION:
                raise SchemaTooNew(
                    f"this database has index version {version}, newer than this spanlog "
                    f"understands ({INDEX_VERSION}): upgrade spanlog to open it")
            columns = {row[1] for row in conn.execute("PRAGMA table_info(rows)")}
            if version < 4 or not _NEW_COLUMNS.issubset(columns):
                _rebuild_index(conn)
            elif version == 4:
                _rebuild_ids(conn)  # the postings of version 4 are those of version 5
            if version < 6:
                _fill_spans(conn)
            if version < INDEX_VERSION:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) "
                             "VALUES ('index_version', ?)", (INDEX_VERSION,))
        for statement in _statements(SCHEMA):
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _rebuild_ids(conn: sqlite3.Connection) -> None:
    """Replace the id index with ``ids_settled`` holding every row's id (and create whatever
    else of the schema is missing)."""
    started = time.monotonic()
    conn.execute("DROP INDEX IF EXISTS rows_by_id")
    conn.execute("DROP TABLE IF EXISTS ids_recent")
    conn.execute("DROP TABLE IF EXISTS ids_settled")
    for statement in _statements(SCHEMA):
        conn.execute(statement)
    # Inserted in key order, the table is written once, page by page.
    conn.execute("INSERT INTO ids_settled (pid, id, xact) SELECT pid, id, xact FROM rows "
                 "ORDER BY pid, id")
    conn.execute("UPDATE meta SET value = 0 WHERE key = 'ids_recent'")
    log.info("spanlog: id index rebuilt in %.1fs", time.monotonic() - started)


def _rebuild_index(conn: sqlite3.Connection) -> None:
    started = time.monotonic()
    total = conn.execute("SELECT count(*) FROM rows").fetchone()[0]
    log.warning("spanlog: rebuilding the search index of %d rows for this spanlog version "
                "(once)", total)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(rows)")}
    if "origin_id" not in columns:
        conn.execute("ALTER TABLE rows ADD COLUMN origin_id TEXT")
    if "capped" not in columns:
        conn.execute("ALTER TABLE rows ADD COLUMN capped INTEGER")
    if "links" not in columns:
        conn.execute("ALTER TABLE rows ADD COLUMN links TEXT")
    conn.execute("DROP INDEX IF EXISTS rows_by_root")
    conn.execute("DROP TABLE IF EXISTS terms")
    conn.execute("DROP TABLE IF EXISTS postings")
    conn.execute("DROP TABLE IF EXISTS epochs")
    _rebuild_ids(conn)
    txn = Txn(conn, 0, {})
    after = 0
    while True:
        batch = conn.execute("SELECT xact, pid, data FROM rows WHERE xact > ? ORDER BY xact "
                             "LIMIT ?", (after, _BATCH)).fetchall()
        if not batch:
            break
        postings: Postings = {}
        marks: list[tuple[object, ...]] = []
        for xact, pid, text in batch:
            data = loads(text)
            keys, capped = leaf_keys(data)
            add_leaves(postings.setdefault(pid, {}), keys, xact)
            marks.append((comment_target(data), 1 if capped else None, trace_links(data), xact))
        conn.executemany("UPDATE rows SET origin_id = ?, capped = ?, links = ? WHERE xact = ?",
                         marks)
        insert_postings(txn, postings)
        after = batch[-1][0]
    # Comments stored by version 1 never joined their target's trace.
    waiting = conn.execute(
        "SELECT c.xact, c.base, c.data, t.root_span_id, json_extract(t.data, '$.span_id') "
        f"FROM rows AS c JOIN {ROW_IDS} AS i ON i.pid = c.pid AND i.id = c.origin_id "
        "JOIN rows AS t ON t.xact = i.xact "
        "WHERE c.root_span_id IS NULL AND c.origin_id IS NOT NULL "
        "AND t.root_span_id IS NOT NULL").fetchall()
    for xact, base, text, root, span_id in waiting:
        linked = link_comment(StoredRow(loads(text), base),
                              {"root_span_id": root, "span_id": span_id})
        if linked is not None:
            conn.execute("UPDATE rows SET root_span_id = ?, data = ?, links = ? WHERE xact = ?",
                         (root, dumps(linked.data), trace_links(linked.data), xact))
    log.warning("spanlog: search index rebuilt in %.1fs", time.monotonic() - started)


def _fill_spans(conn: sqlite3.Connection) -> None:
    """Fill ``spans`` from every stored row, with a progress line every few seconds."""
    started = last = time.monotonic()
    total = conn.execute("SELECT count(*) FROM rows").fetchone()[0]
    if total:
        log.warning("spanlog: computing trace totals for %d rows for this spanlog version "
                    "(once)", total)
    for table in ("spans", "rollup", "rollup_latency", "rollup_scores"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    for statement in _statements(SCHEMA):
        conn.execute(statement)
    after = done = 0
    while True:
        batch = conn.execute("SELECT xact, pid, root_span_id, data FROM rows WHERE xact > ? "
                             "ORDER BY xact LIMIT ?", (after, _BATCH)).fetchall()
        if not batch:
            break
        params: list[object] = []
        added = []
        for xact, pid, root, text in batch:
            facts = span_facts(loads(text))
            if facts is not None:
                params.extend((xact, pid, root, *facts))
                added.append((pid, *facts))
        insert_many(conn, f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)})", len(SPAN_COLUMNS),
                    params)
        update_rollups(conn, added, ())
        after = batch[-1][0]
        done += len(batch)
        if time.monotonic() - last >= _PROGRESS_EVERY:
            last = time.monotonic()
            log.warning("spanlog: trace totals: %d of %d rows", done, total)
    if total:
        log.warning("spanlog: trace totals computed in %.1fs", time.monotonic() - started)
