"""The SQLite writer: batched transactions where a failing job rolls back alone."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spanlog.server.store._records import Piece
from spanlog.server.store.sqlite._pieces import prepare, write_pieces
from spanlog.server.store.sqlite._schema import SCHEMA, connect
from spanlog.server.store.sqlite._writer import Txn, Writer
from sqlite_id_index import id_index_problems


def _run_three_jobs_in_one_transaction(db: str, body: Callable[[Txn, str], Any]) -> None:
    """Jobs "a", "bad" and "c" share one transaction on a fresh schema in ``db``: each runs
    ``body(txn, name)``, then "bad" fails. Checks that a and c succeed and bad fails."""
    setup = connect(db, readonly=False)
    setup.executescript(SCHEMA)
    setup.execute("INSERT INTO projects VALUES (1, 'p1', 'o1', 'Global', 'now')")
    setup.close()
    writer = Writer(db)
    release = threading.Event()
    try:
        def hold(txn: Txn) -> None:
            assert release.wait(10)  # keeps the writer busy while the next jobs queue up

        def job(name: str) -> Callable[[Txn], Any]:
            def run(txn: Txn) -> Any:
                done = body(txn, name)
                if name == "bad":
                    raise ValueError(f"{name} failed after writing")
                return done
            return run

        first = writer.submit(hold)
        jobs = [writer.submit(job(n)) for n in ("a", "bad", "c")]
        release.set()
        first.result(10)
        assert jobs[0].result(10) == "a" and jobs[2].result(10) == "c"
        with pytest.raises(ValueError, match="bad failed"):
            jobs[1].result(10)
    finally:
        release.set()
        writer.close()


def test_failing_job_rolls_back_alone_in_shared_transaction(tmp_path: Path):
    """Jobs batched into one transaction: the failing one leaves no trace, the others commit."""
    db = str(tmp_path / "w.sqlite3")

    def insert(txn: Txn, name: str) -> str:
        txn.conn.execute("INSERT INTO orgs (id, name, created) VALUES (?, ?, 'now')",
                         (name, name))
        return name

    _run_three_jobs_in_one_transaction(db, insert)
    conn = sqlite3.connect(db)
    try:
        assert sorted(r[0] for r in conn.execute("SELECT name FROM orgs")) == ["a", "c"]
    finally:
        conn.close()


def test_a_failed_job_leaves_the_id_count_as_it_was(tmp_path: Path):
    """A job that wrote rows and then failed takes its id entries, and their count in
    ``meta.ids_recent``, back with it; the jobs beside it keep theirs."""
    db = str(tmp_path / "w.sqlite3")

    def write(txn: Txn, name: str) -> str:
        pieces = [Piece("p1", {"id": f"{name}{i}", "created": "now"}) for i in range(3)]
        write_pieces(txn, pieces, prepare(pieces))
        return name

    _run_three_jobs_in_one_transaction(db, write)
    assert not id_index_problems(db)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT value FROM meta WHERE key = 'ids_recent'").fetchone() == (6,)
        assert conn.execute("SELECT count(*) FROM rows").fetchone() == (6,)
    finally:
        conn.close()
