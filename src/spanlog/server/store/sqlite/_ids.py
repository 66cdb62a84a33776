"""Finding a stored row by its id in SQLite: the id index, in two tiers.

Row ids are random (uuids), so one B-tree on (project, id) takes every new row's entry at a
random place: once it outgrows a transaction, each new row dirties an index page of its own,
and the writer's commits and checkpoints grow with the database (``bench/sqlite_id_index.py``
measures it). So the ids live in two tables keyed ``(pid, id)``, each entry holding the row's
``xact``, and every stored row has its entry in exactly one of them:

- ``ids_recent`` takes the entry of every row a job writes (a new row, or a rewritten one,
  whose old entry is removed from whichever table held it). It is kept near
  :data:`SETTLE_AFTER` entries: small enough to stay in the page cache, so a transaction's
  inserts share its pages.
- ``ids_settled`` holds the rest. Once ``ids_recent`` holds more than :data:`SETTLE_AFTER`,
  each write transaction moves the excess there (:meth:`Settler.settle`, at most
  :data:`MAX_SETTLE` at a time) as one contiguous key range of ``ids_recent``, the next after
  the previous one: the moves sweep the key space in order, so a chunk lands in a few
  neighbouring pages of ``ids_settled`` and a whole sweep touches each of its pages about
  once, instead of once per row.

A lookup reads both tables (:data:`ROW_IDS`: two primary-key probes). The number of entries
in ``ids_recent`` is ``meta.ids_recent``, read and written inside each write transaction like
``meta.last_xact``, so collector processes sharing the file agree on it. The sweep's position
is each writer's own: another process sweeps from its own position, which costs locality,
never correctness (a move takes whatever is in the range).
"""

from __future__ import annotations

import sqlite3

# Entries ``ids_recent`` keeps before moving the excess to ``ids_settled``: about 2,000 pages
# of 4 KiB, which the write connection's 64 MiB cache holds.
SETTLE_AFTER = 131_072
# Entries moved per transaction at most, so a burst never makes one transaction long.
MAX_SETTLE = 16_384

# (pid, id, xact) of every stored row: a WHERE on pid and id is pushed into both tables.
ROW_IDS = "(SELECT pid, id, xact FROM ids_recent UNION ALL SELECT pid, id, xact FROM ids_settled)"

_START = (-(2**63), "")  # before every key: integer pids, text ids


def forget(conn: sqlite3.Connection, keys: list[tuple[int, str]]) -> int:
    """Remove the entries of ``keys`` (pid, id) from both tables; returns how many left
    ``ids_recent``."""
    before = conn.total_changes
    conn.executemany("DELETE FROM ids_recent WHERE pid = ? AND id = ?", keys)
    removed = conn.total_changes - before
    conn.executemany("DELETE FROM ids_settled WHERE pid = ? AND id = ?", keys)
    return removed


class Settler:
    """Moves ``ids_recent``'s excess to ``ids_settled``, sweeping the key space in order."""

    def __init__(self) -> None:
        self._after: tuple[int, str] = _START

    def settle(self, conn: sqlite3.Connection, held: int) -> int:
        """Move what ``ids_recent`` holds past :data:`SETTLE_AFTER` (``held`` entries now),
        at most :data:`MAX_SETTLE`; returns how many it holds afterwards."""
        excess = min(held - SETTLE_AFTER, MAX_SETTLE)
        if excess <= 0:
            return held
        after = self._after
        last = conn.execute("SELECT pid, id FROM ids_recent WHERE (pid, id) > (?, ?) "
                            "ORDER BY pid, id LIMIT 1 OFFSET ?", (*after, excess - 1)).fetchone()
        if last is None:  # fewer than that left before the end: move them, then start over
            self._after = _START
            last = conn.execute("SELECT pid, id FROM ids_recent "
                                "ORDER BY pid DESC, id DESC LIMIT 1").fetchone()
            if last is None:  # nothing in ids_recent: the count was wrong; it is 0
                return 0
        else:
            self._after = (last[0], last[1])
        span = "(pid, id) > (?, ?) AND (pid, id) <= (?, ?)"
        conn.execute(f"INSERT INTO ids_settled (pid, id, xact) SELECT pid, id, xact "
                     f"FROM ids_recent WHERE {span}", (*after, *last))
        before = conn.total_changes
        conn.execute(f"DELETE FROM ids_recent WHERE {span}", (*after, *last))
        return held - (conn.total_changes - before)
