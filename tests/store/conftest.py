"""Fixtures for the store suite: a throwaway PostgreSQL cluster and stores of both engines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from engines import make_store
from pg_cluster import Cluster, new_database

from spanlog.server.store._engine import Store

ENGINES = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A PostgreSQL 15 server of its own for the session, removed afterwards."""
    with Cluster() as cluster:
        yield cluster


@pytest.fixture
async def pg_url(pg_cluster: Cluster) -> str:
    """The URL of a fresh, empty database (no schema yet)."""
    return await new_database(pg_cluster)


@pytest.fixture(params=ENGINES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A started store, once per engine: every test using it must pass on both."""
    started = await make_store(request.param, request, tmp_path)
    try:
        yield started
    finally:
        await started.close()


@pytest.fixture
async def both(request: pytest.FixtureRequest,
               tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """A SQLite and a PostgreSQL store side by side, for differential tests."""
    sqlite = await make_store("sqlite", request, tmp_path)
    try:
        postgres = await make_store("postgres", request, tmp_path)
        try:
            yield sqlite, postgres
        finally:
            await postgres.close()
    finally:
        await sqlite.close()
