"""A started store of either engine on fresh storage, for the store suite's fixtures and for
tests that open a store themselves (to turn it into an older one, for instance)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pg_cluster import new_schema

from spanlog.server.store._engine import Store
from spanlog.server.store.postgres._store import PostgresStore
from spanlog.server.store.sqlite._store import SqliteStore


async def make_store(engine: str, request: pytest.FixtureRequest, tmp_path: Path,
                     name: str = "store") -> Store:
    """A started store of ``engine`` on fresh storage."""
    if engine == "sqlite":
        store: Store = SqliteStore(str(tmp_path / f"{name}.sqlite3"))
    else:
        store = PostgresStore(await new_schema(request.getfixturevalue("pg_cluster")))
    await store.start()
    return store
