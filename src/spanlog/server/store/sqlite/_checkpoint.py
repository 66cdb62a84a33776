"""Moving the WAL into the database file on a thread of its own.

SQLite checkpoints automatically inside the COMMIT that pushes the WAL past its threshold,
so the writer thread would stop, copy pages and fsync the database while requests wait for
their acknowledgement. Instead the writer's automatic checkpoint is set far out (a backstop
only) and this thread runs a PASSIVE checkpoint a few times a second: it copies what no
reader still needs, never blocks the writer, and takes the fsyncs off the commit path.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from spanlog.server.store.sqlite._schema import connect

log = logging.getLogger("spanlog.server")

INTERVAL_SECONDS = 0.25
# The writer checkpoints by itself only if this thread falls this far behind (4 KiB pages).
WRITER_BACKSTOP_PAGES = 50_000
# After a checkpoint that resets the WAL, the file is truncated back to this size.
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on ``path`` every :data:`INTERVAL_SECONDS`."""

    def __init__(self, path: str) -> None:
        self._conn = connect(path, readonly=False)
        self._conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spanlog-sqlite-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # A periodic task, not a wait for a condition: the timeout is the period.
        while not self._stop.wait(INTERVAL_SECONDS):
            self.checkpoint("PASSIVE")

    def checkpoint(self, mode: str) -> None:
        """One checkpoint now (PASSIVE or TRUNCATE); a busy database is simply skipped."""
        try:
            self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.OperationalError as exc:  # locked by another process: next round
            log.debug("spanlog: checkpoint skipped: %s", exc)

    def close(self) -> None:
        """Stop the thread, fold the whole WAL into the database, close the connection."""
        self._stop.set()
        self._thread.join()
        self.checkpoint("TRUNCATE")
        self._conn.close()
