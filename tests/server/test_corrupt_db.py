"""A damaged database file is refused at start with one line that says what to do, and no
traceback (docs/collector.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("content", [os.urandom(8192), b"SQLite format 3\0" + os.urandom(8176),
                                     b"hello, not a database\n" * 100])
def test_a_corrupt_database_is_refused_in_one_line(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "bad.sqlite3"
    db.write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "spanlog.server", "--port", "0", "--db",
                           str(db)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "not a readable spanlog database" in lines[0] and "backup" in lines[0]
    assert db.read_bytes() == content  # left as it was
