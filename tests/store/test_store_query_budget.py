"""A read's time budget on both engines, and on PostgreSQL over real sockets: a slow filter
is stopped with a clear error, and SIGTERM ends `spanlog serve --postgres` within seconds
while such reads run (docs/collector.md, "What it guarantees")."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pg_cluster import new_schema
from pg_serve import start_serve, stop

from spanlog.server.store._engine import Store
from spanlog.server.store._errors import QueryTooSlow
from spanlog.server.store._records import Piece
from store_projects import default_org_project

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
from spanlog_server_http import call

# Within every filter limit, and still seconds of work over rows of ~7 KB on either engine
# (each finds a different pattern hard).
SLOW = " OR ".join(["input ILIKE '%a%a%z'"] * 4 + [f"input ILIKE '%a%{i}%z'" for i in range(4)])
ROWS = 3_000


@pytest.mark.slow
async def test_a_read_past_its_budget_is_stopped(store: Store) -> None:
    """Past ``query_timeout`` a fetch raises QueryTooSlow (HTTP 400) within about the
    budget, and the store serves the next read normally."""
    p = await default_org_project(store)
    for start in range(0, ROWS, 500):
        await store.write([Piece(p.id, {"id": f"r{i}", "input": "a" * 7_000})
                           for i in range(start, start + 500)])
    store.query_timeout = 0.3
    began = time.monotonic()
    with pytest.raises(QueryTooSlow, match=r"took longer than 0\.3 s"):
        await store.fetch(p.id, filter=SLOW)
    assert time.monotonic() - began < 2.0
    with pytest.raises(QueryTooSlow):
        await store.fetch(p.id, filter=SLOW, roots_only=True)
    page = await store.fetch(p.id, filter="id = 'r5'")
    assert [r["id"] for r in page.rows] == ["r5"]


def _load(url: str) -> str:
    status, body = call(url, "POST", "/v1/project", {"name": "slow"})
    assert status == 200, body
    pid = str(body["id"])
    for start in range(0, ROWS, 500):
        batch = [{"id": f"r{i}", "project_id": pid, "input": "a" * 7_000}
                 for i in range(start, start + 500)]
        status, body = call(url, "POST", "/logs3", {"rows": batch}, timeout=60)
        assert status == 200, body
    return pid


@pytest.mark.slow
def test_postgres_serve_budget_and_sigterm(pg_cluster: Any) -> None:
    """`spanlog serve --postgres --query-timeout 0.3`: the slow filter answers 400 saying
    so, /ping answers meanwhile; with a long budget, SIGTERM still ends it within seconds."""
    import asyncio

    url = asyncio.run(new_schema(pg_cluster))
    proc, base, _ = start_serve(url, "--query-timeout", "0.3")
    try:
        pid = _load(base)
        began = time.monotonic()
        status, body = call(base, "POST", f"/v1/project_logs/{pid}/fetch", {"filter": SLOW},
                            timeout=60)
        assert status == 400, body
        assert "took longer than 0.3 s" in body["error"]
        assert time.monotonic() - began < 3.0
    finally:
        stop(proc)
    proc, base, _ = start_serve(url, "--query-timeout", "60")
    try:
        for _ in range(4):
            threading.Thread(target=call, args=(base, "POST",
                             f"/v1/project_logs/{pid}/fetch", {"filter": SLOW}),
                             kwargs={"timeout": 120}, daemon=True).start()
        for _ in range(4):
            threading.Thread(target=call, args=(base, "POST",
                             f"/v1/project_logs/{pid}/fetch", {"filter": SLOW}),
                             kwargs={"timeout": 120}, daemon=True).start()
        time.sleep(0.5)
        for _ in range(3):  # lookups and ingest keep their own connections
            began = time.monotonic()
            status, _ = call(base, "GET", "/ping")
            assert status == 200 and time.monotonic() - began < 1.5
            status, _ = call(base, "POST", "/logs3", {"rows": [{"id": "late",
                                                                "project_id": pid}]})
            assert status == 200 and time.monotonic() - began < 1.5
        began = time.monotonic()
        stop(proc)
        assert time.monotonic() - began < 5.0
    finally:
        stop(proc)
