"""What a random index insert costs SQLite as the index grows, with and without a time prefix.

The collector's writer slows as its database grows: a random insert into an index
(``rows_by_id``, ``rows_by_trace``, and before index version 4 the postings of rare values)
dirties a page of its own once the index outgrows a transaction, which the commit writes to
the WAL and the checkpoint writes again. This isolates that cost
on a postings-shaped table (WAL, the collector's pragmas, 4,000-entry transactions of random
16-hex-digit values) in two layouts:

- ``flat``: keyed ``(field, value, first)``, the ``postings`` of index version 3;
- ``epoch``: keyed ``(field, epoch, value, first)`` with ``epoch = first >> 16``, so a
  transaction's inserts land in the small, recent part of the tree (version 4 puts the
  epoch before the field, which groups them the same way).

    python3 bench/sqlite_random_inserts.py --fill 1200000 --measure 200000

Prints CPU- and wall-µs per insert after ``--fill`` entries, for each layout. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from typing import Any

TXN = 4000
EPOCH_BITS = 16

LAYOUTS = {
    "flat": ("CREATE TABLE p (field INT, value TEXT, first INT, n INT, xacts TEXT, "
             "PRIMARY KEY (field, value, first)) WITHOUT ROWID",
             "INSERT INTO p VALUES (?, ?, ?, 1, ?)",
             lambda value, xact: (7, value, xact, f"[{xact}]")),
    "epoch": ("CREATE TABLE p (field INT, epoch INT, value TEXT, first INT, n INT, xacts TEXT, "
              "PRIMARY KEY (field, epoch, value, first)) WITHOUT ROWID",
              "INSERT INTO p VALUES (?, ?, ?, ?, 1, ?)",
              lambda value, xact: (7, xact >> EPOCH_BITS, value, xact, f"[{xact}]")),
}


def connect(path: str) -> sqlite3.Connection:
    """A connection with the collector's WAL settings (the SQLite engine's ``connect``)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "cache_size = -65536",
                   "mmap_size = 268435456"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def fill_and_measure(conn: sqlite3.Connection, transaction: Callable[[], None], fill: int,
                     measure: int) -> dict[str, Any]:
    """Run ``fill // TXN`` transactions, then time ``measure // TXN`` more, checkpointing as
    the collector does: what was stored before, and CPU- and wall-µs per item timed."""
    for _ in range(fill // TXN):
        transaction()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(measure // TXN):
        transaction()
        if i % 5 == 4:  # the collector checkpoints on a thread of its own, every 0.25 s
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    done = (measure // TXN) * TXN
    return {"before": (fill // TXN) * TXN,
            "cpu_us": round((time.process_time() - cpu) / done * 1e6, 2),
            "wall_us": round((time.perf_counter() - wall) / done * 1e6, 2),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def run(layout: str, fill: int, measure: int, directory: str) -> dict[str, Any]:
    create, insert, make = LAYOUTS[layout]
    conn = connect(os.path.join(directory, f"{layout}.sqlite3"))
    conn.execute(create)
    rng = random.Random(1)
    xact = 0

    def transaction() -> None:
        nonlocal xact
        rows = []
        for _ in range(TXN):
            xact += 1
            rows.append(make(f"{rng.getrandbits(64):016x}", xact))
        conn.execute("BEGIN")
        conn.executemany(insert, rows)
        conn.execute("COMMIT")

    timed = fill_and_measure(conn, transaction, fill, measure)
    conn.close()
    return {"layout": layout, "entries_before": timed["before"],
            "cpu_us_per_insert": timed["cpu_us"], "wall_us_per_insert": timed["wall_us"],
            "load": timed["load"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fill", type=int, default=1_200_000)
    parser.add_argument("--measure", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for layout in LAYOUTS:
            print(json.dumps(run(layout, args.fill, args.measure, directory)), flush=True)


if __name__ == "__main__":
    main()
