"""Comment rows join their target's trace, in either arrival order, and never skew scores."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from spanlog_server_http import call

ROOT_SPAN = "a" * 16
CHILD_SPAN = "b" * 16


def _post(collector: Any, path: str, body: Any) -> Any:
    status, reply = call(collector.url, "POST", path, body, token=collector.api_key)
    assert status == 200, reply
    return reply


def _setup(collector: Any) -> tuple[str, str, str]:
    """A fresh project: (name, id, root_span_id)."""
    name = f"comments-{uuid.uuid4().hex[:8]}"
    return name, collector.project_id(name), uuid.uuid4().hex


def _spans(pid: str, trace: str, **child: Any) -> list[dict[str, Any]]:
    return [
        {"id": "root", "project_id": pid, "span_id": ROOT_SPAN, "root_span_id": trace,
         "span_parents": None, "scores": {"q": 1}, "metrics": {"start": 1.0}},
        {"id": "child", "project_id": pid, "span_id": CHILD_SPAN, "root_span_id": trace,
         "span_parents": [ROOT_SPAN], "scores": {"q": 0}, "metrics": {"start": 2.0}, **child},
    ]


def _comment(pid: str, row_id: str, target: str, text: str, **more: Any) -> dict[str, Any]:
    return {"id": row_id, "project_id": pid, "origin": {"id": target},
            "comment": {"text": text}, "created": "2024-01-01T00:00:00+00:00", **more}


def _roots(collector: Any, pid: str, **body: Any) -> dict[str, Any]:
    reply: dict[str, Any] = _post(collector, f"/v1/project_logs/{pid}/fetch",
                                  {"roots_only": True, **body})
    return reply


def _check_linked(collector: Any, name: str, trace: str, comment_ids: list[str]) -> None:
    spans = collector.trace(name, trace)
    by_id = {s["id"]: s for s in spans}
    assert set(by_id) == {"root", "child", *comment_ids}
    for comment_id in comment_ids:
        comment = by_id[comment_id]
        assert comment["root_span_id"] == trace
        assert comment["span_parents"] == [CHILD_SPAN]
        assert comment["scores_avg"] == {}
    # Comments come last (they have no start time) and change no average.
    assert [s["id"] for s in spans][:2] == ["root", "child"]
    assert by_id["root"]["scores_avg"] == {"q": 0.5}
    assert by_id["child"]["scores_avg"] == {"q": 0.0}


def test_comment_on_a_stored_span_joins_its_trace(collector):
    """Feedback comment on a stored span: in the trace, under that span, never a root."""
    name, pid, trace = _setup(collector)
    _post(collector, "/logs3", {"rows": _spans(pid, trace)})
    _post(collector, f"/v1/project_logs/{pid}/feedback",
          {"feedback": [{"id": "child", "comment": "wrong answer", "source": "app"}]})
    [comment] = collector.fetch(name, "comment.text = 'wrong answer'")
    assert comment["root_span_id"] == trace and comment["origin"] == {"id": "child"}
    _check_linked(collector, name, trace, [comment["id"]])
    assert [r["id"] for r in _roots(collector, pid)["events"]] == ["root"]
    # A retried feedback request is the same comment row, still in the trace.
    _post(collector, f"/v1/project_logs/{pid}/feedback",
          {"feedback": [{"id": "child", "comment": "wrong answer", "source": "app"}]})
    _check_linked(collector, name, trace, [comment["id"]])


def test_comment_before_its_span_joins_when_the_span_arrives(collector):
    """A comment stored before its target waits outside any trace, then joins it (moving to
    a newer transaction id) when the target's first piece arrives."""
    name, pid, trace = _setup(collector)
    _post(collector, "/logs3", {"rows": [_comment(pid, "early", "child", "first!")]})
    [waiting] = collector.fetch(name, "id = 'early'")
    assert "root_span_id" not in waiting and "span_parents" not in waiting
    _post(collector, "/logs3", {"rows": _spans(pid, trace)})
    [joined] = collector.fetch(name, "id = 'early'")
    assert int(joined["_xact_id"]) > int(waiting["_xact_id"])
    assert [r["id"] for r in collector.fetch(name, f"root_span_id = '{trace}'")][0] == "early"
    _check_linked(collector, name, trace, ["early"])


def test_comment_waits_through_feedback_that_overtook_its_span(collector):
    """Feedback merges stored before the span give the target no trace yet; the comment
    joins once the span's own piece lands underneath them."""
    name, pid, trace = _setup(collector)
    _post(collector, f"/v1/project_logs/{pid}/feedback",
          {"feedback": [{"id": "child", "scores": {"q": 0}, "comment": "too slow"}]})
    assert collector.trace(name, trace) == []
    child = _spans(pid, trace)[1]
    del child["scores"]
    _post(collector, "/logs3", {"rows": [_spans(pid, trace)[0], child]})
    [comment] = collector.fetch(name, "comment.text = 'too slow'")
    _check_linked(collector, name, trace, [comment["id"]])


@pytest.mark.parametrize("comment_first", [True, False])
def test_comment_and_span_in_one_batch(collector, comment_first: bool):
    """A comment and its target in the same request join whichever comes first."""
    name, pid, trace = _setup(collector)
    comment = _comment(pid, "same-batch", "child", "hi")
    rows = [comment, *_spans(pid, trace)] if comment_first else [*_spans(pid, trace), comment]
    _post(collector, "/logs3", {"rows": rows})
    _check_linked(collector, name, trace, ["same-batch"])


def test_comment_rows_never_count_in_averages(collector):
    """Scores carried by a comment row (a client may send any row) are not averaged."""
    name, pid, trace = _setup(collector)
    _post(collector, "/logs3", {"rows": [
        *_spans(pid, trace), _comment(pid, "scored", "child", "x", scores={"q": 1})]})
    _check_linked(collector, name, trace, ["scored"])
    [root] = _roots(collector, pid)["events"]
    assert root["id"] == "root" and root["scores_avg"] == {"q": 0.5}


def test_comment_on_a_missing_row_stays_outside_traces(collector):
    """A comment whose target never arrives is stored and listed, in no trace, no root."""
    name, pid, _ = _setup(collector)
    _post(collector, "/logs3", {"rows": [_comment(pid, "orphan", "nobody", "hello?")]})
    [orphan] = collector.fetch(name)
    assert orphan["id"] == "orphan" and "root_span_id" not in orphan
    assert _roots(collector, pid)["events"] == []


def test_roots_only_rows_carry_their_trace_averages(collector):
    """Every root listed by roots_only has scores_avg equal to the trace endpoint's, on
    every page of the cursor."""
    name, pid, _ = _setup(collector)
    traces = [uuid.uuid4().hex for _ in range(5)]
    rows: list[dict[str, Any]] = []
    for n, trace in enumerate(traces):
        rows.append({"id": f"r{n}", "project_id": pid, "span_id": f"{n:016x}",
                     "root_span_id": trace, "span_parents": None,
                     "scores": {"a": n / 10} if n % 2 else {}})
        for k in range(n):  # trace n has n score children with alternating values
            rows.append({"id": f"r{n}-{k}", "project_id": pid, "span_id": f"{n:08x}{k:08x}",
                         "root_span_id": trace, "span_parents": [f"{n:016x}"],
                         "scores": {"a": k % 2, "b": None}})
    _post(collector, "/logs3", {"rows": rows})
    listed: list[dict[str, Any]] = []
    page = _roots(collector, pid, limit=2)
    while True:
        listed.extend(page["events"])
        if not page["cursor"]:
            break
        page = _roots(collector, pid, limit=2, cursor=page["cursor"])
    assert [r["id"] for r in listed] == ["r4", "r3", "r2", "r1", "r0"]
    for row, trace in zip(listed, reversed(traces), strict=True):
        [root] = [s for s in collector.trace(name, trace) if s["id"] == row["id"]]
        assert row["scores_avg"] == root["scores_avg"]
    assert listed[0]["scores_avg"] == {"a": 0.5}  # r4: children 0,1,0,1, no own score
    assert listed[-1]["scores_avg"] == {}
    assert listed[3]["scores_avg"] == {"a": 0.05}  # r1: own 0.1 and one child 0
