"""The SQLite engine: the default store, one file, zero setup.

WAL mode; one writer thread (``_writer.Writer``) takes every write from a queue;
reads run on two small thread pools, each thread with its own connection, so a slow query
never blocks the event loop or the writer: fetches and traces on one, within a time budget
(``Store.query_timeout``, enforced by SQLite's progress handler), and the small lookups auth
and ingest need (keys, orgs, projects) on their own, so they never wait behind a slow
fetch (docs/collector.md, "What it guarantees"). Orgs and projects are never renamed or
deleted: once looked up they are kept, as the PostgreSQL engine keeps them, so a request
reaches the lookup threads for its key only. See ``_schema`` for the tables and ``_query``
for how fetches pick an index.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from spanlog.server.rows._model import now_iso
from spanlog.server.store._aggregate import Window
from spanlog.server.store._engine import Store
from spanlog.server.store._errors import (
    DiskFull,
    NotFound,
    QueryTooSlow,
    StoreCorrupt,
    Unavailable,
)
from spanlog.server.store._records import DEFAULT_ORG, ApiKey, Org, Page, Piece, Project
from spanlog.server.store._sessions import SessionQuery
from spanlog.server.store._settings import merged
from spanlog.server.store.sqlite._pieces import prepare, prepare_rows, write_pieces
from spanlog.server.store.sqlite._query import aggregate, fetch_page, trace_rows
from spanlog.server.store.sqlite._schema import connect
from spanlog.server.store.sqlite._sessions import session_page
from spanlog.server.store.sqlite._upgrade import ensure_schema
from spanlog.server.store.sqlite._writer import Txn, Writer

T = TypeVar("T")
log = logging.getLogger("spanlog.server")
READ_THREADS = 4
# Threads for the lookups of auth and ingest (keys, orgs, projects): never behind a fetch.
LOOKUP_THREADS = 2
# Fetches and traces of one project that run at once; the others wait their turn, so one
# project's slow filters leave read threads to the other projects.
READS_PER_PROJECT = READ_THREADS // 2
# SQLite calls the progress handler every this many virtual machine steps (~10 us).
_PROGRESS_STEPS = 1000


_SQLITE_HEADER = b"SQLite format 3\0"


def _corrupt(path: str, reason: str) -> str:
    return (f"{path} is not a readable spanlog database ({reason}). Restore it from a "
            "backup, or move it aside to start with an empty one (`sqlite3 FILE .recover` "
            "may save its rows).")


def _check_header(path: str) -> None:
    """Refuse a file that is not SQLite before anything writes to it (docs/collector.md)."""
    try:
        with open(path, "rb") as f:
            header = f.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    if header and header != _SQLITE_HEADER:
        raise StoreCorrupt(_corrupt(path, "its header is not SQLite's"))


class SqliteStore(Store):
    """A :class:`Store` in one SQLite database file (created when missing)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer: Writer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._lookups: ThreadPoolExecutor | None = None
        self._closing = False
        # The connections of the read threads (for interrupt_reads).
        self._scanning: list[sqlite3.Connection] = []
        self._running = 0  # reads in _budgeted now (reads_running)
        self._turns: dict[int, asyncio.Semaphore] = {}
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._projects = {}
        self._by_name: dict[tuple[str, str], str] = {}  # (org id, name) -> project id
        self._orgs: dict[str, Org] = {}  # by name
        self._org_ids: dict[str, Org] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Create the schema if needed, start the writer thread and the readers."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        _check_header(self.path)
        try:
            setup = connect(self.path, readonly=False)
            try:
                await asyncio.to_thread(ensure_schema, setup)
            finally:
                setup.close()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            raise StoreCorrupt(_corrupt(self.path, str(exc))) from None
        self._writer = Writer(self.path)
        self._closing = False
        self._readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="spanlog-sqlite-read")
        self._lookups = ThreadPoolExecutor(LOOKUP_THREADS,
                                           thread_name_prefix="spanlog-sqlite-lookup")
        await self.org(DEFAULT_ORG, create=True)

    async def close(self) -> None:
        """Finish queued writes, then close every connection."""
        self.interrupt_reads()
        for name in ("_readers", "_lookups"):
            pool: ThreadPoolExecutor | None = getattr(self, name)
            if pool is not None:
                setattr(self, name, None)
                await asyncio.to_thread(pool.shutdown, True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await asyncio.to_thread(writer.close)

    def interrupt_reads(self) -> None:
        """Stop the fetches and traces running now (they answer 503) and refuse new ones."""
        self._closing = True
        with self._lock:
            for conn in self._scanning:
                conn.interrupt()

    @property
    def reads_running(self) -> int:
        """How many fetches, traces, sessions and aggregates run on the read threads now."""
        return self._running

    # -- plumbing ----------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A small lookup (keys, orgs, projects) on the lookup threads."""
        lookups = self._lookups
        if lookups is None:
            raise Unavailable("the store is not running")
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(lookups, lambda: fn(self._reader()))
        except RuntimeError:  # the pool shut down between the check and the submit
            raise Unavailable("the collector is shutting down") from None
        return await future

    async def _scan(self, pid: int, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A fetch or trace read of project ``pid`` on the read threads (at most
        READS_PER_PROJECT at once), stopped when it runs past ``query_timeout``
        (:class:`QueryTooSlow`), when the caller stops waiting (a client that disconnected:
        the task is cancelled) or when the store closes."""
        turn = self._turns.get(pid)
        if turn is None:
            turn = self._turns[pid] = asyncio.Semaphore(READS_PER_PROJECT)
        async with turn:
            return await self._scan_now(fn)

    async def _scan_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        readers = self._readers
        if readers is None or self._closing:
            raise Unavailable("the collector is shutting down")
        loop = asyncio.get_running_loop()
        cancelled: list[bool] = []  # made true by appending: cheaper than a threading.Event
        budget = self.query_timeout
        try:
            future = loop.run_in_executor(readers, self._budgeted, fn, budget, cancelled)
        except RuntimeError:  # the pool shut down between the check and the submit
            raise Unavailable("the collector is shutting down") from None
        try:
            return await future
        except asyncio.CancelledError:
            cancelled.append(True)  # the thread's progress handler stops the query
            raise

    def _budgeted(self, fn: Callable[[sqlite3.Connection], T], budget: float,
                  cancelled: list[bool]) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._reader()
            with self._lock:
                self._scanning.append(conn)
        deadline = time.monotonic() + budget

        def stop() -> bool:
            return self._closing or bool(cancelled) or time.monotonic() > deadline

        if stop():
            raise Unavailable("the collector is shutting down")
        conn.set_progress_handler(stop, _PROGRESS_STEPS)
        with self._lock:
            self._running += 1
            running = self._running
        try:
            log.debug("spanlog: a read started (%d running)", running)
            return fn(conn)
        except sqlite3.OperationalError as exc:
            if "interrupt" not in str(exc):
                raise
            if self._closing or cancelled:
                raise Unavailable("the collector is shutting down") from None
            raise QueryTooSlow(budget) from None
        finally:
            with self._lock:
                self._running -= 1
            conn.set_progress_handler(None, 0)
            if conn.in_transaction:  # a statement stopped inside fetch_page's BEGIN
                conn.rollback()

    async def _write(self, job: Callable[[Txn], T], size: int = 1) -> T:
        if self._writer is None:
            raise Unavailable("the store is not running")
        try:
            result: T = await asyncio.wrap_future(self._writer.submit(job, size))
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise DiskFull() from None
            raise
        return result

    # -- organizations and projects ----------------------------------------------------

    def _org(self, org: Org | None) -> Org | None:
        if org is not None:
            self._orgs[org.name] = self._org_ids[org.id] = org
        return org

    async def org(self, name: str, *, create: bool = False) -> Org | None:
        """The organization called ``name`` (created when ``create``), or None."""
        cached = self._orgs.get(name)
        if cached is not None:
            return cached

        def find(conn: sqlite3.Connection) -> Org | None:
            row = conn.execute("SELECT id, name, created FROM orgs WHERE name = ?",
                               (name,)).fetchone()
            return Org(*row) if row else None

        def make(txn: Txn) -> Org:
            found = find(txn.conn)
            if found is not None:
                return found
            org = Org(str(uuid.uuid4()), name, now_iso())
            txn.conn.execute("INSERT INTO orgs (id, name, created) VALUES (?, ?, ?)",
                             (org.id, org.name, org.created))
            return org

        found = self._org(await self._read(find))
        if found is None and create:
            found = self._org(await self._write(make))
        return found

    async def org_by_id(self, org_id: str) -> Org | None:
        """The organization with id ``org_id``, or None."""
        cached = self._org_ids.get(org_id)
        if cached is not None:
            return cached

        def find(conn: sqlite3.Connection) -> Org | None:
            row = conn.execute("SELECT id, name, created FROM orgs WHERE id = ?",
                               (org_id,)).fetchone()
            return Org(*row) if row else None
        return self._org(await self._read(find))

    def _remember(self, row: tuple[Any, ...] | None) -> Project | None:
        if row is None:
            return None
        pid, project_id, org_id, name, created = row
        project = Project(project_id, name, org_id, created)
        self._projects[project_id] = (project, pid)
        self._by_name[(org_id, name)] = project_id
        return project

    async def project(self, org_id: str, name: str, *, create: bool = False) -> Project | None:
        """The project ``name`` in ``org_id`` (created when ``create``), or None."""
        cached = self._by_name.get((org_id, name))
        if cached is not None:
            return self._projects[cached][0]
        query = "SELECT pid, id, org_id, name, created FROM projects WHERE org_id = ? AND name = ?"

        def make(txn: Txn) -> tuple[Any, ...]:
            row = txn.conn.execute(query, (org_id, name)).fetchone()
            if row is not None:
                return tuple(row)
            project_id = str(uuid.uuid4())
            created = now_iso()
            cur = txn.conn.execute(
                "INSERT INTO projects (id, org_id, name, created) VALUES (?, ?, ?, ?)",
                (project_id, org_id, name, created))
            return (cur.lastrowid, project_id, org_id, name, created)

        found = self._remember(await self._read(lambda c: c.execute(query, (org_id, name))
                                               .fetchone()))
        if found is None and create:
            found = self._remember(await self._write(make))
        return found

    async def project_by_id(self, project_id: str) -> Project | None:
        """The project with id ``project_id``, or None."""
        cached = self._projects.get(project_id)
        if cached is not None:
            return cached[0]
        return self._remember(await self._read(lambda c: c.execute(
            "SELECT pid, id, org_id, name, created FROM projects WHERE id = ?",
            (project_id,)).fetchone()))

    async def projects(self, org_id: str) -> list[Project]:
        """Every project of ``org_id``, oldest first."""
        rows = await self._read(lambda c: c.execute(
            "SELECT pid, id, org_id, name, created FROM projects WHERE org_id = ? ORDER BY pid",
            (org_id,)).fetchall())
        return [p for p in map(self._remember, rows) if p is not None]

    async def project_settings(self, project_id: str) -> dict[str, Any]:
        """The settings set on project ``project_id``."""
        pid = await self._pid(project_id)
        row = await self._read(lambda c: c.execute(
            "SELECT settings FROM project_settings WHERE pid = ?", (pid,)).fetchone())
        return dict(json.loads(row[0])) if row else {}

    async def change_project_settings(self, project_id: str,
                                      changes: dict[str, Any]) -> dict[str, Any]:
        """Apply checked ``changes`` to the project's settings; return them."""
        pid = await self._pid(project_id)

        def change(txn: Txn) -> dict[str, Any]:
            row = txn.conn.execute("SELECT settings FROM project_settings WHERE pid = ?",
                                   (pid,)).fetchone()
            settings = merged(json.loads(row[0]) if row else {}, changes)
            txn.conn.execute("INSERT OR REPLACE INTO project_settings (pid, settings) "
                             "VALUES (?, ?)", (pid, json.dumps(settings)))
            return settings
        return await self._write(change)

    # -- keys --------------------------------------------------------------------------

    @staticmethod
    def _key(row: tuple[Any, ...]) -> ApiKey:
        key_id, name, org_id, org_name, projects, created, revoked = row
        scope = tuple(json.loads(projects)) if projects is not None else None
        return ApiKey(key_id, name, org_id, org_name, scope, created, revoked)

    _KEY_QUERY = ("SELECT k.id, k.name, k.org_id, o.name, k.projects, k.created, k.revoked "
                  "FROM api_keys k JOIN orgs o ON o.id = k.org_id")

    async def key_by_hash(self, token_hash: str) -> ApiKey | None:
        """The key whose secret token hashes to ``token_hash`` (revoked ones too), or None."""
        row = await self._read(lambda c: c.execute(self._KEY_QUERY + " WHERE k.hash = ?",
                                                   (token_hash,)).fetchone())
        return self._key(row) if row else None

    async def has_keys(self) -> bool:
        """Whether any key was ever created (revoked ones count: the collector stays locked)."""
        return bool(await self._read(lambda c: c.execute(
            "SELECT EXISTS (SELECT 1 FROM api_keys)").fetchone()[0]))

    async def add_key(self, key: ApiKey, token_hash: str) -> None:
        """Store a new key under the hash of its secret token."""
        projects = json.dumps(list(key.projects)) if key.projects is not None else None
        await self._write(lambda txn: txn.conn.execute(
            "INSERT INTO api_keys (id, hash, name, org_id, projects, created, revoked) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key.id, token_hash, key.name, key.org_id, projects, key.created, key.revoked)))

    async def keys(self) -> list[ApiKey]:
        """Every key, oldest first, revoked ones included."""
        rows = await self._read(lambda c: c.execute(
            self._KEY_QUERY + " ORDER BY k.created, k.id").fetchall())
        return [self._key(row) for row in rows]

    async def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke the key ``key_id`` (:class:`NotFound` when there is none); return it."""
        def revoke(txn: Txn) -> tuple[Any, ...]:
            txn.conn.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                             (now_iso(), key_id))
            row = txn.conn.execute(self._KEY_QUERY + " WHERE k.id = ?", (key_id,)).fetchone()
            if row is None:
                raise NotFound(f"no key with id {key_id!r}")
            return tuple(row)
        return self._key(await self._write(revoke))

    # -- rows --------------------------------------------------------------------------

    prepare_rows = staticmethod(prepare_rows)

    async def write(self, pieces: Sequence[Piece], prepared: Any = None) -> None:
        """Apply ``pieces`` in order, all or nothing, and return once they are durable."""
        if not pieces:
            return
        for project_id in {p.project_id for p in pieces}:
            await self._pid(project_id)
        batch = list(pieces)
        # Encoding and index leaves are computed before the writer thread gets the job (here,
        # or in an ingest worker's prepare_rows), so that it spends its time in SQLite.
        if prepared is None:
            prepared = prepare(batch)
        await self._write(partial(write_pieces, pieces=batch, prepared=prepared),
                          size=len(batch))

    async def fetch(self, project_id: str, *, filter: str | None = None, limit: int = 50,
                    cursor: str | None = None, roots_only: bool = False,
                    since: float | None = None, until: float | None = None) -> Page:
        """Rows of a project, most recently updated first, optionally filtered."""
        pid = await self._pid(project_id)
        return await self._scan(pid, partial(fetch_page, pid=pid, project_id=project_id,
                                        filter_text=filter, limit=limit, cursor=cursor,
                                        roots_only=roots_only, since=since, until=until))

    async def sessions(self, project_id: str,
                       query: SessionQuery) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the project's sessions, latest first, and the next page's cursor."""
        pid = await self._pid(project_id)
        return await self._scan(pid, partial(session_page, pid=pid, query=query))

    async def aggregate(self, project_id: str, win: Window) -> dict[str, Any]:
        """A project's figures over a time range, in buckets (``store._aggregate``)."""
        pid = await self._pid(project_id)
        return await self._scan(pid, partial(aggregate, pid=pid, project_id=project_id,
                                             win=win))

    async def latest_xact(self, project_id: str) -> str | None:
        """The transaction id of the project's latest write (None while it has no rows)."""
        pid = await self._pid(project_id)
        value = await self._read(lambda c: c.execute(
            "SELECT max(xact) FROM rows WHERE pid = ?", (pid,)).fetchone()[0])
        return None if value is None else str(value)

    async def trace(self, project_id: str, root_span_id: str) -> list[dict[str, Any]]:
        """Every row of one trace, oldest first (by ``created``), without score averages."""
        pid = await self._pid(project_id)
        return await self._scan(pid, partial(trace_rows, pid=pid, project_id=project_id,
                                        root_span_id=root_span_id))
