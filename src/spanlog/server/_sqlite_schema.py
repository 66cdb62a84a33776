"""The SQLite engine's tables, connection settings and index keys.

Layout, and why:

- ``rows``: one row per (project, id). Its ``xact`` (the transaction id of its last write) is
  the table's rowid, so "most recently updated first" is a backwards walk of an index on
  ``pid`` and a row is found from an index entry without a second index lookup. A write moves
  the row to a new, larger ``xact``.
- ``terms``: the inverted index, one entry per scalar leaf of metadata, tags, span_attributes
  and scores, keyed ``(pid, path, value, xact)``. An equality filter is a range of this key
  walked backwards from the newest ``xact``: the latest 50 matches cost O(log n) whether the
  value is rare or common. ``path`` is a 64-bit hash of the leaf's path: no lookup table to
  keep consistent across processes, and a collision (odds about 2**-64 per pair of paths) is
  not a practical concern.
- ``meta.last_xact``: the transaction counter, read and written inside each write transaction
  so that several collector processes can share one database file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from functools import lru_cache
from typing import Any

from spanlog.server._rows import MAX_INDEXED_LENGTH, LeafPath

SCHEMA_VERSION = 1

SCHEMA = """
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
    is_root INTEGER NOT NULL, base TEXT, data TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS rows_by_id ON rows (pid, id);
CREATE INDEX IF NOT EXISTS rows_by_project ON rows (pid);
CREATE INDEX IF NOT EXISTS rows_by_root ON rows (pid, is_root);
CREATE INDEX IF NOT EXISTS rows_by_trace ON rows (pid, root_span_id);
CREATE TABLE IF NOT EXISTS terms (
    pid INTEGER NOT NULL, path INTEGER NOT NULL, value NOT NULL, xact INTEGER NOT NULL,
    PRIMARY KEY (pid, path, value, xact)) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('last_xact', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 1);
"""

# A JSON true/false must not match the numbers 1/0: booleans are stored as one-byte blobs,
# a storage class no number or string shares.
TRUE = b"\x01"
FALSE = b"\x00"
INT64 = 2**63


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
    """The 64-bit key ``terms.path`` stores for a leaf path (see ``_rows.leaves``)."""
    # JSON keeps ("a.b",) apart from ("a", "b") and the ARRAY marker 0 apart from key "0".
    text = json.dumps(path, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def index_value(value: Any) -> tuple[Any, bool]:
    """How ``terms.value`` stores a leaf value, and whether that is exact (not truncated)."""
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
