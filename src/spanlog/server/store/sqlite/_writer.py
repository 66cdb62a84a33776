"""The one thread that writes to a SQLite database.

Every write (rows, projects, keys) is a job on a queue. The writer takes whatever jobs are
waiting, runs them in ONE ``BEGIN IMMEDIATE`` transaction with a savepoint per job (so a
failing job rolls back alone and the others still commit), commits, and only then resolves
the jobs' futures: a caller hears "done" only for work that is durable. Requests that arrive
while a transaction runs therefore share the next commit (group commit). What a row write
does inside its job is in ``_pieces``; after the jobs, each transaction also moves
some of the id index's entries to its big table (``_ids``).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from spanlog.server.store._errors import NotFound, Unavailable
from spanlog.server.store.sqlite._checkpoint import WRITER_BACKSTOP_PAGES, Checkpointer
from spanlog.server.store.sqlite._ids import Settler
from spanlog.server.store.sqlite._schema import connect

log = logging.getLogger("spanlog.server")

# How much waiting work one transaction takes at most: big enough to amortise the commit,
# small enough that one transaction never holds the write lock for long.
MAX_JOBS_PER_TRANSACTION = 256
MAX_PIECES_PER_TRANSACTION = 20_000
# Past this many pieces waiting, new writes get 503 + Retry-After instead of queueing: the
# clients back off and the memory held for unacknowledged work stays bounded.
MAX_PENDING_PIECES = 200_000
# Leaf paths are unbounded (ids used as metadata keys): past this many cached field ids the
# cache starts afresh (lookups of forgotten ones go back to the `fields` table).
MAX_CACHED_FIELDS = 200_000

# Committed `fields` ids: project pid -> leaf path key -> id.
FieldIds = dict[int, dict[int, int]]


class Txn:
    """What a job sees: the write connection inside the current transaction."""

    def __init__(self, conn: sqlite3.Connection, last_xact: int,
                 pids: dict[str, int], fields: FieldIds | None = None,
                 recent_ids: int = 0) -> None:
        self.conn = conn
        self.last_xact = last_xact
        # Entries in `ids_recent` (meta.ids_recent, see _ids), kept up to date by jobs.
        self.recent_ids = recent_ids
        self._pids = pids
        self.new_pids: dict[str, int] = {}
        self._fields: FieldIds = fields if fields is not None else {}
        # Ids looked up or created in this transaction: cached for good only after COMMIT,
        # since a rolled-back id may be handed to another path by another process.
        self.new_fields: FieldIds = {}

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

    def known_fields(self, pid: int) -> dict[int, int]:
        """Committed ``fields`` ids of project ``pid`` by path key (read-only; may miss some:
        ask :meth:`field_id` for those)."""
        return self._fields.get(pid) or {}

    def field_id(self, pid: int, path: int) -> int:
        """The ``fields`` id of (project ``pid``, leaf path key ``path``), created if new."""
        mine = self.new_fields.setdefault(pid, {})
        found = mine.get(path)
        if found is None:
            self.conn.execute("INSERT OR IGNORE INTO fields (pid, path) VALUES (?, ?)",
                              (pid, path))
            found = mine[path] = self.conn.execute(
                "SELECT id FROM fields WHERE pid = ? AND path = ?", (pid, path)).fetchone()[0]
        return found

    def job_failed(self) -> None:
        """A job's savepoint was rolled back: forget what it may have added to ``fields``."""
        # Ids of earlier jobs are forgotten too; they are still in the table, so asking
        # again finds them.
        self.new_fields.clear()


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
        self._fields: FieldIds = {}
        self._cached_fields = 0
        self._conn = connect(path, readonly=False)
        self._conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_BACKSTOP_PAGES}")
        self._checkpointer = Checkpointer(path)
        self._settler = Settler()
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
            meta = dict(conn.execute("SELECT key, value FROM meta "
                                     "WHERE key IN ('last_xact', 'ids_recent')"))
            held = int(meta["ids_recent"])
            txn = Txn(conn, int(meta["last_xact"]), self._pids, self._fields, held)
            for item in batch:
                conn.execute("SAVEPOINT job")
                before = txn.recent_ids
                try:
                    outcomes.append((True, item.job(txn)))
                    conn.execute("RELEASE job")
                except Exception as exc:  # the job fails alone; its savepoint is undone
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    txn.job_failed()
                    txn.recent_ids = before
                    outcomes.append((False, exc))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'last_xact'", (txn.last_xact,))
            recent = self._settler.settle(conn, txn.recent_ids)
            if recent != held:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'ids_recent'", (recent,))
            conn.execute("COMMIT")
        except Exception as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                log.warning("spanlog: the disk holding the database is full; writes are "
                            "refused (507) until space is freed")
            else:
                log.exception("spanlog: write transaction failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for item in batch:
                item.future.set_exception(exc)
            return
        self._pids.update(txn.new_pids)
        self._remember_fields(txn.new_fields)
        for item, (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)

    def _remember_fields(self, new: FieldIds) -> None:
        for pid, ids in new.items():
            if self._cached_fields > MAX_CACHED_FIELDS:
                self._fields.clear()
                self._cached_fields = 0
            self._fields.setdefault(pid, {}).update(ids)
            self._cached_fields += len(ids)
