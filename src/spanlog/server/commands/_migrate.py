"""``spanlog migrate --from sqlite:PATH --to postgres:URL``: move a collector's data over.

Copies every organization, project, API key and row from a SQLite store to a PostgreSQL
store, then checks that every source row is present in the target, project by project.

- **Same identities.** Project ids, key ids and key hashes are kept, so SDKs configured with
  a ``project_id`` and existing API keys keep working. An organization the target already
  has under the same name (the ``default`` one a collector creates on start) is reused.
- **Same order.** A row keeps its transaction id, shifted by a per-migration offset when the
  target already held rows, so "most recently updated first" is unchanged. The target's
  counter is first moved past every id the migration will use, so collectors writing to the
  target meanwhile never collide with migrated rows.
- **Resumable.** Rows are copied in transaction order, in batches; each batch commits with
  the last source id it copied (table ``spanlog_migrated``), so an interrupted migration
  run again continues where it stopped. Running it again later copies only what changed in
  the source since (a row newer in the target is kept).
- The source is read in one read transaction: a consistent snapshot even while a collector
  still writes to it (later writes are picked up by the next run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from spanlog.server.rows._json import loads
from spanlog.server.rows._model import now_iso
from spanlog.server.store._facts import span_facts
from spanlog.server.store.postgres._numbers import to_jsonb
from spanlog.server.store.postgres._schema import replace_spans

BATCH_ROWS = 2000
_ID_CHUNK = 20_000
KNOWN_SQLITE_SCHEMA = 1


class MigrationError(RuntimeError):
    """The migration cannot go on; the message says what to do."""


@dataclass
class Report:
    """What one run did, and the outcome of the final check."""

    orgs: int = 0
    projects: int = 0
    keys: int = 0
    rows_copied: int = 0
    rows_in_source: int = 0
    # project name -> (rows in source, source rows found in target, rows in target)
    counts: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        """Whether every source row was found in the target."""
        return all(found == source for source, found, _ in self.counts.values())


class Progress:
    """A progress bar on ``stream``: redrawn in place on a terminal, a line per tenth else."""

    def __init__(self, stream: TextIO, total: int, done: int = 0) -> None:
        self.stream = stream
        self.total = max(total, 1)
        self.done = done
        self.started = time.monotonic()
        self.start_done = done
        self._tty = stream.isatty()
        self._last_draw = 0.0
        self._last_tenth = done * 10 // self.total
        self._drawn = -1

    def advance(self, rows: int) -> None:
        """Count ``rows`` more as copied and redraw when it is time."""
        self.done += rows
        now = time.monotonic()
        tenth = self.done * 10 // self.total
        if self._tty and now - self._last_draw < 0.1 and self.done < self.total:
            return
        if not self._tty and tenth == self._last_tenth and self.done < self.total:
            return
        self._last_draw, self._last_tenth = now, tenth
        self.draw()

    def draw(self) -> None:
        """Write the bar: ``[#####-----]  50%  50,000/100,000 rows  12,345 rows/s``."""
        share = min(self.done / self.total, 1.0)
        width = 30
        filled = int(share * width)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (self.done - self.start_done) / elapsed
        self._drawn = self.done
        line = (f"[{'#' * filled}{'-' * (width - filled)}] {share:4.0%}  "
                f"{self.done:,}/{self.total:,} rows  {rate:,.0f} rows/s")
        self.stream.write(("\r" + line) if self._tty else line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """Show where the copy ended and end the bar's line."""
        if self._drawn != self.done:
            self.draw()
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()


def _open_source(path: str) -> sqlite3.Connection:
    if not os.path.isfile(path):
        raise MigrationError(f"--from: no SQLite database at {path!r}")
    conn = sqlite3.connect(f"file:{os.path.abspath(path)}?mode=ro", uri=True,
                           isolation_level=None)
    try:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise MigrationError(f"--from: {path!r} is not a spanlog database ({exc})") from None
    if version is None or int(version[0]) != KNOWN_SQLITE_SCHEMA:
        conn.close()
        raise MigrationError(f"--from: {path!r} has spanlog schema version "
                             f"{version[0] if version else 'unknown'}; this spanlog reads "
                             f"version {KNOWN_SQLITE_SCHEMA}")
    return conn


async def _copy_identities(src: sqlite3.Connection, conn: Any,
                           report: Report) -> dict[int, tuple[int, str]]:
    """Orgs, projects (and their settings) and keys; returns source pid -> (target pid,
    project name)."""
    org_ids: dict[str, str] = {}
    for org_id, name, created in src.execute("SELECT id, name, created FROM orgs"):
        await conn.execute("INSERT INTO spanlog_orgs (id, name, created) VALUES ($1, $2, $3) "
                           "ON CONFLICT DO NOTHING", org_id, name, created)
        org_ids[org_id] = await conn.fetchval("SELECT id FROM spanlog_orgs WHERE name = $1",
                                              name)
        report.orgs += 1
    pids: dict[int, tuple[int, str]] = {}
    for pid, project_id, org_id, name, created in src.execute(
            "SELECT pid, id, org_id, name, created FROM projects ORDER BY pid"):
        target_org = org_ids[org_id]
        await conn.execute("INSERT INTO spanlog_projects (id, org_id, name, created) "
                           "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                           project_id, target_org, name, created)
        found = await conn.fetchrow("SELECT pid, id FROM spanlog_projects "
                                    "WHERE org_id = $1 AND name = $2", target_org, name)
        if found["id"] != project_id:
            raise MigrationError(
                f"the target already has a project {name!r} with another id ({found['id']}, "
                f"the source's is {project_id}): migrate into an empty database, or one "
                "this source was migrated into before")
        pids[pid] = (int(found["pid"]), name)
        report.projects += 1
    # A source written before project settings existed has no such table.
    if src.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                   "name = 'project_settings'").fetchone():
        for pid, settings in src.execute("SELECT pid, settings FROM project_settings"):
            await conn.execute(
                "INSERT INTO spanlog_project_settings (pid, settings) VALUES ($1, $2::jsonb) "
                "ON CONFLICT (pid) DO UPDATE SET settings = excluded.settings",
                pids[pid][0], settings)
    for key_id, token_hash, name, org_id, projects, created, revoked in src.execute(
            "SELECT id, hash, name, org_id, projects, created, revoked FROM api_keys"):
        await conn.execute(
            "INSERT INTO spanlog_keys (id, hash, name, org_id, projects, created, revoked) "
            "VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) ON CONFLICT (id) DO UPDATE "
            # A revocation carries over; nothing un-revokes a key revoked in the target.
            "SET revoked = coalesce(spanlog_keys.revoked, excluded.revoked)",
            key_id, token_hash, name, org_ids[org_id],
            projects, created, revoked)
        report.keys += 1
    return pids


async def _start_run(conn: Any, source: str, source_last: int) -> tuple[int, int]:
    """(offset, last source id copied) for this run; moves the counter past the run's ids."""
    row = await conn.fetchrow("SELECT last_xact, offset_xact, reserved_xact FROM "
                              "spanlog_migrated WHERE source = $1 FOR UPDATE", source)
    counter = int(await conn.fetchval("SELECT last FROM spanlog_counter FOR UPDATE"))
    if row is None:
        has_rows = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM spanlog_rows)")
        copied, offset = 0, counter if has_rows else 0
    else:
        copied, offset = int(row["last_xact"]), int(row["offset_xact"])
        if counter > int(row["reserved_xact"]):
            # Collectors wrote to the target since the last run: copy the rest above that.
            offset = counter - copied
    reserved = max(counter, offset + source_last)
    await conn.execute(
        "INSERT INTO spanlog_migrated (source, last_xact, offset_xact, reserved_xact, updated) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source) DO UPDATE SET offset_xact = "
        "excluded.offset_xact, reserved_xact = excluded.reserved_xact, "
        "updated = excluded.updated", source, copied, offset, reserved, now_iso())
    await conn.execute("UPDATE spanlog_counter SET last = $1", reserved)
    return offset, copied


_INSERT = """
INSERT INTO spanlog_rows (pid, id, xact, root_span_id, is_root, base, data)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::boolean[],
                     $6::text[], $7::text[]::jsonb[])
ON CONFLICT (pid, id) DO UPDATE SET xact = excluded.xact, root_span_id = excluded.root_span_id,
    is_root = excluded.is_root, base = excluded.base, data = excluded.data
WHERE spanlog_rows.xact < excluded.xact
RETURNING pid, id
"""


async def _copy_batch(conn: Any, source: str, rows: list[tuple[Any, ...]], offset: int,
                      pids: dict[int, tuple[int, str]]) -> None:
    import asyncpg

    cols: list[list[Any]] = [[], [], [], [], [], [], []]
    spans: dict[tuple[int, str], tuple[Any, ...]] = {}
    for xact, pid, row_id, root, is_root, base, data in rows:
        for col, value in zip(cols, (pids[pid][0], row_id, offset + xact, root, bool(is_root),
                                     base, to_jsonb(data)), strict=True):
            col.append(value)
        facts = span_facts(loads(data))
        if facts is not None:
            spans[(pids[pid][0], row_id)] = (pids[pid][0], row_id, root, *facts)
    try:
        async with conn.transaction():
            # The rows copied (not those a collector has written since): their span entries.
            copied = [(rec["pid"], rec["id"]) for rec in await conn.fetch(_INSERT, *cols)]
            await replace_spans(conn, copied, [spans[k] for k in copied if k in spans])
            await conn.execute("UPDATE spanlog_migrated SET last_xact = $2, updated = $3 "
                               "WHERE source = $1", source, rows[-1][0], now_iso())
    except asyncpg.DataError as exc:
        for xact, pid, row_id, *_, data in rows:
            try:
                await conn.fetchval("SELECT $1::jsonb IS NOT NULL", data)
            except asyncpg.DataError:
                raise MigrationError(f"row {row_id!r} of project {pids[pid][1]!r} (source "
                                     f"xact {xact}) cannot be stored in PostgreSQL: "
                                     f"{exc}") from None
        raise


async def _verify(src: sqlite3.Connection, conn: Any, pids: dict[int, tuple[int, str]],
                  report: Report) -> None:
    for pid, (target_pid, name) in pids.items():
        ids = [r[0] for r in src.execute("SELECT id FROM rows WHERE pid = ?", (pid,))]
        found = 0
        for start in range(0, len(ids), _ID_CHUNK):
            found += int(await conn.fetchval(
                "SELECT count(*) FROM spanlog_rows AS r JOIN unnest($2::text[]) AS s(id) "
                "ON r.id = s.id WHERE r.pid = $1", target_pid, ids[start:start + _ID_CHUNK]))
        total = int(await conn.fetchval("SELECT count(*) FROM spanlog_rows WHERE pid = $1",
                                        target_pid))
        report.counts[name] = (len(ids), found, total)


async def migrate(sqlite_path: str, url: str, *, batch_rows: int = BATCH_ROWS,
                  max_rows: int | None = None, progress: TextIO | None = None) -> Report:
    """Copy the SQLite store at ``sqlite_path`` into the PostgreSQL database at ``url``.

    Copies at most ``max_rows`` rows when given (run again to continue). Draws a progress
    bar on ``progress``. Raises :class:`MigrationError` when the migration cannot proceed.
    """
    try:
        import asyncpg
    except ImportError:
        raise MigrationError("migrating to PostgreSQL needs asyncpg: "
                             "python3 -m pip install -e '.[postgres]'") from None
    # Imported here, as asyncpg is: the CLI builds this command's parser on every run, and
    # only a migration needs the PostgreSQL engine.
    from spanlog.server.store.postgres._schema import SchemaTooNew
    from spanlog.server.store.postgres._schema import migrate as migrate_schema
    from spanlog.server.store.postgres._store import check_url, redact

    check_url(url)
    source = os.path.abspath(sqlite_path)
    src = _open_source(sqlite_path)
    report = Report()
    try:
        src.execute("BEGIN")  # one snapshot of the source for the whole run
        source_last = int(src.execute("SELECT coalesce(max(xact), 0) FROM rows").fetchone()[0])
        report.rows_in_source = int(src.execute("SELECT count(*) FROM rows").fetchone()[0])
        try:
            conn = await asyncpg.connect(url, server_settings={"application_name":
                                                               "spanlog-migrate"})
        except (OSError, asyncpg.PostgresError) as exc:
            raise MigrationError(f"--to: cannot connect to PostgreSQL at {redact(url)}: "
                                 f"{exc}") from None
        try:
            try:
                await migrate_schema(conn)
            except SchemaTooNew as exc:
                raise MigrationError(str(exc)) from None
            if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", source):
                raise MigrationError(f"another migration from {source} is running")
            async with conn.transaction():
                pids = await _copy_identities(src, conn, report)
                offset, copied = await _start_run(conn, source, source_last)
            left = int(src.execute("SELECT count(*) FROM rows WHERE xact > ?",
                                   (copied,)).fetchone()[0])
            bar = None
            if progress is not None:
                bar = Progress(progress, report.rows_in_source,
                               report.rows_in_source - left)
                bar.draw()
            while max_rows is None or report.rows_copied < max_rows:
                take = batch_rows if max_rows is None else min(batch_rows,
                                                               max_rows - report.rows_copied)
                rows = src.execute(
                    "SELECT xact, pid, id, root_span_id, is_root, base, data FROM rows "
                    "WHERE xact > ? ORDER BY xact LIMIT ?", (copied, take)).fetchall()
                if not rows:
                    break
                await _copy_batch(conn, source, rows, offset, pids)
                copied = rows[-1][0]
                report.rows_copied += len(rows)
                if bar is not None:
                    bar.advance(len(rows))
            if bar is not None:
                bar.finish()
            await _verify(src, conn, pids, report)
        finally:
            await conn.close()
    finally:
        src.close()
    return report


def _target_url(text: str) -> str:
    if text.startswith("postgres:") and not text.startswith("postgres://"):
        text = text[len("postgres:"):]
    return text


def add_migrate_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``migrate`` on the ``spanlog`` command's subparsers; return its parser.

    The parsed namespace's ``run`` attribute is the function to call with it.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "migrate", help="copy a collector's SQLite database into PostgreSQL",
        description="Copy every organization, project, API key and row from a SQLite store "
                    "into PostgreSQL, then verify. Safe to interrupt and run again.")
    parser.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH",
                        help="the SQLite database file, e.g. sqlite:spanlog-data/"
                             "spanlog.sqlite3")
    parser.add_argument("--to", dest="target", required=True, metavar="postgres:URL",
                        help="the PostgreSQL database, e.g. "
                             "postgres:postgresql://user:pass@host:5432/spanlog")
    parser.add_argument("--batch-rows", type=int, default=BATCH_ROWS,
                        help=f"rows per transaction (default {BATCH_ROWS})")
    parser.add_argument("--max-rows", type=int, default=None,
                        help="copy at most this many rows, then stop (run again to continue)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``spanlog migrate`` command; return the process exit status."""
    def fail(message: str) -> int:
        print(f"spanlog migrate: {message}", file=sys.stderr)
        return 2

    if not args.source.startswith("sqlite:"):
        return fail(f"--from must be sqlite:PATH, got {args.source!r}")
    if args.batch_rows < 1 or (args.max_rows is not None and args.max_rows < 1):
        return fail("--batch-rows and --max-rows must be at least 1")
    url = _target_url(args.target)
    try:
        report = asyncio.run(migrate(args.source[len("sqlite:"):], url,
                                     batch_rows=args.batch_rows, max_rows=args.max_rows,
                                     progress=sys.stderr))
    except (MigrationError, ValueError) as exc:
        return fail(str(exc))
    err = sys.stderr
    print(f"copied {report.orgs} organizations, {report.projects} projects, {report.keys} "
          f"API keys and {report.rows_copied:,} rows", file=err)
    for name, (source, found, total) in sorted(report.counts.items()):
        extra = f" (+{total - found:,} written to the target directly)" if total > found else ""
        state = "ok" if found == source else f"MISSING {source - found:,}"
        print(f"  project {name!r}: {source:,} rows in source, {found:,} in target{extra}  "
              f"{state}", file=err)
    if not report.verified:
        if args.max_rows is not None:
            print("stopped after --max-rows: run the same command again to continue",
                  file=err)
        else:
            print("verification FAILED: rows are missing in the target", file=err)
        return 1
    print(f"verified: all {report.rows_in_source:,} rows are in the target", file=err)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spanlog.server.commands._migrate --from ... --to ...`` (the same as
    ``spanlog migrate``)."""
    parser = argparse.ArgumentParser(prog="spanlog")
    add_migrate_command(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["migrate", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
