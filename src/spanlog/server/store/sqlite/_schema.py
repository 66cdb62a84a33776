"""The SQLite engine's tables, connection settings and index keys.

Layout, and why:

- ``rows``: one row per (project, id), found by id through ``ids_recent`` and
  ``ids_settled`` (see ``_ids``). Its ``xact`` (the transaction id of its last write) is
  the table's rowid, so "most recently updated first" is a backwards walk of an index on
  ``pid`` and a row is found from an index entry without a second index lookup. A write moves
  the row to a new, larger ``xact``. ``origin_id`` is the target of a comment row (the index
  on it holds only comments still waiting for their target's trace); ``capped`` marks a row
  with more leaves than the index keeps (see ``_query``: such rows are always
  candidates of an indexed filter). ``links`` is what score averages need of the row
  (``store._scores.trace_links``), so a page of roots gets its traces' averages without parsing
  whole rows.
- ``postings``: the inverted index over every scalar leaf of metadata, tags, span_attributes
  and scores. One entry per (field, value) per write job, holding the transaction ids
  (``xact``) of that job's rows with that leaf value, newest first, as a JSON array
  (``xacts``, ``n`` of them), keyed ``(epoch, field, value, first)`` where ``first`` is the
  smallest of them and ``epoch`` is ``first >> EPOCH_BITS``. Transactions take increasing
  ids, so a value's entries hold disjoint ranges, and walking the ``epochs`` backwards, and
  in each the value's entries backwards by ``first``, each array in order, yields its rows
  newest first: the latest 50 matches cost a probe per epoch plus O(log n), whether the
  value is rare or common, and a page after a cursor starts at the one entry that holds it.
  Grouping is what makes ingest fast: a common value (``env = production``) costs one index
  insert per job instead of one per row. The epoch is what keeps it fast as the database
  grows: a rare value (a request id) is one entry per row, and with the epoch first all of a
  transaction's entries land in the small, recent end of the tree, where they share pages,
  instead of one random page each across the whole index (``bench/sqlite_random_inserts.py``
  measures the difference). ``field`` is a small integer naming a (project, leaf path) pair
  through the ``fields`` dictionary, so the key stays a few bytes plus the value. A
  rewritten row moves to a new ``xact``; its old ids stay in older entries and simply match
  no row any more (every use joins ``rows`` on ``xact``).
- ``epochs``: every epoch that has postings, so a read walks them newest first.
- ``spans``: what trace totals and aggregates need of each span (``store._facts``), one
  entry per row that is a span, keyed by the row's ``xact`` (rewritten with it). Indexed by
  trace, for a page of roots' totals, and by start time, for a time range.
- ``rollup``, ``rollup_latency``, ``rollup_scores``: the ``spans`` figures summed per
  (project, split kind, hour, group) (``store._aggregate``), updated by every write, so that
  charting a week reads a few thousand cells instead of every span.
- ``project_settings``: the settings a user set on a project, one JSON object per project
  (``store._settings``); created by any start that lacks it.
- ``ids_recent``, ``ids_settled``: the id index, in two tiers (``_ids``), with the
  size of the first in ``meta.ids_recent``.
- ``fields.path`` is a 64-bit hash of the leaf's path (see :func:`path_key`): the same in
  every process, so collectors sharing the file agree without coordination; a collision
  (odds about 2**-64 per pair of paths) is not a practical concern.
- ``meta.last_xact``: the transaction counter, read and written inside each write transaction
  so that several collector processes can share one database file. ``meta.schema_version``
  versions the tables other tools read (orgs, projects, api_keys and the rows' original
  columns, see ``commands/_migrate.py``); ``meta.index_version`` versions the index
  layout, which ``_upgrade`` rebuilds from the rows when it is older than
  :data:`INDEX_VERSION`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from functools import lru_cache
from typing import Any

from spanlog.server.rows._leaves import MAX_INDEXED_LENGTH, LeafPath
from spanlog.server.store._facts import FACT_COLUMNS

SCHEMA_VERSION = 1
INDEX_VERSION = 6
# Transaction ids per postings epoch (see the module docstring): 65,536, so a database of
# 1,000,000 rows has about 16 epochs and a transaction's entries share a subtree of at most
# one epoch's entries.
EPOCH_BITS = 16

# The index layout of INDEX_VERSION (also what an upgrade creates after dropping the old one).
INDEX_SCHEMA = """
CREATE INDEX IF NOT EXISTS rows_roots ON rows (pid) WHERE is_root = 1;
CREATE INDEX IF NOT EXISTS rows_capped ON rows (pid) WHERE capped = 1;
CREATE INDEX IF NOT EXISTS rows_pending_comments ON rows (pid, origin_id)
    WHERE root_span_id IS NULL AND origin_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS fields (
    id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, path INTEGER NOT NULL, UNIQUE (pid, path));
CREATE TABLE IF NOT EXISTS postings (
    epoch INTEGER NOT NULL, field INTEGER NOT NULL, value NOT NULL, first INTEGER NOT NULL,
    n INTEGER NOT NULL, xacts TEXT NOT NULL, PRIMARY KEY (epoch, field, value, first))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS epochs (epoch INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS spans (
    xact INTEGER PRIMARY KEY, pid INTEGER NOT NULL, root_span_id TEXT,
    is_root INTEGER NOT NULL, started REAL, ended REAL, name TEXT, type TEXT, model TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER, tokens INTEGER, cost REAL,
    error INTEGER NOT NULL, scores TEXT, tags TEXT);
CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (pid, root_span_id);
CREATE INDEX IF NOT EXISTS spans_by_start ON spans (pid, started);
CREATE TABLE IF NOT EXISTS rollup (
    pid INTEGER NOT NULL, kind INTEGER NOT NULL, hour INTEGER NOT NULL, grp TEXT NOT NULL,
    traces INTEGER NOT NULL, errors INTEGER NOT NULL, failed_traces INTEGER NOT NULL,
    llm_calls INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, tokens INTEGER NOT NULL, cost REAL NOT NULL,
    priced INTEGER NOT NULL, unpriced_llm_calls INTEGER NOT NULL,
    PRIMARY KEY (pid, kind, hour, grp)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_latency (
    pid INTEGER NOT NULL, kind INTEGER NOT NULL, hour INTEGER NOT NULL, grp TEXT NOT NULL,
    bin INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (pid, kind, hour, grp, bin))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_scores (
    pid INTEGER NOT NULL, kind INTEGER NOT NULL, hour INTEGER NOT NULL, grp TEXT NOT NULL,
    name TEXT NOT NULL, total REAL NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (pid, kind, hour, grp, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ids_recent (
    pid INTEGER NOT NULL, id TEXT NOT NULL, xact INTEGER NOT NULL, PRIMARY KEY (pid, id))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ids_settled (
    pid INTEGER NOT NULL, id TEXT NOT NULL, xact INTEGER NOT NULL, PRIMARY KEY (pid, id))
    WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('ids_recent', 0);
"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orgs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    pid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, org_id TEXT NOT NULL,
    name TEXT NOT NULL, created TEXT NOT NULL, UNIQUE (org_id, name));
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL, org_id TEXT NOT NULL,
    projects TEXT, created TEXT NOT NULL, revoked TEXT);
CREATE TABLE IF NOT EXISTS rows (
    xact INTEGER PRIMARY KEY, pid INTEGER NOT NULL, id TEXT NOT NULL, root_span_id TEXT,
    is_root INTEGER NOT NULL, base TEXT, data TEXT NOT NULL, origin_id TEXT, capped INTEGER,
    links TEXT);
CREATE TABLE IF NOT EXISTS project_settings (pid INTEGER PRIMARY KEY, settings TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS rows_by_project ON rows (pid);
CREATE INDEX IF NOT EXISTS rows_by_trace ON rows (pid, root_span_id);
{INDEX_SCHEMA}
INSERT OR IGNORE INTO meta (key, value) VALUES ('last_xact', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', {SCHEMA_VERSION});
INSERT OR IGNORE INTO meta (key, value) VALUES ('index_version', {INDEX_VERSION});
"""

# The `rows` columns in the order every insert binds them.
ROW_COLUMNS = ("xact", "pid", "id", "root_span_id", "is_root", "base", "data", "origin_id",
               "capped", "links")

# The `spans` columns in the order every insert binds them (store._facts gives the last ones).
SPAN_COLUMNS = ("xact", "pid", "root_span_id", *FACT_COLUMNS)

# A JSON true/false must not match the numbers 1/0: booleans are stored as one-byte blobs,
# a storage class no number or string shares.
TRUE = b"\x01"
FALSE = b"\x00"
INT64 = 2**63


def _null(value: None) -> None:
    return value


# Python's sqlite3 asks for an adapter for every parameter that is not an int, float or str,
# None included: without one registered for None, that lookup fails, and formatting the
# failure's AttributeError cost about 2,000 instructions per NULL bound (callgrind, Python
# 3.11), several per ingested row (the NULL columns of `rows` and `spans`).
sqlite3.register_adapter(type(None), _null)


def connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    """A connection with the engine's settings; the caller manages transactions."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode: a commit survives the process being killed (the WAL is written
    # before COMMIT returns); only an OS crash or power loss can lose the latest commits.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA mmap_size = 268435456")
    conn.execute("PRAGMA temp_store = MEMORY")
    if readonly:
        conn.execute("PRAGMA query_only = 1")
    return conn


@lru_cache(maxsize=65536)
def path_key(path: LeafPath) -> int:
    """The 64-bit key ``fields.path`` stores for a leaf path (see ``rows._leaves.leaves``)."""
    # JSON keeps ("a.b",) apart from ("a", "b") and the ARRAY marker 0 apart from key "0".
    text = json.dumps(path, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def index_value(value: Any) -> tuple[Any, bool]:
    """How ``postings.value`` stores a leaf value, and whether that is exact (not truncated)."""
    if type(value) is str:
        if len(value) > MAX_INDEXED_LENGTH:
            return value[:MAX_INDEXED_LENGTH], False
        return value, True
    if value is True:
        return TRUE, True
    if value is False:
        return FALSE, True
    if isinstance(value, int):
        if -INT64 <= value < INT64:
            return value, True
        return float(value), False
    return value, True


def field_sql(pid_param: str = "?", path_param: str = "?") -> str:
    """A scalar subquery for the ``fields.id`` of (project, path); NULL when never indexed."""
    return f"(SELECT id FROM fields WHERE pid = {pid_param} AND path = {path_param})"
