"""The one thread that writes to a SQLite database, and the row writes it performs.

Every write (rows, projects, keys) is a job on a queue. The writer takes whatever jobs are
waiting, runs them in ONE ``BEGIN IMMEDIATE`` transaction with a savepoint per job (so a
failing job rolls back alone and the others still commit), commits, and only then resolves
the jobs' futures: a caller hears "done" only for work that is durable.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from spanlog._merge import is_merge
from spanlog.server._sqlite_checkpoint import WRITER_BACKSTOP_PAGES, Checkpointer
from spanlog.server._sqlite_schema import connect
from spanlog.server._sqlite_terms import leaf_keys, row_terms
from spanlog.server._store import (
    NotFound,
    Piece,
    Replace,
    StoredRow,
    Unavailable,
    apply_piece,
    dumps,
    is_root,
    prepare_replace,
)

log = logging.getLogger("spanlog.server")

# How much waiting work one transaction takes at most: big enough to amortise the commit,
# small enough that one transaction never holds the write lock for long.
MAX_JOBS_PER_TRANSACTION = 256
MAX_PIECES_PER_TRANSACTION = 20_000
# Past this many pieces waiting, new writes get 503 + Retry-After instead of queueing: the
# clients back off and the memory held for unacknowledged work stays bounded.
MAX_PENDING_PIECES = 200_000
_ID_CHUNK = 500  # ids per `IN (...)` lookup, under SQLite's bound-parameter limit



class Txn:
    """What a job sees: the write connection inside the current transaction."""

    def __init__(self, conn: sqlite3.Connection, last_xact: int,
                 pids: dict[str, int]) -> None:
        self.conn = conn
        self.last_xact = last_xact
        self._pids = pids
        self.new_pids: dict[str, int] = {}

    def next_xact(self) -> int:
        """A fresh transaction id, larger than every id handed out before."""
        self.last_xact += 1
        return self.last_xact

    def pid(self, project_id: str) -> int:
        """The integer key of project ``project_id`` (:class:`NotFound` when unknown)."""
        pid = self._pids.get(project_id) or self.new_pids.get(project_id)
        if pid is None:
            found = self.conn.execute("SELECT pid FROM projects WHERE id = ?",
                                      (project_id,)).fetchone()
            if found is None:
                raise NotFound(f"project {project_id!r} not found")
            pid = self.new_pids[project_id] = found[0]
        return pid


Job = Callable[[Txn], Any]


@dataclass
class _Queued:
    job: Job
    size: int
    future: Future[Any]


class Writer:
    """Owns the write connection; runs jobs in batches on its own thread."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._queue: queue.SimpleQueue[_Queued | None] = queue.SimpleQueue()
        self._pids: dict[str, int] = {}
        self._conn = connect(path, readonly=False)
        self._conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_BACKSTOP_PAGES}")
        self._checkpointer = Checkpointer(path)
        self._thread = threading.Thread(target=self._run, name="spanlog-sqlite-writer",
                                        daemon=True)
        self._closed = False
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._thread.start()

    def submit(self, job: Job, size: int = 1) -> Future[Any]:
        """Queue ``job``; the future resolves after its transaction commits."""
        if self._closed:
            raise Unavailable("the collector is shutting down")
        with self._pending_lock:
            if self._pending > MAX_PENDING_PIECES and size > 0:
                raise Unavailable(f"the collector is overloaded: {self._pending} rows are "
                                  "waiting to be written")
            self._pending += size
        future: Future[Any] = Future()
        self._queue.put(_Queued(job, size, future))
        return future

    def close(self) -> None:
        """Finish the queued jobs, stop the thread and close the connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        self._conn.close()
        self._checkpointer.close()

    def _take(self) -> tuple[list[_Queued], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        size = first.size
        while len(batch) < MAX_JOBS_PER_TRANSACTION and size < MAX_PIECES_PER_TRANSACTION:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
            size += item.size
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._take()
            if batch:
                try:
                    self._run_batch(batch)
                finally:
                    with self._pending_lock:
                        self._pending -= sum(item.size for item in batch)

    def _run_batch(self, batch: list[_Queued]) -> None:
        conn = self._conn
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            last = conn.execute("SELECT value FROM meta WHERE key = 'last_xact'").fetchone()[0]
            txn = Txn(conn, int(last), self._pids)
            for item in batch:
                conn.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, item.job(txn)))
                    conn.execute("RELEASE job")
                except Exception as exc:  # the job fails alone; its savepoint is undone
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((False, exc))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'last_xact'", (txn.last_xact,))
            conn.execute("COMMIT")
        except Exception as exc:
            log.exception("spanlog: write transaction failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for item in batch:
                item.future.set_exception(exc)
            return
        self._pids.update(txn.new_pids)
        for item, (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)


@dataclass(frozen=True)
class Prepared:
    """What can be computed for a replace piece before the transaction (see prepare)."""

    replace: Replace
    leaf_keys: list[tuple[int, Any]]


def prepare(pieces: Sequence[Piece]) -> None:
    """Encode replace pieces and compute their index entries ahead of the writer thread.

    Runs on the caller's thread, so the writer spends its time in SQLite. A piece that meets
    a stored row in the transaction is merged there and this work is redone for it.
    """
    for piece in pieces:
        row = piece.row
        if not is_merge(row) and row.get("_object_delete") is not True:
            replace = prepare_replace(row)
            piece.prepared = Prepared(replace, leaf_keys(replace.data))


def write_pieces(txn: Txn, pieces: Sequence[Piece]) -> None:
    """Apply ``pieces`` in order on top of what is stored (a writer job)."""
    conn = txn.conn
    keys: dict[tuple[int, str], None] = {}
    for piece in pieces:
        keys[(txn.pid(piece.project_id), piece.row["id"])] = None

    # What is stored for every id the pieces touch, fetched in a few `IN` lookups.
    old: dict[tuple[int, str], tuple[int, StoredRow]] = {}
    by_pid: dict[int, list[str]] = {}
    for pid, row_id in keys:
        by_pid.setdefault(pid, []).append(row_id)
    for pid, ids in by_pid.items():
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start:start + _ID_CHUNK]
            marks = ",".join("?" * len(chunk))
            for xact, row_id, base, data in conn.execute(
                    f"SELECT xact, id, base, data FROM rows WHERE pid = ? AND id IN ({marks})",
                    (pid, *chunk)):
                old[(pid, row_id)] = (xact, StoredRow(json.loads(data), base))

    current: dict[tuple[int, str], StoredRow | None] = {k: v[1] for k, v in old.items()}
    changed: dict[tuple[int, str], None] = {}
    # Index entries computed before the transaction, for rows stored exactly as prepared.
    ready: dict[tuple[int, str], Prepared] = {}
    for piece in pieces:
        key = (txn.pid(piece.project_id), piece.row["id"])
        if piece.row.get("_object_delete") is True:
            current[key] = None
            changed[key] = None
            continue
        prepared: Prepared | None = piece.prepared
        result = apply_piece(current.get(key), piece.row,
                             prepared.replace if prepared is not None else None)
        if result is not None:
            current[key] = result
            changed[key] = None
            if prepared is not None and result.data is prepared.replace.data:
                ready[key] = prepared

    drop_terms: list[tuple[Any, ...]] = []
    drop_rows: list[tuple[int]] = []
    add_terms: list[tuple[Any, ...]] = []
    add_rows: list[tuple[Any, ...]] = []
    for key in changed:
        pid, row_id = key
        if key in old:
            old_xact, old_row = old[key]
            drop_terms.extend(row_terms(pid, old_row.data, old_xact))
            drop_rows.append((old_xact,))
        stored = current[key]
        if stored is None:
            continue
        xact = txn.next_xact()
        data = stored.data
        add_rows.append((xact, pid, row_id, data.get("root_span_id"), int(is_root(data)),
                         stored.base_digest, stored.text or dumps(data)))
        prepared = ready.get(key)
        if prepared is not None and data is prepared.replace.data:
            add_terms.extend([(pid, path, value, xact) for path, value in prepared.leaf_keys])
        else:
            add_terms.extend(row_terms(pid, data, xact))
    if drop_terms:
        conn.executemany("DELETE FROM terms WHERE pid = ? AND path = ? AND value = ? "
                         "AND xact = ?", drop_terms)
    if drop_rows:
        conn.executemany("DELETE FROM rows WHERE xact = ?", drop_rows)
    if add_rows:
        conn.executemany("INSERT INTO rows (xact, pid, id, root_span_id, is_root, base, data) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", add_rows)
    if add_terms:
        # OR IGNORE: a list may hold the same value twice, which is one index entry.
        conn.executemany("INSERT OR IGNORE INTO terms (pid, path, value, xact) "
                         "VALUES (?, ?, ?, ?)", add_terms)
