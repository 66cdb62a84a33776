"""Two `spanlog serve --postgres` processes on one PostgreSQL database under load from SDK
client processes."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pg_cluster import Cluster, new_database
from pg_serve import start_serve, stop

HERE = Path(__file__).parent
CLIENTS = 4
TRACES = 25
RAW_SPANS = 30


@pytest.fixture
def collectors(pg_cluster: Cluster) -> Iterator[list[str]]:
    """Two collector processes serving one fresh database; their URLs."""
    url = asyncio.run(new_database(pg_cluster))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        urls = []
        for _ in range(2):
            proc, base, _ = start_serve(url, "--postgres-pool-size", "8")
            procs.append(proc)
            urls.append(base)
        yield urls
    finally:
        codes = [stop(p) for p in procs]
        assert codes == [0] * len(procs), f"collectors exited with {codes}"


def _call(base: str, path: str, body: Any) -> Any:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _all_rows(base: str, project_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    body: dict[str, Any] = {"limit": 1000}
    for _ in range(100):
        page = _call(base, f"/v1/project_logs/{project_id}/fetch", body)
        rows.extend(page["events"])
        if not page["cursor"]:
            return rows
        body["cursor"] = page["cursor"]
    raise AssertionError("fetch never ran out of pages")


def _raw_pieces(span: int) -> list[dict[str, Any]]:
    row_id = f"raw-{span}"
    common = {"id": row_id, "project_name": "load"}
    return [
        {**common, "span_id": f"{span:016x}", "root_span_id": f"{span:032x}",
         "span_parents": None, "input": span, "metrics": {"start": 1.0}, "tags": ["a"]},
        {**common, "_is_merge": True, "output": span * 2, "metrics": {"end": 2.0}},
        {**common, "_is_merge": True, "scores": {"x": 0.5}, "tags": ["b"]},
        {**common, "_is_merge": True, "metadata": {"k": span}, "tags": ["c"]},
    ]


def test_two_collectors_under_sdk_load_lose_and_duplicate_nothing(collectors: list[str]) -> None:
    """SDK processes log traces through one collector and feedback through the other while
    raw pieces of other spans race through both: every row is stored once, fully merged,
    and both collectors read back the same rows."""
    a, b = collectors
    clients = [subprocess.Popen([sys.executable, str(HERE / "pg_sdk_client.py"),
                                 *((a, b) if n % 2 == 0 else (b, a)), f"c{n}", str(TRACES)])
               for n in range(CLIENTS)]
    try:
        rand = random.Random(5)
        sends = [(rand.choice(collectors), piece) for span in range(RAW_SPANS)
                 for piece in _raw_pieces(span)]
        rand.shuffle(sends)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda s: _call(s[0], "/logs3", {"rows": [s[1]]}), sends))
        assert len(results) == len(sends)
        codes = [c.wait(timeout=180) for c in clients]
        assert codes == [0] * CLIENTS, f"SDK clients failed: {codes}"
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()

    project = _call(a, "/v1/project", {"name": "load"})
    assert _call(b, "/v1/project", {"name": "load"})["id"] == project["id"], "one project"
    rows = _all_rows(a, project["id"])
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "a row was returned twice"
    assert len(rows) == CLIENTS * TRACES * 4 + RAW_SPANS
    by_id = {r["id"]: r for r in rows}
    for n in range(CLIENTS):
        for i in range(TRACES):
            root = by_id[f"c{n}-{i}"]
            assert root["input"] == {"question": i} and root["output"] == f"answer {i}"
            assert root["metadata"] == {"client": f"c{n}", "i": i}
            assert root["scores"] == {"thumbs": 1.0}, root
            assert {"served", "rated"} <= set(root["tags"])
            for step in ("retrieve", "answer"):
                assert by_id[f"c{n}-{i}-{step}"]["output"] == f"{step} {i}"
    comments = [r for r in rows if r.get("comment")]
    assert sorted(r["origin"]["id"] for r in comments) == sorted(
        f"c{n}-{i}" for n in range(CLIENTS) for i in range(TRACES))
    for span in range(RAW_SPANS):
        row = by_id[f"raw-{span}"]
        assert (row["input"], row["output"], row["scores"], row["metadata"]) == (
            span, span * 2, {"x": 0.5}, {"k": span})
        assert row["metrics"] == {"start": 1.0, "end": 2.0} and sorted(row["tags"]) == [
            "a", "b", "c"]
    again = _all_rows(b, project["id"])
    assert [(r["id"], r["_xact_id"]) for r in again] == [(r["id"], r["_xact_id"]) for r in rows]
    xacts = [int(r["_xact_id"]) for r in rows]
    assert xacts == sorted(xacts, reverse=True) and len(set(xacts)) == len(xacts)
