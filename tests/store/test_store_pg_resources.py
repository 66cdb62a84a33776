"""PostgreSQL out of resources is answered 503 with what ran out, not "unreachable".

The database here is reachable: it refuses a new connection because every slot is taken
(SQLSTATE 53300, too_many_connections). The test takes every slot for real on a server of
its own with a small ``max_connections``, after closing the collector's own connections, so
that the collector's next request must open one.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from pg_cluster import Cluster
from pg_serve import start_serve, stop

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
from spanlog_server_http import call

pytestmark = pytest.mark.slow

MAX_CONNECTIONS = 12
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def few_slots() -> Iterator[Cluster]:
    with Cluster(max_connections=MAX_CONNECTIONS) as cluster:
        yield cluster


async def _take_every_slot(url: str) -> list[asyncpg.Connection]:
    """Hold every connection slot of the server, none left to the collector: open
    connections until the server refuses one, close every other client's backend, and take
    the slots that frees, until no other client holds one (the collector's pool reconnects
    meanwhile, so this takes a few rounds at most)."""
    held: list[asyncpg.Connection] = []
    for _ in range(50):  # bounded rounds
        for _ in range(MAX_CONNECTIONS + 1):  # bounded: the server has MAX_CONNECTIONS slots
            try:
                held.append(await asyncpg.connect(url, timeout=10))
            except asyncpg.TooManyConnectionsError:
                break
        ours = [conn.get_server_pid() for conn in held]
        others = await held[0].fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND NOT (pid = ANY($1))", ours)
        if not others and len(held) == MAX_CONNECTIONS:
            return held
    raise AssertionError("the collector kept a connection through 50 rounds")


def test_a_full_connection_table_is_503_naming_it(few_slots: Cluster) -> None:
    proc, base, _ = start_serve(few_slots.url())
    loop = asyncio.new_event_loop()
    held: list[asyncpg.Connection] = []
    try:
        rows = [{"id": "a", "project_name": "p", "input": "x"}]
        assert call(base, "POST", "/logs3", {"rows": rows}, headers=JSON)[0] == 200
        pid = call(base, "POST", "/v1/project", {"name": "p"}, headers=JSON)[1]["id"]
        held = loop.run_until_complete(_take_every_slot(few_slots.url()))
        status, answer = call(base, "POST", f"/v1/project_logs/{pid}/fetch", {},
                              headers=JSON, timeout=60)
        assert status == 503, (status, answer)
        assert "too many connections" in answer["error"], answer
        assert "unreachable" not in answer["error"], answer
        status, answer = call(base, "POST", "/logs3", {"rows": rows}, headers=JSON,
                              timeout=60)
        assert status == 503 and "too many connections" in answer["error"], answer
        # Slots free again: the collector serves, and the first row is still there.
        for conn in held:
            loop.run_until_complete(conn.close())
        held = []
        status, page = call(base, "POST", f"/v1/project_logs/{pid}/fetch", {}, headers=JSON,
                            timeout=60)
        assert status == 200 and [r["id"] for r in page["events"]] == ["a"], page
    finally:
        for conn in held:
            loop.run_until_complete(conn.close())
        loop.close()
        assert stop(proc) == 0
