"""Test helper: a database as an older spanlog left it, to check what a newer one makes of it."""

from __future__ import annotations

import sqlite3

import asyncpg

from spanlog.server.store._engine import Store
from spanlog.server.store.postgres._store import PostgresStore
from spanlog.server.store.sqlite._store import SqliteStore


async def as_older(store: Store, *, sqlite: str, postgres: str) -> Store:
    """Close the started ``store``, run the engine's SQL (``sqlite`` or ``postgres``) that
    takes its database back to an older layout, and return a new, unstarted store on it."""
    await store.close()
    if isinstance(store, SqliteStore):
        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            conn.executescript(sqlite)
        finally:
            conn.close()
        return SqliteStore(store.path)
    assert isinstance(store, PostgresStore)
    conn_pg = await asyncpg.connect(store.url)
    try:
        await conn_pg.execute(postgres)
    finally:
        await conn_pg.close()
    return PostgresStore(store.url)
