"""Both engines alike: a fetch limited to a time range keeps the spans that started in it."""

from __future__ import annotations

from typing import Any

from spanlog.server.store._engine import Store
from spanlog.server.store._records import Piece
from store_projects import default_org_project, ids


def span(i: int, start: float | None, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": f"s{i}", "span_id": f"{i:016x}", "root_span_id": f"{i:032x}",
                           "created": "2024-01-01T00:00:00+00:00", **extra}
    if start is not None:
        row["metrics"] = {"start": start}
    return row


async def test_range_keeps_spans_that_started_in_it(store: Store) -> None:
    """``[since, until)`` on the span's start, through cursor pages, with filters and
    ``roots_only``; a row without a start is placed at its ``created`` time, and a comment
    row (no span) is left out of a ranged fetch."""
    p = await default_org_project(store)
    created_2024 = 1704067200.0  # 2024-01-01T00:00:00Z
    await store.write([Piece(p.id, span(i, 1000.0 + i * 10, metadata={"even": i % 2 == 0}))
                       for i in range(10)])
    await store.write([Piece(p.id, span(10, None)),
                       Piece(p.id, {"id": "c", "origin": {"id": "s1"},
                                    "comment": {"text": "hi"}})])
    every = await ids(store, p.id, limit=2)
    assert len(every) == 12
    assert await ids(store, p.id, limit=2, since=1030.0, until=1070.0) == [
        "s6", "s5", "s4", "s3"]
    assert await ids(store, p.id, limit=2, since=1085.0) == ["s10", "s9"]
    assert await ids(store, p.id, limit=2, until=1010.0) == ["s0"]
    assert await ids(store, p.id, "metadata.even = true", limit=2, since=1030.0,
                     until=1070.0) == ["s6", "s4"]
    assert await ids(store, p.id, limit=2, since=1030.0, until=1070.0, roots_only=True) == [
        "s6", "s5", "s4", "s3"]
    assert await ids(store, p.id, limit=2, since=created_2024 - 1,
                     until=created_2024 + 1) == ["s10"]
    assert await ids(store, p.id, limit=2, since=5000.0, until=6000.0) == []
