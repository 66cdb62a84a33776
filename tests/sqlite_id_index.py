"""Test helper: what is wrong with a SQLite database's id index (``_ids.py`` of the SQLite
engine), if anything."""

from __future__ import annotations

import sqlite3

from spanlog.server.store.sqlite._ids import ROW_IDS


def id_index_problems(path: str) -> list[str]:
    """Every row has one entry, in one of the two tables, holding its xact; there is no other
    entry; and ``meta.ids_recent`` counts ``ids_recent``. Returns what breaks that."""
    conn = sqlite3.connect(path)
    try:
        def count(sql: str) -> int:
            return int(conn.execute(sql).fetchone()[0])

        problems = {
            "ids in both tables": count("SELECT count(*) FROM ids_recent "
                                        "JOIN ids_settled USING (pid, id)"),
            "rows without their entry": count(
                f"SELECT count(*) FROM rows AS r WHERE NOT EXISTS (SELECT 1 FROM {ROW_IDS} "
                "AS i WHERE i.pid = r.pid AND i.id = r.id AND i.xact = r.xact)"),
            "entries without their row": count(
                f"SELECT count(*) FROM {ROW_IDS} AS i WHERE NOT EXISTS (SELECT 1 FROM rows "
                "AS r WHERE r.xact = i.xact AND r.pid = i.pid AND r.id = i.id)"),
            "meta.ids_recent off by": count(
                "SELECT (SELECT value FROM meta WHERE key = 'ids_recent') - "
                "(SELECT count(*) FROM ids_recent)"),
        }
        return [f"{what}: {n}" for what, n in problems.items() if n]
    finally:
        conn.close()
