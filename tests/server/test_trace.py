"""Reading a whole trace: every span with the average of each score over its subtree."""

from __future__ import annotations

import json
import random
import sys
import uuid
from typing import Any

import pytest
from spanlog_server_http import call

from spanlog.server.store._scores import subtree_averages, trace_links, with_score_averages


def test_scores_average_over_descendants():
    """Each span averages a score over itself and all spans below it; nulls do not count."""
    rows = [
        {"span_id": "root", "span_parents": None, "scores": {}},
        {"span_id": "answer", "span_parents": ["root"], "scores": {"auto": 0.5}},
        {"span_id": "fb1", "span_parents": ["answer"], "scores": {"helpful": 1}},
        {"span_id": "fb2", "span_parents": ["answer"], "scores": {"helpful": 0, "auto": None}},
        {"span_id": "fb3", "span_parents": ["answer"], "scores": {"helpful": 1}},
        {"span_id": "other", "span_parents": ["root"], "scores": {"auto": 1}},
    ]
    out = {r["span_id"]: r["scores_avg"] for r in with_score_averages(rows)}
    assert out["fb2"] == {"helpful": 0.0}
    assert out["answer"] == {"auto": 0.5, "helpful": 2 / 3}
    assert out["root"] == {"auto": 0.75, "helpful": 2 / 3}
    assert out["other"] == {"auto": 1.0}


def test_cycle_in_parents_does_not_hang():
    """A malformed trace whose parents form a cycle still gets averages, each span once."""
    rows = [{"span_id": "a", "span_parents": ["b"], "scores": {"s": 1}},
            {"span_id": "b", "span_parents": ["a"], "scores": {"s": 0}}]
    assert [r["scores_avg"]["s"] for r in with_score_averages(rows)] == [0.5, 0.5]


def test_trace_endpoint_returns_every_span_in_start_order(collector):
    """GET .../trace/{root} returns the trace's spans (not others) in start order."""
    project = f"trace-{uuid.uuid4().hex[:8]}"
    pid = collector.project_id(project)
    root = uuid.uuid4().hex
    spans = [{"id": f"s{i}", "span_id": f"{i:016x}", "root_span_id": root,
              "span_parents": None if i == 0 else [f"{0:016x}"],
              "metrics": {"start": 100.0 + (5 - i)}, "scores": {"q": i / 10}}
             for i in range(6)]
    other = {"id": "elsewhere", "span_id": "f" * 16, "root_span_id": uuid.uuid4().hex}
    status, _ = call(collector.url, "POST", "/logs3",
                     {"rows": [{**r, "project_id": pid} for r in [*spans, other]]},
                     token=collector.api_key)
    assert status == 200
    got = collector.trace(project, root)
    assert [s["id"] for s in got] == ["s5", "s4", "s3", "s2", "s1", "s0"]
    assert got[-1]["scores_avg"]["q"] == sum(i / 10 for i in range(6)) / 6
    assert collector.trace(project, "no-such-trace") == []


def test_plain_events_are_one_span_traces_and_comments_are_not_roots(collector):
    """An event without span ids becomes its own trace; a comment row is never a root."""
    project = f"roots-{uuid.uuid4().hex[:8]}"
    pid = collector.project_id(project)
    status, _ = call(collector.url, "POST", f"/v1/project_logs/{pid}/insert",
                     {"events": [{"id": "plain", "input": "q", "output": "a"}]},
                     token=collector.api_key)
    assert status == 200
    status, _ = call(collector.url, "POST", f"/v1/project_logs/{pid}/feedback",
                     {"feedback": [{"id": "plain", "comment": "nice"}]},
                     token=collector.api_key)
    assert status == 200
    [row] = collector.fetch(project, "id = 'plain'")
    assert row["span_id"] == row["root_span_id"] == "plain"
    spans = collector.trace(project, "plain")
    assert [s.get("comment") for s in spans] == [None, {"text": "nice"}]
    assert spans[1]["span_parents"] == ["plain"] and spans[1]["scores_avg"] == {}
    _, page = call(collector.url, "POST", f"/v1/project_logs/{pid}/fetch",
                   {"roots_only": True}, token=collector.api_key)
    assert [r["id"] for r in page["events"]] == ["plain"]
    assert len(collector.fetch(project)) == 2


def test_several_parents_count_each_descendant_once():
    """A span reachable through two parents counts once in their common ancestor."""
    rows = [{"span_id": "r", "span_parents": None, "scores": {}},
            {"span_id": "a", "span_parents": ["r"], "scores": {"s": 1}},
            {"span_id": "b", "span_parents": ["r"], "scores": {"s": 0}},
            {"span_id": "c", "span_parents": ["a", "b"], "scores": {"s": 1}}]
    out = {r["span_id"]: r["scores_avg"] for r in with_score_averages(rows)}
    assert out["r"] == {"s": 2 / 3} and out["a"] == {"s": 1.0} and out["b"] == {"s": 0.5}


def _chain(n: int) -> list[dict[str, Any]]:
    return [{"span_id": f"s{i}", "span_parents": [f"s{i - 1}"] if i else None,
             "scores": {"q": i % 2}} for i in range(n)]


def _lines_run(fn: Any, *args: Any) -> int:
    """How many lines of Python ``fn(*args)`` runs: its work, whatever the machine's load."""
    count = 0

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        count += event == "line"
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        fn(*args)
    finally:
        sys.settrace(previous)
    return count


def test_deep_trace_is_linear():
    """A 20,000-span chain gets its averages in one pass (not one walk per span)."""
    out = with_score_averages(_chain(20_000))
    assert out[0]["scores_avg"] == {"q": 0.5}
    assert out[-1]["scores_avg"] == {"q": 1.0}
    # Four times the spans, about four times the work; one walk per span would be sixteen.
    small = _lines_run(with_score_averages, _chain(1_000))
    big = _lines_run(with_score_averages, _chain(4_000))
    assert big < 6 * small, (small, big)


def test_subtree_averages_agree_with_the_trace_definition():
    """subtree_averages (roots_only pages) == with_score_averages (trace endpoint) on random
    traces with several parents, cycles, dangling parents, comments and odd scores."""
    rng = random.Random(5)
    for _ in range(300):
        n = rng.randrange(1, 12)
        rows: list[dict[str, Any]] = []
        for i in range(n):
            row: dict[str, Any] = {
                "id": f"r{i}", "span_id": rng.choice([f"s{i}", f"s{i}", None, "s0"]),
                "span_parents": rng.choice([None, [], [f"s{rng.randrange(n)}"],
                                            [f"s{rng.randrange(n)}", f"s{rng.randrange(n)}"],
                                            ["elsewhere"]]),
                "scores": rng.choice([None, {}, {"a": rng.random()}, {"a": None, "b": 1},
                                      {"a": True, "b": 0}])}
            if rng.random() < 0.15:
                row["origin"], row["comment"] = {"id": "r0"}, {"text": "c"}
            rows.append(row)
        links = [(r["id"], *json.loads(trace_links(r))) for r in rows]
        expected = {r["id"]: r["scores_avg"] for r in with_score_averages(rows)}
        assert subtree_averages(links, [r["id"] for r in rows]) == expected, rows


def _dag_trace(pid: str, root: str, n: int) -> list[dict[str, Any]]:
    """``n`` spans, each (after the second) a child of the two spans before it."""
    rng = random.Random(7)
    rows = []
    for i in range(n):
        parents = None if i == 0 else [f"{i - 1:016x}"] if i == 1 else [f"{i - 1:016x}",
                                                                        f"{i - 2:016x}"]
        rows.append({"id": f"d{i}", "span_id": f"{i:016x}", "root_span_id": root,
                     "span_parents": parents, "project_id": pid, "metrics": {"start": float(i)},
                     "scores": {"q": rng.random(), "pass": i % 2}})
    return rows


def test_dag_averages_count_each_descendant_once():
    """Spans with two parents: each span's average is over its distinct descendants."""
    rows = [{"span_id": "r", "span_parents": None, "scores": {"s": 1}},
            {"span_id": "a", "span_parents": ["r"], "scores": {"s": 0}},
            {"span_id": "b", "span_parents": ["r"], "scores": {}},
            {"span_id": "c", "span_parents": ["a", "b"], "scores": {"s": 0.5}},
            {"span_id": "d", "span_parents": ["c"], "scores": {"s": 0.25}}]
    out = {r["span_id"]: r["scores_avg"] for r in with_score_averages(rows)}
    assert out["r"] == {"s": (1 + 0 + 0.5 + 0.25) / 4}  # c and d once, not twice
    assert out["b"] == {"s": 0.375}
    assert out["a"] == {"s": 0.25}


@pytest.mark.slow
def test_big_dag_trace_answers_quickly_and_never_freezes_the_loop(collector, monkeypatch):
    """A 10,000-span trace whose spans have two parents each: the trace answers within a
    generous bound, and GET /version answers at once while it is computed (the averaging
    runs off the event loop; docs/collector.md). Timings: bench/collector.py trace."""
    import threading

    from spanlog.server.http import _app

    project = f"dag-{uuid.uuid4().hex[:8]}"
    pid = collector.project_id(project)
    root = uuid.uuid4().hex
    rows = _dag_trace(pid, root, 10_000)
    for start in range(0, len(rows), 2_000):
        status, _ = call(collector.url, "POST", "/logs3", {"rows": rows[start:start + 2_000]},
                         token=collector.api_key, timeout=60)
        assert status == 200
    # The averaging is held at its start until /version has answered: were it on the event
    # loop, the loop would wait with it and /version could not answer (the timeout bounds
    # that hang; it is no speed goal).
    averaging = threading.Event()
    release = threading.Event()
    real_averages = _app.with_score_averages

    def held(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        averaging.set()
        release.wait(60)
        return real_averages(spans)

    monkeypatch.setattr(_app, "with_score_averages", held)
    result: dict[str, Any] = {}

    def read() -> None:
        result["answer"] = call(collector.url, "GET", f"/v1/project_logs/{pid}/trace/{root}",
                                token=collector.api_key, timeout=60)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert averaging.wait(60), "the trace's averaging never started"
        try:
            status, _ = call(collector.url, "GET", "/version", timeout=10)
        except OSError as exc:
            raise AssertionError(f"GET /version waited behind the trace: {exc!r}") from None
        assert status == 200
        assert "answer" not in result  # answered while the trace was still being computed
    finally:
        release.set()
        reader.join(60)
    status, body = result["answer"]
    assert status == 200, body
    spans = body["spans"]
    assert len(spans) == 10_000
    # The root's average is over every span, each once; a leaf's over itself.
    assert spans[0]["scores_avg"]["pass"] == 0.5
    assert spans[-1]["scores_avg"]["pass"] == (10_000 - 1) % 2
    qs = [r["scores"]["q"] for r in rows]
    assert abs(spans[0]["scores_avg"]["q"] - sum(qs) / len(qs)) < 1e-9
    assert abs(spans[-2]["scores_avg"]["q"] - (qs[-2] + qs[-1]) / 2) < 1e-9


def test_trace_over_the_size_limit_is_refused_with_a_way_out(collector, monkeypatch):
    """A trace with more spans than one read returns: 400 saying how to page through it."""
    from spanlog.server.store import _reading

    project = f"huge-{uuid.uuid4().hex[:8]}"
    pid = collector.project_id(project)
    root = uuid.uuid4().hex
    status, _ = call(collector.url, "POST", "/logs3", {"rows": _dag_trace(pid, root, 30)},
                     token=collector.api_key)
    assert status == 200
    monkeypatch.setattr(_reading, "MAX_TRACE_SPANS", 20)
    import spanlog.server.store.sqlite._query as sqlite_query
    monkeypatch.setattr(sqlite_query, "MAX_TRACE_SPANS", 20)
    status, body = call(collector.url, "GET", f"/v1/project_logs/{pid}/trace/{root}",
                        token=collector.api_key)
    assert status == 400
    assert "more than 20 spans" in body["error"]
    assert f"root_span_id = '{root}'" in body["error"]
