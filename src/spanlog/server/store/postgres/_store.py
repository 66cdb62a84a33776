"""The PostgreSQL engine: the store for teams that outgrow one machine.

Any number of collectors (on any number of machines) can serve one database at once: the
collectors keep no state of their own beyond caches of things that never change (orgs and
projects are never renamed or deleted). See ``_schema`` for the tables and why the
transaction order is safe for cursors across collectors, ``_writer`` for how
concurrent pieces of one span converge, and ``query._compile_postgres`` for filters.

Needs ``asyncpg`` (``python3 -m pip install -e '.[postgres]'``), imported only when a store starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from spanlog.server.rows._json import dumps, loads
from spanlog.server.rows._model import now_iso
from spanlog.server.store._aggregate import Window
from spanlog.server.store._engine import Store
from spanlog.server.store._errors import NotFound, QueryTooSlow, Unavailable
from spanlog.server.store._reading import (
    MAX_TRACE_SPANS,
    api_row,
    check_trace_size,
    parse_cursor,
    trace_order,
)
from spanlog.server.store._records import DEFAULT_ORG, ApiKey, Org, Page, Piece, Project
from spanlog.server.store._scores import with_score_averages
from spanlog.server.store._sessions import SessionQuery
from spanlog.server.store._settings import merged
from spanlog.server.store.postgres._numbers import from_jsonb
from spanlog.server.store.postgres._query import (
    aggregate,
    check_limit,
    fetch_rows,
    plan_fetch,
    root_scores,
    root_totals,
)
from spanlog.server.store.postgres._schema import SchemaTooNew, migrate
from spanlog.server.store.postgres._sessions import session_page
from spanlog.server.store.postgres._writer import (
    PieceAt,
    Writer,
    connection_errors,
    unavailable,
)

T = TypeVar("T")
log = logging.getLogger("spanlog.server")
_INSTALL = "python3 -m pip install -e '.[postgres]'"
DEFAULT_POOL_SIZE = 10
DEFAULT_WRITERS = 2


class PostgresUnavailable(RuntimeError):
    """The store cannot start: the database is unreachable, misconfigured or too new."""


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def check_url(url: str) -> str:
    """``url`` if it is a PostgreSQL URL (``postgresql://...``), else a clear ValueError."""
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("postgres",
                                                                            "postgresql"):
        raise ValueError(f"PostgreSQL URL must look like postgresql://user:password@host:5432/"
                         f"dbname, got {redact(str(url))!r}")
    return url


def _setting(value: int | None, env: str, default: int, minimum: int) -> int:
    if value is None:
        raw = os.environ.get(env, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{env}: must be an integer, got {raw!r}") from None
        where = env
    else:
        where = env.lower().removeprefix("spanlog_postgres_")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}: must be an integer >= {minimum}, got {value!r}")
    return value


class PostgresStore(Store):
    """A :class:`Store` in a PostgreSQL database (schema created and migrated on start).

    ``pool_size`` (default ``$SPANLOG_POSTGRES_POOL_SIZE`` or 10) bounds this collector's
    connections; ``writers`` (default ``$SPANLOG_POSTGRES_WRITERS`` or 2, fewer than
    ``pool_size``) is how many write transactions it runs at once.
    """

    def __init__(self, url: str, *, pool_size: int | None = None,
                 writers: int | None = None) -> None:
        self.url = check_url(url)
        self.pool_size = _setting(pool_size, "SPANLOG_POSTGRES_POOL_SIZE", DEFAULT_POOL_SIZE, 2)
        self.writers = _setting(writers, "SPANLOG_POSTGRES_WRITERS", DEFAULT_WRITERS, 1)
        if self.writers >= self.pool_size:
            raise ValueError(f"writers ({self.writers}) must be fewer than pool_size "
                             f"({self.pool_size}): reads need connections too")
        self._pool: Any = None
        self._writer: Writer | None = None
        self._projects = {}
        self._by_name: dict[tuple[str, str], str] = {}
        self._orgs: dict[str, Org] = {}  # by name
        self._org_ids: dict[str, Org] = {}
        # The fetches and traces running now (interrupt_reads cancels them).
        self._reads: set[asyncio.Future[Any]] = set()
        # Fetches and traces that hold a connection at once: the pool keeps the writers'
        # connections and two more for the lookups of auth and ingest, which never wait
        # behind slow reads (docs/collector.md, "What it guarantees").
        self._read_turns: asyncio.Semaphore | None = None
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, migrate the schema (under a lock: safe with collectors starting at
        once), and start the writer tasks."""
        try:
            import asyncpg
        except ImportError:
            raise PostgresUnavailable(f"the PostgreSQL store needs asyncpg: {_INSTALL}") from None

        where = redact(self.url)
        try:
            # jit off: it costs more than it saves on the short queries a collector runs.
            # force_custom_plan: asyncpg prepares every statement, and after five runs
            # PostgreSQL may switch to a generic plan that ignores the values (a LIMIT of 500
            # planned as "unknown" turns a 2 ms index walk into an 80 ms sort of the project).
            self._closing = False
            self._read_turns = asyncio.Semaphore(max(1, self.pool_size - self.writers - 2))
            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.pool_size,
                server_settings={"jit": "off", "plan_cache_mode": "force_custom_plan",
                                 "application_name": "spanlog"})
        except (*connection_errors(), asyncpg.PostgresError) as exc:
            raise PostgresUnavailable(f"cannot connect to PostgreSQL at {where}: {exc}") from exc
        try:
            async with self._pool.acquire() as conn:
                encoding = await conn.fetchval("SHOW server_encoding")
                if encoding != "UTF8":
                    raise PostgresUnavailable(
                        f"the database at {where} uses encoding {encoding}; spanlog needs "
                        "UTF8 (CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)")
                await migrate(conn)
            self._writer = Writer(self._pool, self.writers)
            await self.org(DEFAULT_ORG, create=True)
        except SchemaTooNew as exc:
            await self._close_pool()
            raise PostgresUnavailable(str(exc)) from None
        except BaseException:
            await self._close_pool()
            raise

    def interrupt_reads(self) -> None:
        """Cancel the fetches and traces running now (they answer 503) and refuse new ones."""
        self._closing = True
        for read in list(self._reads):
            read.cancel()

    async def close(self) -> None:
        """Finish queued writes, then close every connection."""
        self.interrupt_reads()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.close()
        await self._close_pool()

    async def _close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def reads_running(self) -> int:
        """How many fetches, traces, sessions and aggregates run now (hold a connection)."""
        return len(self._reads)

    # -- plumbing ----------------------------------------------------------------------

    async def _query(self, method: str, sql: str, *args: Any) -> Any:
        pool = self._pool
        if pool is None:
            raise Unavailable("the store is not running")
        try:
            async with pool.acquire() as conn:
                return await getattr(conn, method)(sql, *args)
        except connection_errors() as exc:
            raise unavailable(exc) from None

    async def _bounded(self, work: Callable[[], Awaitable[T]]) -> T:
        """A fetch or trace read, cancelled when it runs past ``query_timeout``
        (:class:`QueryTooSlow`), when the caller stops waiting (a client that disconnected)
        or when the store closes. asyncpg cancels the statement on the server when the
        awaiting task is cancelled (docs/collector.md, "What it guarantees")."""
        if self._closing:
            raise Unavailable("the collector is shutting down")
        budget = self.query_timeout
        if self._read_turns is None:
            raise Unavailable("the store is not running")
        async with self._read_turns:
            if self._closing:  # the collector began to stop while this read waited its turn
                raise Unavailable("the collector is shutting down")
            return await self._bounded_now(work, budget)

    async def _bounded_now(self, work: Callable[[], Awaitable[T]], budget: float) -> T:
        read = asyncio.ensure_future(work())
        self._reads.add(read)
        log.debug("spanlog: a read started (%d running)", len(self._reads))
        try:
            done, _ = await asyncio.wait({read}, timeout=budget)
            if not done:
                read.cancel()
                await asyncio.wait({read})
                raise QueryTooSlow(budget)
            if read.cancelled():
                raise Unavailable("the collector is shutting down")
            return read.result()
        finally:
            self._reads.discard(read)
            if not read.done():  # this task was cancelled: the client is gone
                read.cancel()

    # -- organizations and projects ----------------------------------------------------

    def _org(self, rec: Any) -> Org | None:
        if rec is None:
            return None
        org = Org(rec["id"], rec["name"], rec["created"])
        self._orgs[org.name] = self._org_ids[org.id] = org
        return org

    async def org(self, name: str, *, create: bool = False) -> Org | None:
        """The organization called ``name`` (created when ``create``), or None."""
        cached = self._orgs.get(name)
        if cached is not None:
            return cached
        query = "SELECT id, name, created FROM spanlog_orgs WHERE name = $1"
        found = self._org(await self._query("fetchrow", query, name))
        if found is None and create:
            # Another collector may create it at the same moment: the name is unique.
            await self._query("execute", "INSERT INTO spanlog_orgs (id, name, created) "
                              "VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                              str(uuid.uuid4()), name, now_iso())
            found = self._org(await self._query("fetchrow", query, name))
        return found

    async def org_by_id(self, org_id: str) -> Org | None:
        """The organization with id ``org_id``, or None."""
        cached = self._org_ids.get(org_id)
        if cached is not None:
            return cached
        return self._org(await self._query(
            "fetchrow", "SELECT id, name, created FROM spanlog_orgs WHERE id = $1", org_id))

    def _remember(self, rec: Any) -> Project | None:
        if rec is None:
            return None
        project = Project(rec["id"], rec["name"], rec["org_id"], rec["created"])
        self._projects[project.id] = (project, int(rec["pid"]))
        self._by_name[(project.org_id, project.name)] = project.id
        return project

    _PROJECT = "SELECT pid, id, org_id, name, created FROM spanlog_projects"

    async def project(self, org_id: str, name: str, *, create: bool = False) -> Project | None:
        """The project ``name`` in ``org_id`` (created when ``create``), or None."""
        cached = self._by_name.get((org_id, name))
        if cached is not None:
            return self._projects[cached][0]
        query = self._PROJECT + " WHERE org_id = $1 AND name = $2"
        found = self._remember(await self._query("fetchrow", query, org_id, name))
        if found is None and create:
            await self._query(
                "execute", "INSERT INTO spanlog_projects (id, org_id, name, created) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, name) DO NOTHING",
                str(uuid.uuid4()), org_id, name, now_iso())
            found = self._remember(await self._query("fetchrow", query, org_id, name))
        return found

    async def project_by_id(self, project_id: str) -> Project | None:
        """The project with id ``project_id``, or None."""
        cached = self._projects.get(project_id)
        if cached is not None:
            return cached[0]
        return self._remember(await self._query("fetchrow", self._PROJECT + " WHERE id = $1",
                                                project_id))

    async def projects(self, org_id: str) -> list[Project]:
        """Every project of ``org_id``, oldest first."""
        recs = await self._query("fetch", self._PROJECT + " WHERE org_id = $1 ORDER BY pid",
                                 org_id)
        return [p for p in map(self._remember, recs) if p is not None]

    async def project_settings(self, project_id: str) -> dict[str, Any]:
        """The settings set on project ``project_id``."""
        pid = await self._pid(project_id)
        value = await self._query("fetchval", "SELECT settings::text FROM "
                                  "spanlog_project_settings WHERE pid = $1", pid)
        return dict(json.loads(value)) if value is not None else {}

    async def change_project_settings(self, project_id: str,
                                      changes: dict[str, Any]) -> dict[str, Any]:
        """Apply checked ``changes`` to the project's settings; return them."""
        pid = await self._pid(project_id)
        pool = self._pool
        if pool is None:
            raise Unavailable("the store is not running")
        try:
            async with pool.acquire() as conn, conn.transaction():
                # The row lock (or, for a first setting, the insert) orders concurrent changes.
                await conn.execute("INSERT INTO spanlog_project_settings (pid, settings) "
                                   "VALUES ($1, '{}') ON CONFLICT (pid) DO NOTHING", pid)
                stored = await conn.fetchval("SELECT settings::text FROM "
                                             "spanlog_project_settings WHERE pid = $1 "
                                             "FOR UPDATE", pid)
                settings = merged(json.loads(stored), changes)
                await conn.execute("UPDATE spanlog_project_settings SET settings = $2::jsonb "
                                   "WHERE pid = $1", pid, json.dumps(settings))
        except connection_errors() as exc:
            raise unavailable(exc) from None
        return settings

    # -- keys --------------------------------------------------------------------------

    _KEY = ("SELECT k.id, k.name, k.org_id, o.name AS org_name, k.projects, k.created, "
            "k.revoked FROM spanlog_keys AS k JOIN spanlog_orgs AS o ON o.id = k.org_id")

    @staticmethod
    def _key(rec: Any) -> ApiKey:
        projects = rec["projects"]
        scope = tuple(json.loads(projects)) if projects is not None else None
        return ApiKey(rec["id"], rec["name"], rec["org_id"], rec["org_name"], scope,
                      rec["created"], rec["revoked"])

    async def key_by_hash(self, token_hash: str) -> ApiKey | None:
        """The key whose secret token hashes to ``token_hash`` (revoked ones too), or None."""
        rec = await self._query("fetchrow", self._KEY + " WHERE k.hash = $1", token_hash)
        return self._key(rec) if rec is not None else None

    async def has_keys(self) -> bool:
        """Whether any key was ever created (revoked ones count: the collector stays locked)."""
        return bool(await self._query("fetchval",
                                      "SELECT EXISTS (SELECT 1 FROM spanlog_keys)"))

    async def add_key(self, key: ApiKey, token_hash: str) -> None:
        """Store a new key under the hash of its secret token."""
        projects = json.dumps(list(key.projects)) if key.projects is not None else None
        await self._query(
            "execute", "INSERT INTO spanlog_keys (id, hash, name, org_id, projects, created, "
            "revoked) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)",
            key.id, token_hash, key.name, key.org_id, projects, key.created, key.revoked)

    async def keys(self) -> list[ApiKey]:
        """Every key, oldest first, revoked ones included."""
        recs = await self._query("fetch", self._KEY + " ORDER BY k.created, k.id")
        return [self._key(rec) for rec in recs]

    async def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke the key ``key_id`` (:class:`NotFound` when there is none); return it."""
        await self._query("execute", "UPDATE spanlog_keys SET revoked = $1 "
                          "WHERE id = $2 AND revoked IS NULL", now_iso(), key_id)
        rec = await self._query("fetchrow", self._KEY + " WHERE k.id = $1", key_id)
        if rec is None:
            raise NotFound(f"no key with id {key_id!r}")
        return self._key(rec)

    # -- rows --------------------------------------------------------------------------

    async def write(self, pieces: Sequence[Piece], prepared: Any = None) -> None:
        """Apply ``pieces`` in order, all or nothing, and return once they are durable."""
        assert prepared is None, "this engine has no prepare_rows"
        if not pieces:
            return
        resolved: list[PieceAt] = []
        for piece in pieces:
            resolved.append((await self._pid(piece.project_id), piece.row))
        if self._writer is None:
            raise Unavailable("the store is not running")
        await self._writer.write(resolved)

    async def fetch(self, project_id: str, *, filter: str | None = None, limit: int = 50,
                    cursor: str | None = None, roots_only: bool = False,
                    since: float | None = None, until: float | None = None) -> Page:
        """Rows of a project, most recently updated first, optionally filtered."""
        pid = await self._pid(project_id)
        limit = check_limit(limit)
        plan = plan_fetch(pid, filter, limit, parse_cursor(cursor), roots_only, project_id,
                          since, until)
        pool = self._pool
        if pool is None:
            raise Unavailable("the store is not running")
        averages: dict[tuple[str, str], dict[str, float]] = {}
        totals: dict[str, dict[str, Any]] = {}
        decoded: list[dict[str, Any]] = []

        async def read() -> list[Any]:
            nonlocal averages, totals, decoded
            async with pool.acquire() as conn:
                found = await fetch_rows(conn, plan, limit)
                if roots_only and found:
                    decoded = [loads(data) for _, data in found]
                    averages = await root_scores(conn, pid, [
                        (row["root_span_id"], row["id"]) for row in decoded
                        if isinstance(row.get("root_span_id"), str)])
                    totals = await root_totals(conn, pid, [
                        (row.get("root_span_id"), row["id"]) for row in decoded])
                return list(found)

        try:
            found = await self._bounded(read)
        except connection_errors() as exc:
            raise unavailable(exc) from None
        # jsonb's text is a non-empty object without these fields: splice them in as text,
        # so the API can answer without decoding and re-encoding every row.
        tail = f',"project_id":{json.dumps(project_id)},"log_id":"g"}}'
        if not roots_only:
            raw = [f'{from_jsonb(data)[:-1]},"_xact_id":"{xact}"{tail}' for xact, data in found]
        else:
            raw = []
            for (xact, data), row in zip(found, decoded, strict=True):
                root = row.get("root_span_id")
                average = averages.get((root, row["id"])) if isinstance(root, str) else None
                if average is None:  # a root span without a root_span_id: a trace of one
                    average = with_score_averages([row])[0]["scores_avg"]
                raw.append(f'{from_jsonb(data)[:-1]},"_xact_id":"{xact}",'
                           f'"scores_avg":{dumps(average)},'
                           f'"trace_totals":{dumps(totals[row["id"]])}{tail}')
        return Page(None, str(found[-1][0]) if len(found) == limit else None, raw=raw)

    async def sessions(self, project_id: str,
                       query: SessionQuery) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the project's sessions, latest first, and the next page's cursor."""
        pid = await self._pid(project_id)
        pool = self._pool
        if pool is None:
            raise Unavailable("the store is not running")

        async def read() -> tuple[list[dict[str, Any]], str | None]:
            async with pool.acquire() as conn:
                return await session_page(conn, pid, query)

        try:
            return await self._bounded(read)
        except connection_errors() as exc:
            raise unavailable(exc) from None

    async def aggregate(self, project_id: str, win: Window) -> dict[str, Any]:
        """A project's figures over a time range, in buckets (``store._aggregate``)."""
        pid = await self._pid(project_id)
        pool = self._pool
        if pool is None:
            raise Unavailable("the store is not running")

        async def read() -> dict[str, Any]:
            async with pool.acquire() as conn:
                return await aggregate(conn, pid, project_id, win)

        try:
            return await self._bounded(read)
        except connection_errors() as exc:
            raise unavailable(exc) from None

    async def latest_xact(self, project_id: str) -> str | None:
        """The transaction id of the project's latest write (None while it has no rows)."""
        pid = await self._pid(project_id)
        value = await self._query("fetchval", "SELECT max(xact) FROM spanlog_rows "
                                  "WHERE pid = $1", pid)
        return None if value is None else str(value)

    async def trace(self, project_id: str, root_span_id: str) -> list[dict[str, Any]]:
        """Every row of one trace, oldest first (by ``created``), without score averages."""
        pid = await self._pid(project_id)
        recs = await self._bounded(lambda: self._query(
            "fetch", "SELECT xact, data FROM spanlog_rows WHERE pid = $1 AND root_span_id = $2 "
            "LIMIT $3", pid, root_span_id, MAX_TRACE_SPANS + 1))
        check_trace_size(len(recs), root_span_id)

        def decode() -> list[dict[str, Any]]:
            rows = [api_row(rec["xact"], rec["data"], project_id) for rec in recs]
            rows.sort(key=trace_order)
            return rows
        # Decoding thousands of spans is CPU work: not on the event loop (docs/collector.md).
        return await asyncio.to_thread(decode)
