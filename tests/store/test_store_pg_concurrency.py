"""PostgreSQL with several collectors at once: ordering, merges, migrations, failures.

Each ``PostgresStore`` here has its own connection pool, exactly as a separate collector
process has; the two-process test with real SDK clients is in ``test_store_pg_collectors``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from spanlog.server.rows._apply import StoredRow, apply_piece
from spanlog.server.store._errors import BadRequest
from spanlog.server.store._records import DEFAULT_ORG, Piece
from spanlog.server.store.postgres._schema import LATEST
from spanlog.server.store.postgres._store import PostgresStore, PostgresUnavailable

CREATED = "2024-01-01T00:00:00+00:00"


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str,
                   timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail saying ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)  # polling interval between condition checks


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores (two pools, as two collectors have) on one fresh database."""
    first = PostgresStore(pg_url, pool_size=6)
    second = PostgresStore(pg_url, pool_size=6)
    await asyncio.gather(first.start(), second.start())
    try:
        yield first, second
    finally:
        await asyncio.gather(first.close(), second.close())


async def project_id(store: PostgresStore, name: str = "Global") -> str:
    org = await store.org(DEFAULT_ORG)
    assert org is not None
    project = await store.project(org.id, name, create=True)
    assert project is not None
    return project.id


# -- transaction order ---------------------------------------------------------------------

async def _waiting_on_a_lock(admin: asyncpg.Connection) -> bool:
    count = await admin.fetchval("SELECT count(*) FROM pg_stat_activity "
                                 "WHERE wait_event_type = 'Lock' AND application_name = "
                                 "'spanlog'")
    return bool(count)


async def test_ids_are_handed_out_in_commit_order(pg_url: str) -> None:
    """A write that starts while another transaction holds the counter waits for its
    commit and gets a larger id: a reader that saw id N never later finds a new row below N."""
    store = PostgresStore(pg_url)
    await store.start()
    other = await asyncpg.connect(pg_url)
    admin = await asyncpg.connect(pg_url)
    try:
        pid_text = await project_id(store)
        pid = await other.fetchval("SELECT pid FROM spanlog_projects WHERE id = $1", pid_text)
        # "Another collector" takes an id and writes a row, but has not committed yet.
        txn = other.transaction()
        await txn.start()
        held = await other.fetchval("UPDATE spanlog_counter SET last = last + 1 "
                                    "RETURNING last")
        await other.execute("INSERT INTO spanlog_rows (pid, id, xact, is_root, data) "
                            "VALUES ($1, 'slow', $2, true, '{\"id\": \"slow\"}')", pid, held)
        write = asyncio.ensure_future(store.write([Piece(pid_text, {"id": "fast"})]))
        await wait_for(lambda: _waiting_on_a_lock(admin), "the write to wait on the counter")
        assert not write.done()
        assert (await store.fetch(pid_text)).rows == [], "nothing is visible before commit"
        await txn.commit()
        await asyncio.wait_for(write, 20)
        rows = (await store.fetch(pid_text)).rows
        assert [r["id"] for r in rows] == ["fast", "slow"]
        assert int(rows[0]["_xact_id"]) > int(rows[1]["_xact_id"]) == held
    finally:
        await other.close()
        await admin.close()
        await store.close()


async def test_a_plain_sequence_would_let_a_reader_skip_rows(pg_url: str) -> None:
    """Control for the test above: ids from a sequence are taken before commit, so a
    reader that pages past id 2 never sees the row with id 1 committed later."""
    first = await asyncpg.connect(pg_url)
    second = await asyncpg.connect(pg_url)
    try:
        await first.execute("CREATE SEQUENCE ids; CREATE TABLE t (xact bigint PRIMARY KEY)")
        slow = first.transaction()
        await slow.start()
        await first.execute("INSERT INTO t VALUES (nextval('ids'))")  # takes 1, uncommitted
        await second.execute("INSERT INTO t VALUES (nextval('ids'))")  # takes 2, commits
        seen = [r[0] for r in await second.fetch("SELECT xact FROM t ORDER BY xact")]
        await slow.commit()
        later = [r[0] for r in await second.fetch("SELECT xact FROM t WHERE xact > $1",
                                                  max(seen))]
        assert seen == [2] and later == [], "the row with id 1 is behind the reader for good"
    finally:
        await first.close()
        await second.close()


async def test_a_tail_reader_sees_every_write_while_two_collectors_write(
        stores: tuple[PostgresStore, PostgresStore], pg_url: str) -> None:
    """A reader following `xact > last seen` during concurrent writes through two stores
    sees the final version of every row: no id is ever committed behind it."""
    a, b = stores
    pid_text = await project_id(a)
    await project_id(b)
    reader = await asyncpg.connect(pg_url)
    seen: set[tuple[str, int]] = set()
    done = asyncio.Event()

    async def tail() -> None:
        high = 0
        while True:
            finished = done.is_set()
            for rec in await reader.fetch("SELECT id, xact FROM spanlog_rows WHERE xact > $1 "
                                          "ORDER BY xact", high):
                seen.add((rec["id"], rec["xact"]))
                high = rec["xact"]
            if finished:
                return
            await asyncio.sleep(0)  # let the writers run between reads

    async def writer(store: PostgresStore, n: int) -> None:
        # Mostly new rows (each one's only version must be seen), some updates of old ones.
        rand = random.Random(n)
        for i in range(40):
            ids = [f"w{n}-{i}", f"w{n}-{i}b", f"shared{rand.randrange(20)}"]
            await store.write([Piece(pid_text, {"id": row_id, "_is_merge": True,
                                                "metadata": {f"w{n}": i}}) for row_id in ids])

    try:
        follower = asyncio.ensure_future(tail())
        await asyncio.gather(*(writer(s, n) for n, s in enumerate([a, b, a, b, a, b])))
        done.set()
        await asyncio.wait_for(follower, 30)
        final = {(r["id"], r["xact"]) for r in await reader.fetch(
            "SELECT id, xact FROM spanlog_rows")}
        assert len(final) == 6 * 40 * 2 + 20
        assert final <= seen, f"rows committed behind the reader: {sorted(final - seen)[:5]}"
    finally:
        await reader.close()


# -- merges through different collectors -----------------------------------------------------

def _pieces_of(span: int) -> list[dict[str, Any]]:
    """The pieces of one span that commute: start, end, three feedbacks, a log call."""
    row_id = f"span{span}"
    return [
        {"id": row_id, "span_id": f"s{span}", "root_span_id": f"t{span}", "span_parents": None,
         "created": CREATED, "input": {"q": span}, "metadata": {"start": True},
         "metrics": {"start": 1.0}, "tags": ["start"]},
        {"id": row_id, "_is_merge": True, "output": f"answer {span}", "metrics": {"end": 2.0}},
        {"id": row_id, "_is_merge": True, "metadata": {"logged": span}, "tags": ["log"]},
        *({"id": row_id, "_is_merge": True, "scores": {f"fb{k}": k / 4}, "tags": [f"fb{k}"],
           "_audit_source": "external"} for k in range(3)),
    ]


def _expected(pieces: list[dict[str, Any]]) -> dict[str, Any]:
    stored: StoredRow | None = None
    for piece in pieces:
        stored = apply_piece(stored, piece) or stored
    assert stored is not None
    return stored.data


async def test_pieces_of_one_span_converge_across_collectors(
        stores: tuple[PostgresStore, PostgresStore]) -> None:
    """Start, end, log and feedback pieces of the same spans, sent at once in random order
    through two stores, give exactly the row one store gets from them in order."""
    a, b = stores
    pid = await project_id(a)
    await project_id(b)
    rand = random.Random(3)
    sends = []
    for span in range(40):
        for piece in _pieces_of(span):
            sends.append((rand.choice([a, b]), piece))
    rand.shuffle(sends)
    await asyncio.gather(*(s.write([Piece(pid, dict(p))]) for s, p in sends))
    rows = {r["id"]: r for r in (await a.fetch(pid, limit=1000)).rows}
    assert len(rows) == 40
    for span in range(40):
        want = _expected(_pieces_of(span))
        got = {k: v for k, v in rows[f"span{span}"].items()
               if k not in ("_xact_id", "project_id", "log_id")}
        assert sorted(got.pop("tags")) == sorted(want.pop("tags"))
        assert got == want


async def test_one_bad_request_does_not_fail_the_requests_batched_with_it(
        stores: tuple[PostgresStore, PostgresStore]) -> None:
    """A row PostgreSQL cannot store (a NUL character) fails its own request with a
    BadRequest and stores nothing of it; concurrent good requests are stored."""
    a, _ = stores
    pid = await project_id(a)
    good = [a.write([Piece(pid, {"id": f"g{i}", "output": i})]) for i in range(20)]
    bad = a.write([Piece(pid, {"id": "bad-1", "output": "fine"}),
                   Piece(pid, {"id": "bad-2", "output": "nul \x00 here"})])
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert all(r is None for r in results[:20]), results
    assert isinstance(results[20], BadRequest)
    ids = {r["id"] for r in (await a.fetch(pid, limit=100)).rows}
    assert ids == {f"g{i}" for i in range(20)}


# -- schema and startup --------------------------------------------------------------------

async def test_collectors_starting_together_migrate_once(pg_url: str) -> None:
    """Four stores starting at once on an empty database all start; each migration ran once."""
    starting = [PostgresStore(pg_url, pool_size=3) for _ in range(4)]
    try:
        await asyncio.gather(*(s.start() for s in starting))
        conn = await asyncpg.connect(pg_url)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM spanlog_schema")]
            orgs = await conn.fetchval("SELECT count(*) FROM spanlog_orgs")
        finally:
            await conn.close()
        assert versions == list(range(1, LATEST + 1))
        assert orgs == 1, "the default org is created once"
    finally:
        await asyncio.gather(*(s.close() for s in starting))


async def test_a_database_from_a_newer_spanlog_is_refused(pg_url: str) -> None:
    """A schema version this collector does not know stops it from starting, saying why."""
    first = PostgresStore(pg_url)
    await first.start()
    await first.close()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("INSERT INTO spanlog_schema VALUES (999, 'later')")
    finally:
        await conn.close()
    with pytest.raises(PostgresUnavailable, match="999.*upgrade spanlog"):
        await PostgresStore(pg_url).start()


async def test_an_unreachable_database_is_a_clear_startup_error() -> None:
    """Nothing listening: start() names the (password-redacted) URL and the cause."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = PostgresStore(f"postgresql://me:secret@127.0.0.1:{port}/db")
    with pytest.raises(PostgresUnavailable) as caught:
        await store.start()
    assert "me:***@127.0.0.1" in str(caught.value) and "secret" not in str(caught.value)


def test_configuration_is_validated_with_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad URLs, pool sizes and environment values are ValueErrors naming the setting."""
    with pytest.raises(ValueError, match="postgresql://"):
        PostgresStore("mysql://x/y")
    with pytest.raises(ValueError, match="pool_size"):
        PostgresStore("postgresql://h/db", pool_size=1)
    with pytest.raises(ValueError, match="fewer than pool_size"):
        PostgresStore("postgresql://h/db", pool_size=4, writers=4)
    monkeypatch.setenv("SPANLOG_POSTGRES_POOL_SIZE", "many")
    with pytest.raises(ValueError, match="SPANLOG_POSTGRES_POOL_SIZE"):
        PostgresStore("postgresql://h/db")
    monkeypatch.setenv("SPANLOG_POSTGRES_POOL_SIZE", "7")
    assert PostgresStore("postgres://h/db").pool_size == 7


async def test_a_rare_value_is_read_from_the_gin_index(pg_url: str) -> None:
    """Past the newest rows, an equality page comes from a bitmap scan of the GIN index
    (not a walk of the whole project), and the newest rows are checked by an index walk."""
    from spanlog.server.store.postgres._query import plan_fetch

    store = PostgresStore(pg_url)
    await store.start()
    conn = await asyncpg.connect(pg_url)
    try:
        pid_text = await project_id(store)
        for start in range(0, 10_000, 2500):
            await store.write([Piece(pid_text, {"id": f"r{i}", "metadata": {"n": i % 200}})
                               for i in range(start, start + 2500)])
        await conn.execute("ANALYZE spanlog_rows")
        pid = await conn.fetchval("SELECT pid FROM spanlog_projects WHERE id = $1", pid_text)
        plan = plan_fetch(pid, "metadata.n = 3", 50, None, False)
        assert plan.recent is not None and plan.rest is not None
        recent = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + plan.recent[0],
                                                          *plan.recent[1]))
        assert "Index Scan Backward using spanlog_rows_by_xact" in recent, recent
        low = await conn.fetchval("SELECT min(xact) FROM (SELECT xact FROM spanlog_rows "
                                  "ORDER BY xact DESC LIMIT $1) AS s", plan.recent_rows)
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_seqscan = off")
            rest = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + plan.rest[0],
                                                            *plan.rest[1], low, 50))
        assert "Bitmap Index Scan on spanlog_rows_data" in rest, rest
    finally:
        await conn.close()
        await store.close()


async def test_a_role_without_ddl_rights_can_run_a_migrated_database(pg_url: str) -> None:
    """Once the schema is current, a collector needs only row privileges: no CREATE."""
    owner = PostgresStore(pg_url)
    await owner.start()
    await owner.close()
    role = f"app_{pg_url.rsplit('/', 1)[1]}"
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'CREATE ROLE "{role}" LOGIN; '
                           f'GRANT USAGE ON SCHEMA public TO "{role}"; '
                           f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public '
                           f'TO "{role}"')
        assert not await conn.fetchval("SELECT has_schema_privilege($1, 'public', 'CREATE')",
                                       role)
    finally:
        await conn.close()
    app = PostgresStore(pg_url.replace("://spanlog@", f"://{role}@"))
    await app.start()
    try:
        pid = await project_id(app, "restricted")
        await app.write([Piece(pid, {"id": "a", "output": 1})])
        assert [r["id"] for r in (await app.fetch(pid, filter="output = 1")).rows] == ["a"]
    finally:
        await app.close()
