"""The SQLite writer: batched transactions where a failing job rolls back alone."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from spanlog.server._sqlite_pieces import prepare, write_pieces
from spanlog.server._sqlite_schema import SCHEMA, connect
from spanlog.server._sqlite_writer import Txn, Writer
from spanlog.server._store import Piece
from sqlite_id_index import id_index_problems


def test_failing_job_rolls_back_alone_in_shared_transaction(tmp_path: Path):
    """Jobs batched into one transaction: the failing one leaves no trace, the others commit."""
    db = str(tmp_path / "w.sqlite3")
    setup = connect(db, readonly=False)
    setup.executescript(SCHEMA)
    setup.close()
    writer = Writer(db)
    release = threading.Event()
    try:
        def hold(txn: Txn) -> None:
            assert release.wait(10)  # keeps the writer busy while the next jobs queue up

        def insert(name: str, fail: bool):
            def job(txn: Txn) -> str:
                txn.conn.execute("INSERT INTO orgs (id, name, created) VALUES (?, ?, 'now')",
                                 (name, name))
                if fail:
                    raise ValueError(f"{name} failed after writing")
                return name
            return job

        first = writer.submit(hold)
        jobs = [writer.submit(insert(n, n == "bad")) for n in ("a", "bad", "c")]
        release.set()
        first.result(10)
        assert jobs[0].result(10) == "a" and jobs[2].result(10) == "c"
        with pytest.raises(ValueError, match="bad failed"):
            jobs[1].result(10)
    finally:
        release.set()
        writer.close()
    conn = sqlite3.connect(db)
    try:
        assert sorted(r[0] for r in conn.execute("SELECT name FROM orgs")) == ["a", "c"]
    finally:
        conn.close()


def test_a_failed_job_leaves_the_id_count_as_it_was(tmp_path: Path):
    """A job that wrote rows and then failed takes its id entries, and their count in
    ``meta.ids_recent``, back with it; the jobs beside it keep theirs."""
    db = str(tmp_path / "w.sqlite3")
    setup = connect(db, readonly=False)
    setup.executescript(SCHEMA)
    setup.execute("INSERT INTO projects VALUES (1, 'p1', 'o1', 'Global', 'now')")
    setup.close()
    writer = Writer(db)
    release = threading.Event()
    try:
        def hold(txn: Txn) -> None:
            assert release.wait(10)  # keeps the writer busy while the next jobs queue up

        def write(name: str, fail: bool):
            def job(txn: Txn) -> None:
                pieces = [Piece("p1", {"id": f"{name}{i}", "created": "now"}) for i in range(3)]
                write_pieces(txn, pieces, prepare(pieces))
                if fail:
                    raise ValueError(f"{name} failed after writing")
            return job

        first = writer.submit(hold)
        jobs = [writer.submit(write(n, n == "bad")) for n in ("a", "bad", "c")]
        release.set()
        first.result(10)
        jobs[0].result(10)
        jobs[2].result(10)
        with pytest.raises(ValueError, match="bad failed"):
            jobs[1].result(10)
    finally:
        release.set()
        writer.close()
    assert not id_index_problems(db)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT value FROM meta WHERE key = 'ids_recent'").fetchone() == (6,)
    finally:
        conn.close()
