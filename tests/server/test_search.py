"""Search: filters through the collector match the reference evaluator, via the index."""

from __future__ import annotations

import random
import re
import sqlite3
import uuid
from typing import Any

import pytest
from spanlog_server_http import call

from spanlog.server import query as _filter
from spanlog.server.store.sqlite._query import build_query
from spanlog.server.store.sqlite._schema import SCHEMA

LONG_A = "a" * 300
LONG_B = "a" * 299 + "b"  # same 256-character indexed prefix as LONG_A


def _rows(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(240):
        metadata: dict[str, Any] = {
            "user_id": "rare-user" if i == 17 else f"user-{rng.randrange(4)}",
            "n": rng.choice([0, 1, 2, 3, 1.0, 2.5, True, "1"]),
            "flag": rng.choice([True, False, None, 1, 0]),
            "nested": {"env": rng.choice(["prod", "staging"]), "deep": {"k": rng.randrange(3)}},
            "list": rng.sample(["x", "y", "z", 1, 2], rng.randrange(4)),
            "long": rng.choice([LONG_A, LONG_B, "short"]),
            "odd key": rng.choice(["v1", "v2"]),
        }
        for key in list(metadata):
            if rng.random() < 0.15:
                del metadata[key]
        row: dict[str, Any] = {
            "id": f"row-{i:03d}", "metadata": metadata,
            "tags": rng.sample(["prod", "beta", "vip", "eu"], rng.randrange(3)),
            "scores": {"acc": rng.choice([0, 0.5, 1, None])},
            "span_attributes": {"name": f"span{i % 7}",
                                "type": rng.choice(["llm", "tool", "task"])},
            "span_id": f"{i:016x}", "root_span_id": f"{i // 4:032x}",
            "span_parents": None if i % 4 == 0 else [f"{i - i % 4:016x}"],
            "input": rng.choice(["refund please", "Where is my REFUND", {"q": "hello"}, None]),
        }
        rows.append(row)
    return rows


FILTERS = [
    "metadata.user_id = 'rare-user'",
    "metadata.user_id = 'user-1'",
    "metadata.user_id != 'user-1'",
    "metadata.n = 1",
    "metadata.n = '1'",
    "metadata.n = true",
    "metadata.n = 2.5",
    "metadata.flag = true",
    "metadata.flag = 1",
    "metadata.flag = false",
    "metadata.flag IS NULL",
    "metadata.nested.env = 'prod'",
    "metadata.nested.deep.k = 2",
    "metadata.nested.env = 'prod' AND metadata.user_id = 'user-2'",
    "metadata.nested.env = 'prod' AND tags includes 'vip'",
    "metadata.list includes 'x'",
    "metadata.list includes 1",
    "metadata.list = 'x'",
    "metadata.long = '" + LONG_A + "'",
    "metadata.long = '" + LONG_B + "'",
    "metadata.\"odd key\" = 'v2'",
    "tags includes 'prod'",
    "tags includes 'prod' AND tags includes 'eu'",
    "NOT tags includes 'prod'",
    "scores.acc = 0.5",
    "scores.acc > 0.4",
    "scores.acc IS NULL",
    "span_attributes.type = 'llm'",
    "span_attributes.type = 'llm' AND input ILIKE '%refund%'",
    "input LIKE '%REFUND%'",
    "input.q = 'hello'",
    "id = 'row-005'",
    "id = 'row-005' AND metadata.user_id = 'nobody'",
    "root_span_id = '" + f"{3:032x}" + "'",
    "metadata.user_id = 'user-1' OR metadata.user_id = 'user-2'",
    "(metadata.n >= 2 AND metadata.n < 3) OR metadata.flag = true",
    "metadata.user_id = 'missing-value'",
]


@pytest.fixture(scope="module")
def dataset(collector) -> tuple[str, list[dict[str, Any]]]:
    """Rows with every kind of leaf, half of them rewritten by merges after the first write."""
    project = f"search-{uuid.uuid4().hex[:8]}"
    pid = collector.project_id(project)
    rows = _rows(7)
    for start in range(0, len(rows), 60):
        status, body = call(collector.url, "POST", "/logs3",
                            {"rows": [{**r, "project_id": pid} for r in rows[start:start + 60]]},
                            token=collector.api_key)
        assert status == 200, body
    # Merges change indexed leaves: the old values must stop matching, the new ones match.
    updates = [{"id": f"row-{i:03d}", "project_id": pid, "_is_merge": True,
                "metadata": {"user_id": "user-1", "nested": {"env": "prod"}},
                "tags": ["merged"]} for i in range(0, 240, 2)]
    status, body = call(collector.url, "POST", "/logs3", {"rows": updates},
                        token=collector.api_key)
    assert status == 200, body
    return project, collector.fetch(project)


@pytest.mark.parametrize("text", FILTERS)
def test_filter_matches_reference_evaluator(collector, dataset, text):
    """Every filter returns exactly the rows the reference evaluator accepts, newest first."""
    project, everything = dataset
    expr = _filter.parse(text)
    expected = [r["id"] for r in everything if _filter.evaluate(expr, r)]
    got = [r["id"] for r in collector.fetch(project, text)]
    assert got == expected


def test_merged_leaves_replace_old_ones(collector, dataset):
    """After a merge rewrote a row, its old indexed values no longer find it."""
    project, _ = dataset
    merged = {r["id"] for r in collector.fetch(project, "tags includes 'merged'")}
    assert len(merged) == 120
    assert not merged & {r["id"] for r in collector.fetch(project, "metadata.user_id = 'user-3'")}


def test_roots_only_lists_trace_roots(collector, dataset):
    """roots_only returns only spans without parents."""
    project, _ = dataset
    pid = collector.project_id(project)
    _, page = call(collector.url, "POST", f"/v1/project_logs/{pid}/fetch",
                   {"roots_only": True, "limit": 1000}, token=collector.api_key)
    assert sorted(r["id"] for r in page["events"]) == [f"row-{i:03d}" for i in range(0, 240, 4)]


def _plan(text: str | None, *, roots_only: bool = False, before: int | None = None) -> str:
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA)
        sql, params = build_query(conn, pid=1, filter_text=text, limit=50, before=before,
                                  roots_only=roots_only)
        return " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    finally:
        conn.close()


_POSTINGS = "PRIMARY KEY (epoch=? AND field=? AND value=?)"


@pytest.mark.parametrize(("text", "uses"), [
    (None, "INDEX rows_by_project (pid=?)"),
    ("metadata.user_id = 'x'", _POSTINGS),
    ("scores.acc = 1 AND tags includes 'a'", _POSTINGS),
    ("span_attributes.type = 'llm' AND input ILIKE '%x%'",
     _POSTINGS),
    ("id = 'x'", "SEARCH ids_settled USING PRIMARY KEY (pid=? AND id=?)"),
    ("root_span_id = 'x'", "INDEX rows_by_trace (pid=? AND root_span_id=?)"),
])
def test_plans_use_an_index_in_order(text, uses):
    """Latest-page and equality plans walk an index in transaction order: no scan, no sort
    (the scans allowed are json_each over the ids of one posting or a candidate's array,
    and the walk of the postings' epochs, newest first)."""
    plan = _plan(text)
    assert uses in plan
    assert not re.search(r"SCAN (?!\w+ VIRTUAL TABLE|e$|e \|)", plan), plan
    assert "TEMP B-TREE" not in plan


def test_roots_only_and_cursor_stay_in_the_index():
    """roots_only and a cursor narrow the same index range instead of filtering rows."""
    assert "rows_roots (pid=? AND rowid<?)" in _plan(None, roots_only=True,
                                                                     before=9)
    # The walk starts at the posting that holds the cursor, not at the newest one.
    plan = _plan("metadata.a = 'b'", before=9)
    assert "value=? AND first<?" in plan
    # ...and in the epoch that holds it: newer epochs are not visited.
    assert "SEARCH e USING INTEGER PRIMARY KEY (rowid<?)" in plan
    # An id filter reads its row by rowid, cursor or not: never the project's rows.
    for roots_only in (False, True):
        plan = _plan("id = 'x'", before=9, roots_only=roots_only)
        assert plan.startswith("SEARCH r USING INTEGER PRIMARY KEY (rowid=?)"), plan
