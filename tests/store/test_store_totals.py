"""Both engines alike: trace totals on root listings (``trace_totals``, docs/protocol.md), kept
up to date through merges, rewrites and deletes, and filled in for rows stored by an older
spanlog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engines import make_store
from older_database import as_older

from spanlog.server.store._aggregate import window
from spanlog.server.store._engine import Store
from spanlog.server.store._records import Piece, Project
from store_projects import default_org_project

CREATED = "2024-01-01T00:00:00+00:00"


def chat_trace(trace: str) -> list[dict[str, Any]]:
    """A root, two LLM calls (one priced by its client, one of an unknown model), a tool span
    that failed, and a comment on the root."""
    return [
        {"id": f"{trace}-root", "span_id": f"{trace}-r", "root_span_id": trace,
         "span_attributes": {"name": "answer", "type": "task"},
         "metrics": {"start": 100.0, "end": 110.5}, "scores": {"q": 1}, "created": CREATED},
        {"id": f"{trace}-llm1", "span_id": f"{trace}-l1", "root_span_id": trace,
         "span_parents": [f"{trace}-r"], "span_attributes": {"name": "chat", "type": "llm"},
         "metadata": {"model": "gpt-4o-mini"},
         "metrics": {"start": 101.0, "end": 103.0, "prompt_tokens": 100,
                     "completion_tokens": 20, "tokens": 120, "estimated_cost": 0.25},
         "created": CREATED},
        {"id": f"{trace}-llm2", "span_id": f"{trace}-l2", "root_span_id": trace,
         "span_parents": [f"{trace}-r"], "span_attributes": {"name": "chat", "type": "llm"},
         "metadata": {"model": "a-model-nobody-prices"},
         "metrics": {"start": 104.0, "end": 109.0, "prompt_tokens": 7,
                     "completion_tokens": 3},
         "created": CREATED},
        {"id": f"{trace}-tool", "span_id": f"{trace}-t", "root_span_id": trace,
         "span_parents": [f"{trace}-r"], "span_attributes": {"name": "search", "type": "tool"},
         "metrics": {"start": 103.0, "end": 111.0}, "error": "timed out", "created": CREATED},
        {"id": f"{trace}-comment", "origin": {"id": f"{trace}-root"},
         "comment": {"text": "fine"}, "scores": {"q": 0}, "created": CREATED},
    ]


async def roots(store: Store, p: Project) -> dict[str, dict[str, Any]]:
    page = await store.fetch(p.id, roots_only=True, limit=100)
    return {row["id"]: row["trace_totals"] for row in page.rows}


EXPECTED = {"spans": 4, "llm_calls": 2, "prompt_tokens": 107, "completion_tokens": 23,
            "tokens": 130, "estimated_cost": 0.25, "unpriced_llm_calls": 1, "errors": 1,
            "duration": 11.0}


async def test_totals_of_a_trace(store: Store) -> None:
    """Every figure of a root's ``trace_totals`` sums its whole trace: tokens (``tokens``
    from the prompt and completion counts when the span has none), LLM calls, the cost that
    is known and how many calls had none, errors, and the time from the first start to the
    last end. A comment row is no span."""
    p = await default_org_project(store)
    await store.write([Piece(p.id, row) for row in chat_trace("t1")])
    assert (await roots(store, p))["t1-root"] == EXPECTED


async def test_totals_follow_merges_rewrites_and_deletes(store: Store) -> None:
    """A merge that adds tokens and an error to a span, a rewrite that removes the price, and
    a deleted span all change the totals the next page shows."""
    p = await default_org_project(store)
    await store.write([Piece(p.id, row) for row in chat_trace("t1")])
    await store.write([Piece(p.id, {"id": "t1-llm2", "_is_merge": True,
                                    "metrics": {"tokens": 50}, "error": "refused"})])
    after_merge = (await roots(store, p))["t1-root"]
    assert after_merge == {**EXPECTED, "tokens": 170, "errors": 2}
    rewritten = {**chat_trace("t1")[1], "metrics": {"start": 101.0, "end": 103.0}}
    await store.write([Piece(p.id, rewritten)])
    assert (await roots(store, p))["t1-root"] == {
        **EXPECTED, "prompt_tokens": 7, "completion_tokens": 3, "tokens": 50,
        "estimated_cost": None, "unpriced_llm_calls": 2, "errors": 2}
    await store.write([Piece(p.id, {"id": "t1-tool", "_object_delete": True})])
    assert (await roots(store, p))["t1-root"] == {
        **EXPECTED, "spans": 3, "prompt_tokens": 7, "completion_tokens": 3, "tokens": 50,
        "estimated_cost": None, "unpriced_llm_calls": 2, "errors": 1, "duration": 10.5}


async def test_totals_of_a_page_of_traces(store: Store) -> None:
    """Each root of a page gets its own trace's totals, a root without a ``root_span_id`` is
    a trace of one, and a root whose span has no times has no duration."""
    p = await default_org_project(store)
    for trace in ("t1", "t2", "t3"):
        await store.write([Piece(p.id, row) for row in chat_trace(trace)])
    await store.write([Piece(p.id, {"id": "alone", "span_id": "a", "created": CREATED,
                                    "span_attributes": {"type": "llm"},
                                    "metrics": {"start": 5.0, "end": 6.5, "tokens": 9}})])
    await store.write([Piece(p.id, {"id": "untimed", "span_id": "u", "root_span_id": "u",
                                    "created": CREATED})])
    found = await roots(store, p)
    assert {k: found[k] for k in ("t1-root", "t2-root", "t3-root")} == {
        "t1-root": EXPECTED, "t2-root": EXPECTED, "t3-root": EXPECTED}
    assert found["alone"] == {"spans": 1, "llm_calls": 1, "prompt_tokens": 0,
                              "completion_tokens": 0, "tokens": 9, "estimated_cost": None,
                              "unpriced_llm_calls": 1, "errors": 0, "duration": 1.5}
    assert found["untimed"] == {"spans": 1, "llm_calls": 0, "prompt_tokens": 0,
                                "completion_tokens": 0, "tokens": 0, "estimated_cost": None,
                                "unpriced_llm_calls": 0, "errors": 0, "duration": None}


async def test_bad_metric_values_count_as_missing(store: Store) -> None:
    """Token counts and times that are no finite non-negative numbers are left out of the
    totals instead of failing the write or the read."""
    p = await default_org_project(store)
    await store.write([Piece(p.id, {
        "id": "odd", "span_id": "o", "root_span_id": "o", "created": CREATED,
        "span_attributes": {"type": "llm"},
        "metrics": {"start": "soon", "end": True, "prompt_tokens": -3,
                    "completion_tokens": 2.5, "tokens": 10**30, "estimated_cost": "free"}})])
    assert (await roots(store, p))["odd"] == {
        "spans": 1, "llm_calls": 1, "prompt_tokens": 0, "completion_tokens": 0, "tokens": 0,
        "estimated_cost": None, "unpriced_llm_calls": 1, "errors": 0, "duration": None}


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_rows_stored_by_an_older_spanlog_get_totals(
        engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A database written before trace totals existed (SQLite index version 5; PostgreSQL
    schema version 2) gets them, and the aggregates' rollups, for every stored row when a
    collector opens it."""
    store = await make_store(engine, request, tmp_path, "old")
    p = await default_org_project(store)
    await store.write([Piece(p.id, row) for row in chat_trace("t1")])
    store = await as_older(
        store, sqlite="DROP TABLE spans; DROP TABLE rollup; DROP TABLE rollup_latency; "
                      "DROP TABLE rollup_scores; "
                      "UPDATE meta SET value = 5 WHERE key = 'index_version'",
        postgres="DROP TABLE spanlog_spans, spanlog_rollup, spanlog_rollup_latency, "
                 "spanlog_rollup_scores; DELETE FROM spanlog_schema WHERE version = 3")
    await store.start()
    try:
        assert (await roots(store, p))["t1-root"] == EXPECTED
        # The rollups too: an hourly aggregate over whole hours reads only them.
        summary = (await store.aggregate(p.id, window(0, 3600, 3600, None, None, 0)))["summary"]
        assert (summary["traces"], summary["llm_calls"], summary["tokens"]) == (1, 2, 130)
    finally:
        await store.close()
