"""Writing rows to PostgreSQL: batched transactions, merges under row locks, ordered ids.

A collector queues each write request as a job; a few writer tasks each take whatever jobs
are waiting and apply them in ONE transaction (the commit is the expensive part, so it is
shared), then resolve the jobs' futures: a caller hears "done" only for durable work.

One transaction, in this order, so that several collectors on one database stay correct:

1. ``SELECT ... FOR UPDATE`` the stored rows the pieces touch, in (pid, id) order: a
   concurrent writer of the same span waits here, then reads the version this one commits,
   so pieces arriving through different collectors merge instead of overwriting each other.
   Every writer locks in the same order, so two writers cannot deadlock on rows.
2. Merge in Python with :func:`spanlog.server.rows._apply.apply_piece`, exactly as SQLite does.
3. Take ids from ``spanlog_counter`` (its row lock is held until commit, so ids are handed
   out in commit order; see ``_schema``), then update and insert the rows, and replace
   their ``spanlog_spans`` entries (``store._facts``).
   Comment rows are placed in their target's trace (``store._comments.link_comment``) only
   after the counter is taken: holding it, this transaction sees every earlier writer's commit,
   so a comment and its target written at once through two collectors cannot both miss
   each other. A row that got its first ``root_span_id`` takes in the comments that waited
   for it; they are rewritten with ids after the batch's own.
4. A row another collector created after step 1 makes the insert find a conflict
   (``ON CONFLICT DO NOTHING`` inserts fewer rows than asked): the transaction is rolled
   back and run again, now finding and locking that row. Deadlocks and serialization
   failures are retried the same way.

A batch that fails for a reason of its own data (a string PostgreSQL cannot store) is split
and its jobs run one by one, so one bad request does not fail the others batched with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spanlog.server.rows._apply import StoredRow, apply_piece
from spanlog.server.rows._json import dumps, loads
from spanlog.server.rows._model import is_root
from spanlog.server.store._comments import link_comment, link_waiting, waiting_comments
from spanlog.server.store._errors import BadRequest, DiskFull, Unavailable
from spanlog.server.store._facts import span_facts
from spanlog.server.store.postgres._numbers import to_jsonb
from spanlog.server.store.postgres._schema import replace_spans

log = logging.getLogger("spanlog.server")

# How much waiting work one transaction takes at most: enough to amortise the commit, little
# enough that the counter lock (held from the id assignment to the commit) is short.
MAX_JOBS_PER_TRANSACTION = 256
MAX_PIECES_PER_TRANSACTION = 5_000
# Past this many pieces waiting, new writes get 503 + Retry-After instead of queueing.
MAX_PENDING_PIECES = 200_000
MAX_ATTEMPTS = 30

_LOCK_ROWS = """
SELECT r.pid, r.id, r.base, r.data FROM spanlog_rows AS r
JOIN unnest($1::bigint[], $2::text[]) AS k(pid, id) ON r.pid = k.pid AND r.id = k.id
ORDER BY r.pid, r.id FOR UPDATE OF r
"""
_DELETE = """
DELETE FROM spanlog_rows AS r USING unnest($1::bigint[], $2::text[]) AS d(pid, id)
WHERE r.pid = d.pid AND r.id = d.id
"""
_TAKE_IDS = "UPDATE spanlog_counter SET last = last + $1 WHERE one RETURNING last"
_ROWS = ("unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::boolean[], "
         "$6::text[], $7::text[]) AS u(pid, id, xact, root, is_root, base, data)")
_UPDATE = f"""
UPDATE spanlog_rows AS r SET xact = u.xact, root_span_id = u.root, is_root = u.is_root,
    base = u.base, data = u.data::jsonb
FROM {_ROWS} WHERE r.pid = u.pid AND r.id = u.id
"""
_INSERT = f"""
INSERT INTO spanlog_rows (pid, id, xact, root_span_id, is_root, base, data)
SELECT u.pid, u.id, u.xact, u.root, u.is_root, u.base, u.data::jsonb FROM {_ROWS}
ON CONFLICT (pid, id) DO NOTHING
"""

_TARGETS = """
SELECT r.pid, r.id, r.root_span_id, r.data -> 'span_id' AS span_id FROM spanlog_rows AS r
JOIN unnest($1::bigint[], $2::text[]) AS k(pid, id) ON r.pid = k.pid AND r.id = k.id
"""
_WAITING = """
SELECT c.pid, c.id, c.origin_id, c.base, c.data FROM spanlog_rows AS c
JOIN unnest($1::bigint[], $2::text[]) AS k(pid, id) ON c.pid = k.pid AND c.origin_id = k.id
WHERE c.root_span_id IS NULL AND c.origin_id IS NOT NULL
ORDER BY c.pid, c.id FOR UPDATE OF c
"""

Key = tuple[int, str]
PieceAt = tuple[int, dict[str, Any]]  # (project pid, piece row)


class _Conflict(Exception):
    """A row appeared between the lock step and the insert: run the transaction again."""


def _retryable() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (_Conflict, asyncpg.DeadlockDetectedError, asyncpg.SerializationError,
            asyncpg.UniqueViolationError)


def connection_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the database cannot be reached now (HTTP 503, the client retries)."""
    import asyncpg

    return (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
            asyncpg.exceptions.OperatorInterventionError,
            asyncpg.exceptions.InsufficientResourcesError)


# What a PostgreSQL error class of "insufficient resources" (53) or "operator intervention"
# (57) says ran out or happened, by SQLSTATE; the database is reachable in every case.
_REFUSALS = {
    "53000": "is out of resources",
    "53200": "is out of memory",
    "53300": "has too many connections (max_connections)",
    "53400": "reached a configuration limit",
    "57000": "was stopped by its operator",
    "57014": "cancelled the statement",
    "57P01": "is shutting down",
    "57P02": "is restarting after a crash",
    "57P03": "is starting up or shutting down and takes no connections yet",
    "57P04": "was dropped",
}


def unavailable(exc: BaseException) -> Unavailable:
    """The answer to one of :func:`connection_errors`: :class:`DiskFull` (HTTP 507) for
    PostgreSQL's disk_full (SQLSTATE 53100, what a full file system gives), else 503 saying
    what happened: a refusal by SQLSTATE (:data:`_REFUSALS`), or no connection at all."""
    state = getattr(exc, "sqlstate", None)
    if state == "53100":
        return DiskFull()
    refusal = _REFUSALS.get(state) if isinstance(state, str) else None
    if refusal is not None:
        return Unavailable(f"the database {refusal} (SQLSTATE {state}): {exc}")
    return Unavailable(f"the database is unreachable: {exc}")


def _columns(items: list[tuple[Key, int, StoredRow]]) -> list[list[Any]]:
    cols: list[list[Any]] = [[], [], [], [], [], [], []]
    for (pid, row_id), xact, stored in items:
        data = stored.data
        try:
            text = to_jsonb(stored.text or dumps(data))
        except ValueError as exc:  # NaN or infinity somewhere in the row
            raise BadRequest(f"row {row_id!r}: {exc}") from None
        for col, value in zip(cols, (pid, row_id, xact, data.get("root_span_id"),
                                     is_root(data), stored.base_digest, text), strict=True):
            col.append(value)
    return cols


async def apply_batch(conn: Any, pieces: Sequence[PieceAt]) -> None:
    """Apply ``pieces`` in order inside the caller's transaction on ``conn``."""
    keys: dict[Key, None] = {}
    for pid, row in pieces:
        keys[(pid, row["id"])] = None
    ordered = sorted(keys)
    old: dict[Key, StoredRow] = {}
    for rec in await conn.fetch(_LOCK_ROWS, [k[0] for k in ordered], [k[1] for k in ordered]):
        old[(rec["pid"], rec["id"])] = StoredRow(loads(rec["data"]), rec["base"])

    current: dict[Key, StoredRow | None] = dict(old)
    changed: dict[Key, None] = {}
    for pid, row in pieces:
        key = (pid, row["id"])
        if row.get("_object_delete") is True:
            current[key] = None
            changed[key] = None
            continue
        result = apply_piece(current.get(key), row)
        if result is not None:
            current[key] = result
            changed[key] = None

    gone = [k for k in changed if current[k] is None and k in old]
    if gone:
        await conn.execute(_DELETE, [k[0] for k in gone], [k[1] for k in gone])
        await replace_spans(conn, gone, [])
    kept = [k for k in changed if current[k] is not None]
    if not kept:
        return
    # From here to the commit this transaction holds the counter: keep it short.
    last = int(await conn.fetchval(_TAKE_IDS, len(kept)))
    first = last - len(kept) + 1
    waited = await _link_comments(conn, old, current, kept)
    if waited:
        # Still holding the counter: these ids follow the batch's own.
        await conn.fetchval(_TAKE_IDS, len(waited))
    updates: list[tuple[Key, int, StoredRow]] = []
    inserts: list[tuple[Key, int, StoredRow]] = []
    for i, key in enumerate(kept):
        stored = current[key]
        assert stored is not None
        (updates if key in old else inserts).append((key, first + i, stored))
    for i, (key, stored) in enumerate(waited, start=last + 1):
        updates.append((key, i, stored))
    if updates:
        await conn.execute(_UPDATE, *_columns(updates))
    if inserts:
        status = await conn.execute(_INSERT, *_columns(inserts))
        if int(status.split()[-1]) != len(inserts):
            raise _Conflict()
    await _write_spans(conn, updates, inserts)


async def _write_spans(conn: Any, updates: list[tuple[Key, int, StoredRow]],
                       inserts: list[tuple[Key, int, StoredRow]]) -> None:
    """Replace the ``spanlog_spans`` entries (and rollups) of the rows just written."""
    entries = []
    for (pid, row_id), _, stored in (*updates, *inserts):
        facts = span_facts(stored.data)
        if facts is not None:
            entries.append((pid, row_id, stored.data.get("root_span_id"), *facts))
    await replace_spans(conn, [key for key, _, _ in updates], entries)


async def _link_comments(conn: Any, old: dict[Key, StoredRow],
                         current: dict[Key, StoredRow | None],
                         kept: list[Key]) -> list[tuple[Key, StoredRow]]:
    """Put comment rows into their target's trace, whichever of the two arrived first.

    1. A comment written now whose target has a trace (stored, or in this batch) joins it
       (``current`` is updated in place).
    2. A row that got its first ``root_span_id`` now takes in the comments stored earlier
       that waited for it: returned, to be rewritten after the batch's own rows.
    """
    waiting = waiting_comments(current, kept)
    if waiting:
        lookup = sorted({t for t in waiting.values() if t not in current})
        found: dict[Key, dict[str, Any]] = {}
        if lookup:
            for rec in await conn.fetch(_TARGETS, [k[0] for k in lookup],
                                        [k[1] for k in lookup]):
                span = rec["span_id"]
                found[(rec["pid"], rec["id"])] = {
                    "root_span_id": rec["root_span_id"],
                    "span_id": None if span is None else json.loads(span)}
        link_waiting(current, waiting, found)

    gained = sorted(key for key in kept if (stored := current[key]) is not None
                    and stored.data.get("root_span_id") is not None
                    and (key not in old or old[key].data.get("root_span_id") is None))
    if not gained:
        return []
    out: list[tuple[Key, StoredRow]] = []
    written = set(kept)
    for rec in await conn.fetch(_WAITING, [k[0] for k in gained], [k[1] for k in gained]):
        key = (rec["pid"], rec["id"])
        if key in written:  # written in this batch: step 1 saw it
            continue
        target_row = current[(rec["pid"], rec["origin_id"])]
        linked = link_comment(StoredRow(loads(rec["data"]), rec["base"]),
                              target_row.data if target_row is not None else None)
        if linked is not None:
            out.append((key, linked))
    return out


@dataclass
class _Job:
    pieces: list[PieceAt]
    future: asyncio.Future[None]


class Writer:
    """Writer tasks that apply queued jobs in shared transactions on a connection pool."""

    def __init__(self, pool: Any, workers: int) -> None:
        self._pool = pool
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._pending = 0
        self._closed = False
        self._tasks = [asyncio.get_running_loop().create_task(self._run(), name=f"spanlog-pg-{i}")
                       for i in range(workers)]

    async def write(self, pieces: list[PieceAt]) -> None:
        """Apply ``pieces`` in one transaction (maybe shared); return once committed."""
        if self._closed:
            raise Unavailable("the collector is shutting down")
        if self._pending > MAX_PENDING_PIECES:
            raise Unavailable(f"the collector is overloaded: {self._pending} rows are waiting "
                              "to be written")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # If the caller is gone (cancelled), nobody reads the outcome: mark it read.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending += len(pieces)
        self._queue.put_nowait(_Job(pieces, future))
        # Shielded: a client that hangs up does not cancel a write other jobs share.
        await asyncio.shield(future)

    async def close(self) -> None:
        """Finish the queued jobs, then stop the writer tasks."""
        if self._closed:
            return
        self._closed = True
        for _ in self._tasks:
            self._queue.put_nowait(None)
        await asyncio.gather(*self._tasks)

    def _take(self, first: _Job) -> list[_Job]:
        batch, size = [first], len(first.pieces)
        while (len(batch) < MAX_JOBS_PER_TRANSACTION and size < MAX_PIECES_PER_TRANSACTION
               and not self._queue.empty()):
            item = self._queue.get_nowait()
            if item is None:  # a stop marker: leave it for this or another task
                self._queue.put_nowait(None)
                break
            batch.append(item)
            size += len(item.pieces)
        return batch

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = self._take(first)
            try:
                await self._run_batch(batch)
            except Exception:  # never lose the task: each job already has its outcome
                log.exception("spanlog: postgres writer failed")
            finally:
                self._pending -= sum(len(job.pieces) for job in batch)

    async def _run_batch(self, batch: list[_Job]) -> None:
        try:
            await self.commit([p for job in batch for p in job.pieces])
        except Unavailable as exc:
            for job in batch:
                _settle(job, exc)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            # Find the job the failure belongs to: each alone in its own transaction.
            for job in batch:
                try:
                    await self.commit(job.pieces)
                except Exception as alone:
                    _settle(job, alone)
                else:
                    _settle(job, None)
        else:
            for job in batch:
                _settle(job, None)

    async def commit(self, pieces: list[PieceAt]) -> None:
        """Apply ``pieces`` in one transaction, retrying conflicts; map database errors."""
        import asyncpg

        retryable = _retryable()
        try:
            async with self._pool.acquire() as conn:
                for attempt in range(1, MAX_ATTEMPTS + 1):
                    try:
                        async with conn.transaction(isolation="read_committed"):
                            await apply_batch(conn, pieces)
                        return
                    except retryable:
                        if attempt == MAX_ATTEMPTS:
                            raise Unavailable("too many concurrent writes to the same rows; "
                                              "try again") from None
                        # Jitter, so the writers that collided do not collide again.
                        await asyncio.sleep(random.uniform(0, 0.002 * attempt))
        except asyncpg.DataError as exc:
            raise BadRequest(f"a row cannot be stored in PostgreSQL: {exc}") from None
        except connection_errors() as exc:
            answer = unavailable(exc)
            if isinstance(answer, DiskFull):
                log.warning("spanlog: the disk holding the PostgreSQL database is full; "
                            "writes are refused (507) until space is freed: %s", exc)
            raise answer from None


def _settle(job: _Job, error: BaseException | None) -> None:
    if job.future.done():
        return
    if error is None:
        job.future.set_result(None)
    else:
        job.future.set_exception(error)
