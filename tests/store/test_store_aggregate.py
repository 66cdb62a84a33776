"""Both engines alike: a project's figures over a time range in buckets (``store._aggregate``,
docs/protocol.md "Aggregates"), checked against figures computed here from the rows."""

from __future__ import annotations

from typing import Any

import pytest

from spanlog.server.store._aggregate import window
from spanlog.server.store._engine import Store
from spanlog.server.store._errors import BadRequest
from spanlog.server.store._records import Piece
from store_projects import default_org_project

HOUR = 3600.0
T0 = 472_222 * HOUR  # on the hour: the start of the first hourly bucket


def trace(n: int, start: float, duration: float, *, model: str = "gpt-4o",
          error: bool = False, tags: list[str] | None = None, user: str = "u1",
          score: float | None = None) -> list[dict[str, Any]]:
    """A root with one LLM call (tokens 10/n, cost 0.01 per call unless unknown model)."""
    root = f"{n:032x}"
    metrics: dict[str, Any] = {"start": start + 1, "end": start + 2, "prompt_tokens": 10,
                               "completion_tokens": n, "tokens": 10 + n}
    if model != "unpriced":
        metrics["estimated_cost"] = 0.01
    rows = [
        {"id": f"root{n}", "span_id": f"{n:016x}", "root_span_id": root,
         "span_attributes": {"name": "handler", "type": "task"},
         "metrics": {"start": start, "end": start + duration},
         "metadata": {"user": user}, "tags": tags or []},
        {"id": f"llm{n}", "span_id": f"{n + 10_000:016x}", "root_span_id": root,
         "span_parents": [f"{n:016x}"], "span_attributes": {"name": "chat", "type": "llm"},
         "metadata": {"model": model}, "metrics": metrics, "tags": tags or []},
    ]
    if error:
        rows[1]["error"] = "rate limited"
    if score is not None:
        rows[0]["scores"] = {"good": score}
    return rows


async def write(store: Store, project_id: str, traces: list[list[dict[str, Any]]]) -> None:
    await store.write([Piece(project_id, row) for rows in traces for row in rows])


async def test_buckets_and_summary(store: Store) -> None:
    """Counts, sums, latency percentiles (from 25%-wide bins) and score averages per hourly
    bucket, and over the whole range; empty buckets are zeros and nulls; spans outside the
    range and in other projects do not count."""
    p = await default_org_project(store)
    other = await default_org_project(store, "other")
    durations = [float(d) for d in range(1, 21)]  # 20 traces in the first hour
    await write(store, p.id, [trace(i, T0 + 60 * i, d, score=1.0 if i % 2 else 0.0)
                              for i, d in enumerate(durations)])
    await write(store, p.id, [trace(100, T0 + 2 * HOUR + 5, 7.0, error=True,
                                    model="unpriced")])
    await write(store, p.id, [trace(200, T0 - 10, 1.0), trace(201, T0 + 3 * HOUR, 1.0)])
    await write(store, other.id, [trace(300, T0 + 5, 1.0)])
    result = await store.aggregate(p.id, window(T0, T0 + 3 * HOUR, HOUR, None, None, 0))
    assert result["buckets"] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    (series,) = result["series"]
    assert series["group"] is None
    assert series["traces"] == [20, 0, 1]
    assert series["errors"] == [0, 0, 1]  # the failed LLM call
    assert series["failed_traces"] == [0, 0, 0]  # its root did not fail
    assert series["llm_calls"] == [20, 0, 1]
    assert series["prompt_tokens"] == [200, 0, 10]
    assert series["completion_tokens"] == [sum(range(20)), 0, 100]
    assert series["tokens"] == [200 + sum(range(20)), 0, 110]
    assert series["cost"][0] == pytest.approx(0.2) and series["cost"][1:] == [None, None]
    assert series["unpriced_llm_calls"] == [0, 0, 1]
    # Nearest rank over 1..20: p50 is the 10th value, p95 the 19th, p99 the 20th, each
    # given as the middle of its bin.
    for key, expected in (("latency_p50", 10.0), ("latency_p95", 19.0), ("latency_p99", 20.0)):
        assert series[key][0] == pytest.approx(expected, rel=0.12), key
        assert series[key][1] is None and series[key][2] == pytest.approx(7.0, rel=0.12)
    assert series["scores"] == {"good": [0.5, None, None]}
    summary = result["summary"]
    assert summary["traces"] == 21 and summary["errors"] == 1
    assert summary["failed_traces"] == 0 and summary["error_rate"] == 0
    assert summary["llm_calls"] == 21 and summary["unpriced_llm_calls"] == 1
    assert summary["cost"] == pytest.approx(0.2)
    assert summary["tokens"] == 200 + sum(range(20)) + 110
    # Ranks 11, 20, 21 of 1..20 and 7: 10, 19, 20.
    assert summary["latency_p50"] == pytest.approx(10.0, rel=0.12)
    assert summary["latency_p95"] == pytest.approx(19.0, rel=0.12)
    assert summary["latency_p99"] == pytest.approx(20.0, rel=0.12)
    assert summary["scores"] == {"good": 0.5}


async def test_split_by_model_name_and_tag(store: Store) -> None:
    """Each span counts in the group of its own model, name or tags (a span with two tags in
    both; one without in the null group)."""
    p = await default_org_project(store)
    await write(store, p.id, [trace(1, T0, 1.0, model="a", tags=["x"]),
                              trace(2, T0 + 10, 1.0, model="b", tags=["x", "y"]),
                              trace(3, T0 + HOUR, 1.0, model="b")])
    win = window(T0, T0 + 2 * HOUR, HOUR, "model", None, 0)
    by_model = {s["group"]: s for s in (await store.aggregate(p.id, win))["series"]}
    assert set(by_model) == {"a", "b", None}  # roots have no model
    assert by_model["a"]["llm_calls"] == [1, 0]
    assert by_model["b"]["llm_calls"] == [1, 1]
    assert by_model[None]["traces"] == [2, 1] and by_model[None]["llm_calls"] == [0, 0]
    win = window(T0, T0 + 2 * HOUR, HOUR, "name", None, 0)
    by_name = {s["group"]: s for s in (await store.aggregate(p.id, win))["series"]}
    assert by_name["handler"]["traces"] == [2, 1] and by_name["chat"]["llm_calls"] == [2, 1]
    win = window(T0, T0 + 2 * HOUR, HOUR, "tag", None, 0)
    by_tag = {s["group"]: s for s in (await store.aggregate(p.id, win))["series"]}
    assert by_tag["x"]["traces"] == [2, 0] and by_tag["y"]["traces"] == [1, 0]
    assert by_tag[None]["traces"] == [0, 1]
    assert [s["group"] for s in (await store.aggregate(p.id, win))["series"]] == [
        "x", "y", None]


async def test_filter_keeps_traces_whose_root_matches(store: Store) -> None:
    """With a filter, only the traces whose root matches count, all their spans with them
    (the LLM call carries no user, its root does)."""
    p = await default_org_project(store)
    await write(store, p.id, [trace(1, T0, 1.0, user="ann"), trace(2, T0 + 5, 2.0, user="bob"),
                              trace(3, T0 + 9, 3.0, user="ann", error=True)])
    win = window(T0, T0 + HOUR, HOUR, None, "metadata.user = 'ann'", 0)
    summary = (await store.aggregate(p.id, win))["summary"]
    assert (summary["traces"], summary["llm_calls"], summary["errors"]) == (2, 2, 1)
    assert summary["latency_p99"] == pytest.approx(3.0, rel=0.12)
    win = window(T0, T0 + HOUR, HOUR, None, "metadata.user = 'nobody'", 0)
    summary = (await store.aggregate(p.id, win))["summary"]
    assert (summary["traces"], summary["llm_calls"], summary["cost"]) == (0, 0, None)
    with pytest.raises(BadRequest, match="filter:"):
        await store.aggregate(p.id, window(T0, T0 + HOUR, HOUR, None, "metadata.user = ", 0))


@pytest.mark.parametrize(("args", "message"), [
    ((T0, T0, HOUR, None, None), "until: must be after since"),
    ((T0, T0 + HOUR, 0, None, None), "bucket: must be a number of seconds of at least 1"),
    ((T0, T0 + HOUR, "1h", None, None), "bucket: must be a number"),
    ((T0, T0 + 100 * 86400, 60, None, None), "bucket: 60 s makes 144000 buckets"),
    ((T0 + 30, T0 + 90, 60, None, None), None),  # two buckets: 30 s of each
    ((T0, T0 + HOUR, HOUR, "user", None), "split_by: must be one of model, name, tag"),
    ((T0, T0 + HOUR, HOUR, None, 3), "filter: must be a string"),
])
def test_bad_windows_are_named(args: tuple[Any, ...], message: str | None) -> None:
    if message is None:
        assert window(*args, now=T0).buckets == 2
        return
    with pytest.raises(BadRequest, match=message):
        window(*args, now=T0)


def test_default_window_and_bucket() -> None:
    """No range: the last 24 hours; no bucket: the smallest usual size giving at most 200
    buckets, whole hours from 6 hours up (an hour for a day or a week, a minute for an
    hour); buckets are aligned to their size, the first and last clipped."""
    day = window(None, None, None, None, None, now=T0)
    assert (day.since, day.until, day.bucket, day.buckets) == (T0 - 86400, T0, 3600.0, 24)
    week = window(T0 - 7 * 86400, T0, None, None, None, now=T0)
    assert (week.bucket, week.buckets) == (3600.0, 168)
    hour = window(T0 - 3600, T0, None, None, None, now=T0)
    assert (hour.bucket, hour.buckets) == (60.0, 60)
    month = window(T0 - 30 * 86400, T0, None, None, None, now=T0)
    # T0 is on the hour, not on 6 hours: the first and last buckets are partial.
    assert (month.bucket, month.buckets) == (6 * 3600.0, 121)
    odd = window(T0 + 600, T0 + 2 * HOUR + 60, HOUR, None, None, now=0)
    assert odd.buckets == 3 and odd.slot(T0 + 700) == 0 and odd.slot(T0 + 2 * HOUR) == 2


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    return {"buckets": result["buckets"], "series": result["series"],
            "summary": result["summary"]}


async def test_rollups_agree_with_the_spans(store: Store) -> None:
    """An hourly aggregate (whole hours from the rollups, partial ones from the spans) equals
    the same aggregate folded from every span (a filter every root matches forces that), for
    a range cut mid-hour, each split, after merges, rewrites and deletes."""
    p = await default_org_project(store)
    traces = [trace(i, T0 + i * 997.0, 1.0 + i % 7, model=("a", "b", "unpriced")[i % 3],
                    tags=[["x"], ["x", "y"], []][i % 3], error=i % 5 == 0,
                    score=(i % 4) / 4) for i in range(40)]
    await write(store, p.id, traces)
    await store.write([Piece(p.id, {"id": "llm3", "_is_merge": True, "error": "late",
                                    "metrics": {"tokens": 999}})])
    await store.write([Piece(p.id, {**traces[4][0], "tags": ["z"], "scores": {"good": 1}})])
    await store.write([Piece(p.id, {"id": "llm7", "_object_delete": True})])
    since, until = T0 + 1234.0, T0 + 40 * 997.0 - 500
    for split in (None, "model", "name", "tag"):
        hourly = await store.aggregate(p.id, window(since, until, 2 * HOUR, split, None, 0))
        raw = await store.aggregate(p.id, window(since, until, 2 * HOUR, split,
                                                 "id IS NOT NULL", 0))
        assert comparable(hourly) == comparable(raw), split
    assert hourly["summary"]["tokens"] > 999


async def test_rollups_of_an_older_database_are_filled(store: Store) -> None:
    """Deleting every span through the store leaves the rollups empty (no figure drifts)."""
    p = await default_org_project(store)
    await write(store, p.id, [trace(i, T0 + i * 600.0, 2.0) for i in range(12)])
    await store.write([Piece(p.id, {"id": row["id"], "_object_delete": True})
                       for i in range(12) for row in trace(i, T0 + i * 600.0, 2.0)])
    result = await store.aggregate(p.id, window(T0, T0 + 2 * HOUR, HOUR, "tag", None, 0))
    assert result["series"] == [] or all(
        sum(s["traces"]) == 0 and sum(s["llm_calls"]) == 0 for s in result["series"])
    assert result["summary"]["traces"] == 0 and result["summary"]["scores"] == {}


async def test_rollups_folded_in_an_ingest_worker(tmp_path: Any) -> None:
    """Rows prepared as an ingest worker prepares them (``prepare_rows``, which also folds a
    job's rollup cells) give the same aggregates as rows written plainly, for a job of one
    project, a job of two, and a job that merges into stored rows."""
    from spanlog.server.store.sqlite._pieces import prepare_rows
    from spanlog.server.store.sqlite._store import SqliteStore

    async def fill(store: SqliteStore, worker: bool) -> tuple[str, str]:
        p = await default_org_project(store)
        other = await default_org_project(store, "other")
        jobs = [[(p.id, row) for i in range(6)
                 for row in trace(i, T0 + i * 700.0, 1.0 + i, tags=["t"])],
                [(p.id, row) for row in trace(10, T0 + 100, 2.0)]
                + [(other.id, row) for row in trace(11, T0 + 200, 3.0)],
                [(p.id, {"id": "llm2", "_is_merge": True, "metrics": {"tokens": 77}}),
                 (p.id, {"id": "root3", "_is_merge": True, "error": "boom"})]]
        for job in jobs:
            if worker:
                rows, prepared = prepare_rows([row for _, row in job])
                pieces = [Piece(pid, row) for (pid, _), row in zip(job, rows, strict=True)]
                await store.write(pieces, prepared=prepared)  # type: ignore[arg-type]
            else:
                await store.write([Piece(pid, row) for pid, row in job])
        return p.id, other.id

    answers = []
    for worker in (False, True):
        store = SqliteStore(str(tmp_path / f"w{worker}.sqlite3"))
        await store.start()
        try:
            ids = await fill(store, worker)
            answers.append([comparable(await store.aggregate(
                project, window(T0, T0 + 3 * HOUR, HOUR, split, None, 0)))
                for project in ids for split in (None, "tag", "model")])
        finally:
            await store.close()
    assert answers[0] == answers[1]
    assert answers[0][0]["summary"]["traces"] == 7 and answers[0][0]["summary"]["errors"] == 1
