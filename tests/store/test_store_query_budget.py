"""A read's time budget on both engines, and on PostgreSQL over real sockets: a slow filter
is stopped with a clear error, and SIGTERM ends `spanlog serve --postgres` within seconds
while such reads run (docs/collector.md, "What it guarantees")."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from pg_cluster import new_schema
from pg_serve import start_serve, stop

from spanlog.server.store._engine import Store
from spanlog.server.store._errors import QueryTooSlow
from spanlog.server.store._records import Piece
from spanlog.server.store.postgres._store import DEFAULT_POOL_SIZE, DEFAULT_WRITERS
from store_projects import default_org_project

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
from spanlog_server_http import call, until_logged

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
    # QueryTooSlow comes only from the budget stopping the read mid-run: one that ran to its
    # end would return a page. Once raised, the read holds nothing.
    with pytest.raises(QueryTooSlow, match=r"took longer than 0\.3 s"):
        await store.fetch(p.id, filter=SLOW)
    assert store.reads_running == 0
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
        # The 400 comes only from the budget stopping the read mid-run.
        status, body = call(base, "POST", f"/v1/project_logs/{pid}/fetch", {"filter": SLOW},
                            timeout=60)
        assert status == 400, body
        assert "took longer than 0.3 s" in body["error"]
    finally:
        stop(proc)
    proc, base, _ = start_serve(url, "--query-timeout", "60", "--log-level", "debug",
                                stderr=subprocess.PIPE)
    try:
        answers: list[Any] = []

        def slow_fetch() -> None:
            try:
                answers.append(call(base, "POST", f"/v1/project_logs/{pid}/fetch",
                                    {"filter": SLOW}, timeout=120)[0])
            except OSError as exc:  # the connection ended without an answer
                answers.append(repr(exc))

        fetches = [threading.Thread(target=slow_fetch, daemon=True) for _ in range(8)]
        for thread in fetches:
            thread.start()
        # Every read turn is taken (the store logs each read it starts at DEBUG): the pool
        # keeps its other connections for the writers and the lookups.
        turns = min(8, DEFAULT_POOL_SIZE - DEFAULT_WRITERS - 2)
        until_logged(proc, rf"a read started \({turns} running\)")
        for _ in range(3):  # lookups and ingest keep their own connections
            # Each answers while every slow fetch still runs or waits (not one answered):
            # nothing waited for a slow read. The timeouts only bound a hang.
            status, _ = call(base, "GET", "/ping", timeout=30)
            assert status == 200 and not answers, answers
            status, _ = call(base, "POST", "/logs3", {"rows": [{"id": "late",
                                                                "project_id": pid}]},
                             timeout=30)
            assert status == 200 and not answers, answers
        # SIGTERM: it ends cleanly (stop kills it after 30 s, a bound on a hang) before any
        # slow read could run to its end: each fetch answered 503 or lost its connection,
        # none got its rows (200).
        assert stop(proc) == 0
        for thread in fetches:
            thread.join(30)
        assert len(answers) == 8 and 200 not in answers, answers
    finally:
        stop(proc)
