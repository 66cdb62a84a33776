"""``spanlog migrate --from sqlite:PATH --to postgres:URL`` on real stores of both engines."""

from __future__ import annotations

import asyncio
import io
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pg_cluster import Cluster, new_database

from spanlog.server.commands._migrate import MigrationError, migrate
from spanlog.server.store._engine import Store
from spanlog.server.store._records import DEFAULT_ORG, ApiKey, Piece
from spanlog.server.store.postgres._store import PostgresStore
from spanlog.server.store.sqlite._store import SqliteStore

ROWS = 100_000


def _row(i: int) -> dict[str, Any]:
    return {"id": f"r{i}", "span_id": f"{i:016x}", "root_span_id": f"{i // 3:032x}",
            "span_parents": None if i % 3 == 0 else [f"{i - i % 3:016x}"],
            "created": "2024-01-01T00:00:00+00:00",
            "metadata": {"user_id": str(i % 100), "n": i}, "tags": ["prod" if i % 2 else "dev"],
            "scores": {"q": (i % 5) / 4}, "input": f"question {i}",
            "output": {"text": f"answer {i}"}, "metrics": {"start": i, "end": i + 1}}


async def _fill(path: str, count: int, start: int = 0) -> None:
    """Write ``count`` rows (two projects, a second org, keys) into a SQLite store."""
    store = SqliteStore(path)
    await store.start()
    try:
        org = await store.org(DEFAULT_ORG)
        acme = await store.org("acme", create=True)
        assert org is not None and acme is not None
        main = await store.project(org.id, "Global", create=True)
        other = await store.project(acme.id, "other", create=True)
        assert main is not None and other is not None
        if start == 0:
            await store.add_key(ApiKey("key_a", "ci", org.id, org.name, None, "t1"), "hash-a")
            await store.add_key(ApiKey("key_b", "", acme.id, acme.name, ("other",), "t2"),
                                "hash-b")
        batch: list[Piece] = []
        for i in range(start, start + count):
            batch.append(Piece(other.id if i % 4 == 0 else main.id, _row(i)))
            if len(batch) == 5000:
                await store.write(batch)
                batch = []
        if batch:
            await store.write(batch)
    finally:
        await store.close()


@pytest.fixture(scope="module")
def source_100k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store of 100,000 rows, built once for the module (copy it before writing)."""
    path = tmp_path_factory.mktemp("migrate") / "source.sqlite3"
    asyncio.run(_fill(str(path), ROWS))
    return path


def _copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "source.sqlite3"
    shutil.copy(source, target)
    return target


async def _stores(sqlite_path: Path, url: str) -> tuple[Store, Store]:
    sqlite, postgres = SqliteStore(str(sqlite_path)), PostgresStore(url)
    await sqlite.start()
    await postgres.start()
    return sqlite, postgres


async def _same_answers(sqlite_path: Path, url: str) -> None:
    """Both stores give identical pages, root listings, filters, traces and keys."""
    sqlite, postgres = await _stores(sqlite_path, url)
    try:
        for org_name in (DEFAULT_ORG, "acme"):
            org_s, org_p = await sqlite.org(org_name), await postgres.org(org_name)
            assert org_s is not None and org_p is not None
            projects_s = await sqlite.projects(org_s.id)
            assert [p.id for p in projects_s] == [p.id for p in await postgres.projects(org_p.id)]
            for project in projects_s:
                for text in (None, "metadata.user_id = '7'", "tags includes 'dev'",
                             "scores.q > 0.5 AND metadata.n < 500"):
                    a = await sqlite.fetch(project.id, filter=text, limit=100)
                    b = await postgres.fetch(project.id, filter=text, limit=100)
                    for x, y in zip(a.rows, b.rows, strict=True):
                        assert x == y, (text, {k: (x.get(k), y.get(k)) for k in {*x, *y}
                                               if x.get(k) != y.get(k)})
                    assert a.cursor == b.cursor, text
                    if a.cursor:
                        c = await sqlite.fetch(project.id, filter=text, cursor=a.cursor)
                        d = await postgres.fetch(project.id, filter=text, cursor=b.cursor)
                        assert c.rows == d.rows
                # Root listings carry trace totals: the copied rows have their span entries.
                a = await sqlite.fetch(project.id, roots_only=True, limit=100)
                b = await postgres.fetch(project.id, roots_only=True, limit=100)
                assert a.rows == b.rows
                for r in a.rows[:5]:
                    trace = await postgres.trace(project.id, r["root_span_id"])
                    assert r["trace_totals"]["spans"] == len(trace)
                root = (await postgres.fetch(project.id, limit=1)).rows[0]["root_span_id"]
                assert await sqlite.trace(project.id, root) == await postgres.trace(project.id,
                                                                                    root)
                assert await sqlite.latest_xact(project.id) == await postgres.latest_xact(
                    project.id)
        assert await sqlite.keys() == await postgres.keys()
        assert await postgres.key_by_hash("hash-b") == await sqlite.key_by_hash("hash-b")
    finally:
        await sqlite.close()
        await postgres.close()


def _cli(source: Path, url: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "spanlog.server.commands._migrate",
                             "--from", f"sqlite:{source}", "--to", f"postgres:{url}", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float = 60) -> bytes:
    """stderr of ``proc`` up to the first line containing ``marker``."""
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {marker!r} on stderr within {timeout}s: {seen!r}")
        if select.select([proc.stderr], [], [], left)[0]:
            chunk = proc.stderr.read1(4096)
            if not chunk:
                raise AssertionError(f"stderr closed before {marker!r}: {seen!r}")
            seen += chunk
    return seen


def _finish(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode()


def test_migrate_100k_rows_survives_a_kill_and_resumes(source_100k: Path, tmp_path: Path,
                                                       pg_cluster: Cluster) -> None:
    """The CLI copies 100,000 rows with a progress bar; killed midway (SIGKILL) and run
    again it copies only the rest, verifies the counts, and both engines then answer alike."""
    source = _copy(source_100k, tmp_path)
    url = asyncio.run(new_database(pg_cluster))
    first = _cli(source, url, "--batch-rows", "2000")
    try:
        _read_until(first, b" 20%")
    finally:
        first.kill()
        first.communicate(timeout=60)

    async def progress() -> tuple[int, int]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetchval("SELECT count(*) FROM spanlog_rows")
            last = await conn.fetchval("SELECT last_xact FROM spanlog_migrated")
            return int(rows), int(last)
        finally:
            await conn.close()

    copied, last = asyncio.run(progress())
    assert 20_000 <= copied < ROWS and last == copied, "batches commit with their position"
    code, err = _finish(_cli(source, url))
    assert code == 0, err
    assert f"and {ROWS - copied:,} rows" in err, err
    assert "'Global': 75,000 rows in source, 75,000 in target  ok" in err
    assert "'other': 25,000 rows in source, 25,000 in target  ok" in err
    assert f"verified: all {ROWS:,} rows are in the target" in err
    assert "100%" in err and "rows/s" in err
    assert asyncio.run(progress())[0] == ROWS
    asyncio.run(_same_answers(source, url))


async def test_max_rows_stops_early_and_a_rerun_finishes(pg_cluster: Cluster,
                                                         tmp_path: Path) -> None:
    """--max-rows copies part and reports it unverified; the next run copies the rest."""
    source = tmp_path / "small.sqlite3"
    await _fill(str(source), 1000)
    url = await new_database(pg_cluster)
    out = io.StringIO()
    first = await migrate(str(source), url, batch_rows=100, max_rows=350, progress=out)
    assert first.rows_copied == 350 and not first.verified
    assert first.counts["Global"][0] == 750 and first.counts["Global"][1] < 750
    assert "35%" in out.getvalue()
    second = await migrate(str(source), url, batch_rows=100)
    assert second.rows_copied == 650 and second.verified
    assert (first.orgs, first.projects, first.keys) == (2, 2, 2)
    await _same_answers(source, url)


async def test_a_later_run_copies_only_what_changed_in_the_source(pg_cluster: Cluster,
                                                                  tmp_path: Path) -> None:
    """After a migration, new and updated source rows are copied by the next run, above
    the rows collectors wrote to the target in between; revocations carry over both ways."""
    source = tmp_path / "src.sqlite3"
    await _fill(str(source), 300)
    url = await new_database(pg_cluster)
    assert (await migrate(str(source), url)).verified
    target = PostgresStore(url)
    await target.start()
    try:
        org = await target.org(DEFAULT_ORG)
        assert org is not None
        main = await target.project(org.id, "Global")
        assert main is not None
        await target.write([Piece(main.id, {"id": "live", "output": "written to postgres"})])
        await target.revoke_key("key_b")
    finally:
        await target.close()
    sqlite = SqliteStore(str(source))
    await sqlite.start()
    try:
        await sqlite.write([Piece(main.id, {"id": "r1", "_is_merge": True, "output": "edited"}),
                            Piece(main.id, _row(5000))])
        await sqlite.revoke_key("key_a")
    finally:
        await sqlite.close()
    again = await migrate(str(source), url)
    assert again.rows_copied == 2 and again.verified
    assert again.counts["Global"] == (226, 226, 227)
    target = PostgresStore(url)
    await target.start()
    try:
        rows = (await target.fetch(main.id, limit=3)).rows
        assert [r["id"] for r in rows] == ["r5000", "r1", "live"]
        assert rows[1]["output"] == "edited"
        key = await target.key_by_hash("hash-a")
        assert key is not None and key.revoked is not None
        key = await target.key_by_hash("hash-b")
        assert key is not None and key.revoked is not None, "a later run never un-revokes"
    finally:
        await target.close()


async def test_a_target_with_rows_of_its_own_keeps_them_and_stays_ordered(
        pg_cluster: Cluster, tmp_path: Path) -> None:
    """Migrating into a database a collector already wrote to keeps its rows, reuses its
    default org, and places migrated rows after them in transaction order without clashes."""
    url = await new_database(pg_cluster)
    target = PostgresStore(url)
    await target.start()
    try:
        org = await target.org(DEFAULT_ORG)
        assert org is not None
        mine = await target.project(org.id, "mine", create=True)
        assert mine is not None
        await target.write([Piece(mine.id, {"id": f"m{i}"}) for i in range(5)])
    finally:
        await target.close()
    source = tmp_path / "src.sqlite3"
    await _fill(str(source), 40)
    report = await migrate(str(source), url)
    assert report.verified and report.rows_copied == 40
    target = PostgresStore(url)
    await target.start()
    try:
        org = await target.org(DEFAULT_ORG)
        assert org is not None
        names = [p.name for p in await target.projects(org.id)]
        assert names == ["mine", "Global"]
        assert len((await target.fetch(mine.id)).rows) == 5
        main = await target.project(org.id, "Global")
        assert main is not None
        migrated = (await target.fetch(main.id, limit=100)).rows
        assert min(int(r["_xact_id"]) for r in migrated) > 5
        await target.write([Piece(main.id, {"id": "after"})])
        assert (await target.fetch(main.id, limit=1)).rows[0]["id"] == "after"
    finally:
        await target.close()


async def test_conflicting_projects_and_bad_sources_are_refused(pg_cluster: Cluster,
                                                                tmp_path: Path) -> None:
    """A target project of the same name but another id, a missing file, or a file that
    is not a spanlog database stop the migration with a message saying so."""
    source = tmp_path / "src.sqlite3"
    await _fill(str(source), 10)
    url = await new_database(pg_cluster)
    target = PostgresStore(url)
    await target.start()
    try:
        org = await target.org(DEFAULT_ORG)
        assert org is not None
        await target.project(org.id, "Global", create=True)
    finally:
        await target.close()
    with pytest.raises(MigrationError, match="already has a project 'Global' with another id"):
        await migrate(str(source), url)
    with pytest.raises(MigrationError, match="no SQLite database"):
        await migrate(str(tmp_path / "missing.sqlite3"), url)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(MigrationError, match="not a spanlog database"):
        await migrate(str(junk), url)


def test_cli_arguments_are_checked(tmp_path: Path) -> None:
    """--from must be sqlite:PATH and --to a PostgreSQL URL; errors exit 2 with a message."""
    from spanlog.server.commands._migrate import main

    assert main(["--from", str(tmp_path / "x"), "--to", "postgres:postgresql://h/db"]) == 2
    assert main(["--from", f"sqlite:{tmp_path / 'x'}", "--to", "mysql://h/db"]) == 2
    assert main(["--from", f"sqlite:{tmp_path / 'x'}", "--to", "postgres:postgresql://h/db",
                 "--batch-rows", "0"]) == 2



async def test_project_settings_are_copied(pg_cluster: Cluster, tmp_path: Path) -> None:
    """A project's session key set in SQLite is the same in PostgreSQL after a migrate."""
    source = tmp_path / "settings.sqlite3"
    await _fill(str(source), 10)
    sqlite = SqliteStore(str(source))
    await sqlite.start()
    try:
        org = await sqlite.org(DEFAULT_ORG)
        assert org is not None
        project = await sqlite.project(org.id, "Global")
        assert project is not None
        await sqlite.change_project_settings(project.id, {"session_key": "metadata.chat"})
    finally:
        await sqlite.close()
    url = await new_database(pg_cluster)
    assert (await migrate(str(source), url)).verified
    postgres = PostgresStore(url)
    await postgres.start()
    try:
        assert await postgres.project_settings(project.id) == {"session_key": "metadata.chat"}
    finally:
        await postgres.close()
