"""What keeping a unique index on random row ids costs SQLite, flat and in two tiers.

With index version 4 the postings no longer slowed the collector's writer as the database
grew; its unique index on row ids (``rows_by_id``) still did: row ids are random uuids, so
once the index outgrows a transaction each new row dirties an index page of its own. This
measures that on a ``rows``-shaped table (1,400-byte rows, WAL and the collector's pragmas,
4,000-row transactions that first look up their ids, as the writer does) in two layouts:

- ``flat``: a unique index on ``id``, what the collector had up to index version 4;
- ``tiered``: ids go to a small ``recent`` table; when it holds ``--recent`` ids they are
  moved, in key order, into a ``settled`` table in the same transaction. A lookup reads
  both. Index version 5 (``spanlog.server.store.sqlite._ids``) does this, except that it moves
  the excess over its threshold a key range per transaction instead of all at once.

    python3 bench/sqlite_id_index.py --fill 1000000 --measure 524288

Prints CPU- and wall-µs per row over ``--measure`` rows after ``--fill``, for each layout;
keep ``--measure`` a multiple of ``--recent`` so each tiered run pays its share of merges.
Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import tempfile
import uuid
from typing import Any

# A script beside it: `python3 bench/sqlite_id_index.py` puts bench/ on the path.
from sqlite_random_inserts import TXN, connect, fill_and_measure

LOOKUP_CHUNK = 500
PAYLOAD = "x" * 1400


class Flat:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        conn.execute("CREATE TABLE rows (xact INTEGER PRIMARY KEY, id TEXT NOT NULL, data TEXT)")
        conn.execute("CREATE UNIQUE INDEX rows_by_id ON rows (id)")

    def lookup(self, ids: list[str]) -> int:
        marks = ",".join("?" * len(ids))
        return len(self.conn.execute(f"SELECT xact FROM rows WHERE id IN ({marks})",
                                     ids).fetchall())

    def insert(self, rows: list[tuple[int, str]]) -> None:
        self.conn.executemany("INSERT INTO rows VALUES (?, ?, ?)",
                              [(x, i, PAYLOAD) for x, i in rows])


class Tiered:
    def __init__(self, conn: sqlite3.Connection, recent: int) -> None:
        self.conn = conn
        self.limit = recent
        self.held = 0
        conn.execute("CREATE TABLE rows (xact INTEGER PRIMARY KEY, id TEXT NOT NULL, data TEXT)")
        for table in ("recent", "settled"):
            conn.execute(f"CREATE TABLE {table} (id TEXT PRIMARY KEY, xact INTEGER NOT NULL) "
                         "WITHOUT ROWID")

    def lookup(self, ids: list[str]) -> int:
        marks = ",".join("?" * len(ids))
        return len(self.conn.execute(
            f"SELECT xact FROM recent WHERE id IN ({marks}) "
            f"UNION ALL SELECT xact FROM settled WHERE id IN ({marks})", ids + ids).fetchall())

    def insert(self, rows: list[tuple[int, str]]) -> None:
        self.conn.executemany("INSERT INTO rows VALUES (?, ?, ?)",
                              [(x, i, PAYLOAD) for x, i in rows])
        self.conn.executemany("INSERT INTO recent VALUES (?, ?)", [(i, x) for x, i in rows])
        self.held += len(rows)
        if self.held >= self.limit:
            # `recent` is keyed by id: read in key order, so the merge inserts in key order.
            self.conn.execute("INSERT INTO settled SELECT id, xact FROM recent")
            self.conn.execute("DELETE FROM recent")
            self.held = 0


def run(name: str, recent: int, fill: int, measure: int, directory: str) -> dict[str, Any]:
    conn = connect(os.path.join(directory, f"{name}-{recent}.sqlite3"))
    layout: Flat | Tiered = Flat(conn) if name == "flat" else Tiered(conn, recent)
    rng = random.Random(1)
    xact = 0

    def transaction() -> None:
        nonlocal xact
        ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(TXN)]
        conn.execute("BEGIN IMMEDIATE")
        found = sum(layout.lookup(ids[i:i + LOOKUP_CHUNK]) for i in range(0, TXN, LOOKUP_CHUNK))
        assert found == 0
        rows = []
        for row_id in ids:
            xact += 1
            rows.append((xact, row_id))
        layout.insert(rows)
        conn.execute("COMMIT")

    timed = fill_and_measure(conn, transaction, fill, measure)
    conn.close()
    return {"layout": name if name == "flat" else f"tiered, recent {recent}",
            "rows_before": timed["before"], "cpu_us_per_row": timed["cpu_us"],
            "wall_us_per_row": timed["wall_us"], "load": timed["load"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fill", type=int, default=1_000_000)
    parser.add_argument("--measure", type=int, default=524_288)
    parser.add_argument("--recent", type=int, nargs="+", default=[65_536, 262_144],
                        help="ids the tiered layout gathers before a merge (one run each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        print(json.dumps(run("flat", 0, args.fill, args.measure, directory)), flush=True)
        for recent in args.recent:
            print(json.dumps(run("tiered", recent, args.fill, args.measure, directory)),
                  flush=True)


if __name__ == "__main__":
    main()
