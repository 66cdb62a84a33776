"""How pieces of one row combine in the collector (PROTOCOL.md, "Merge" and feedback)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from spanlog_server_http import call


@pytest.fixture
def project(collector) -> str:
    """A fresh project name per test, so rows never mix between tests."""
    name = f"merge-{uuid.uuid4().hex[:10]}"
    collector.project_id(name)
    return name


def send(collector, project: str, *rows: dict[str, Any]) -> None:
    pid = collector.project_id(project)
    status, body = call(collector.url, "POST", "/logs3",
                        {"rows": [{"project_id": pid, "log_id": "g", **r} for r in rows]},
                        token=collector.api_key)
    assert status == 200, body


def stored(collector, project: str, row_id: str) -> dict[str, Any]:
    [row] = collector.fetch(project, f"id = '{row_id}'")
    return row


def without_xact(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "_xact_id"}


SPAN = {"id": "s1", "span_id": "a" * 16, "root_span_id": "b" * 32, "span_parents": None,
        "created": "2025-01-01T00:00:00+00:00", "input": "q",
        "metadata": {"user": {"id": 1, "plan": "free"}, "keep": True},
        "tags": ["one"], "span_attributes": {"name": "root", "type": "task"}}


def test_merge_deep_merges_objects_and_replaces_scalars(collector, project):
    """A merge piece merges objects key by key, replaces scalars and arrays, unions tags."""
    send(collector, project, SPAN)
    send(collector, project, {"id": "s1", "_is_merge": True, "output": "a",
                              "metadata": {"user": {"plan": "pro"}, "list": [1]},
                              "tags": ["two", "one"], "input": ["replaced"]})
    row = stored(collector, project, "s1")
    assert row["metadata"] == {"user": {"id": 1, "plan": "pro"}, "keep": True, "list": [1]}
    assert row["tags"] == ["one", "two"]
    assert row["input"] == ["replaced"] and row["output"] == "a"
    assert row["span_attributes"] == {"name": "root", "type": "task"}


def test_replace_keeps_identity_fields(collector, project):
    """A later replace piece replaces the row but created and span ids keep their first values."""
    send(collector, project, SPAN)
    send(collector, project, {"id": "s1", "span_id": "c" * 16, "root_span_id": "d" * 32,
                              "created": "2030-01-01T00:00:00+00:00", "output": "new"})
    row = stored(collector, project, "s1")
    assert row["span_id"] == "a" * 16 and row["root_span_id"] == "b" * 32
    assert row["created"] == SPAN["created"]
    assert row["output"] == "new" and "input" not in row and "metadata" not in row


def test_merge_paths_replace_below_path(collector, project):
    """_merge_paths makes the named object replace instead of merging key by key."""
    send(collector, project, SPAN)
    send(collector, project, {"id": "s1", "_is_merge": True, "_merge_paths": [["metadata"]],
                              "metadata": {"only": "this"}})
    row = stored(collector, project, "s1")
    assert row["metadata"] == {"only": "this"}
    assert "_merge_paths" not in row and "_is_merge" not in row


def test_merge_for_unknown_id_is_stored_as_is(collector, project):
    """A merge piece for an id never seen is stored as it is."""
    send(collector, project, {"id": "lonely", "_is_merge": True, "scores": {"x": 1}})
    row = stored(collector, project, "lonely")
    assert row["scores"] == {"x": 1} and row["created"]


def test_feedback_before_first_piece_survives_it(collector, project):
    """Feedback that overtakes the span's first (replace) piece is not erased by it."""
    send(collector, project, {"id": "s1", "_is_merge": True, "scores": {"thumbs": 1},
                              "tags": ["reviewed"], "_audit_source": "app"})
    send(collector, project, {**SPAN, "scores": {"auto": 0.5}})
    row = stored(collector, project, "s1")
    assert row["scores"] == {"auto": 0.5, "thumbs": 1}
    assert row["tags"] == ["one", "reviewed"]
    assert row["input"] == "q" and row["created"] == SPAN["created"]
    assert row["span_id"] == "a" * 16


def test_duplicate_batch_leaves_store_as_if_sent_once(collector, project):
    """Sending the same batch twice gives the same row as sending it once."""
    batch = [SPAN, {"id": "s1", "_is_merge": True, "output": "o", "tags": ["two"]}]
    send(collector, project, *batch)
    once = without_xact(stored(collector, project, "s1"))
    send(collector, project, *batch)
    assert without_xact(stored(collector, project, "s1")) == once


def test_retried_first_piece_does_not_erase_later_feedback(collector, project):
    """A retry of the span's first piece after feedback arrived keeps the feedback."""
    send(collector, project, SPAN)
    send(collector, project, {"id": "s1", "_is_merge": True, "scores": {"thumbs": 0}})
    send(collector, project, SPAN)  # the SDK never saw the first acknowledgement
    row = stored(collector, project, "s1")
    assert row["scores"] == {"thumbs": 0} and row["input"] == "q"


def test_pieces_in_one_batch_apply_in_order(collector, project):
    """Several pieces for one id within one request apply in order."""
    send(collector, project, SPAN,
         {"id": "s1", "_is_merge": True, "output": "first"},
         {"id": "s1", "_is_merge": True, "output": "second", "tags": ["three"]})
    row = stored(collector, project, "s1")
    assert row["output"] == "second" and row["tags"] == ["one", "three"]


def test_object_delete_removes_row(collector, project):
    """A piece with _object_delete: true removes the row."""
    send(collector, project, SPAN, {"id": "s2", "input": 2})
    send(collector, project, {"id": "s1", "_object_delete": True})
    assert [r["id"] for r in collector.fetch(project)] == ["s2"]
    assert collector.fetch(project, "metadata.keep = true") == []


def test_feedback_endpoint_merges_and_adds_comment(collector, project):
    """/feedback merges scores/expected/tags with audit fields and adds one comment row."""
    send(collector, project, SPAN)
    pid = collector.project_id(project)
    item = {"id": "s1", "scores": {"correct": 1}, "expected": "A", "tags": ["fb"],
            "comment": "good answer", "metadata": {"reviewer": "ann"}, "source": "app"}
    for _ in range(2):  # a retried request must not add a second comment
        status, _ = call(collector.url, "POST", f"/v1/project_logs/{pid}/feedback",
                         {"feedback": [item]}, token=collector.api_key)
        assert status == 200
    row = stored(collector, project, "s1")
    assert row["scores"] == {"correct": 1} and row["expected"] == "A"
    assert row["tags"] == ["one", "fb"]
    assert row["_audit_source"] == "app" and row["_audit_metadata"] == {"reviewer": "ann"}
    comments = [r for r in collector.fetch(project) if r.get("comment")]
    assert len(comments) == 1
    assert comments[0]["comment"] == {"text": "good answer"}
    assert comments[0]["origin"] == {"id": "s1"}


@pytest.mark.parametrize(("item", "expect"), [
    ({"id": "s1"}, "needs at least one of"),
    ({"id": "s1", "scores": {"x": 2}}, "feedback[0].scores.x"),
    ({"id": "s1", "scores": {"x": 1}, "source": "moon"}, "feedback[0].source"),
    ({"id": "s1", "rating": 1}, "unknown field 'rating'"),
    ({"scores": {"x": 1}}, "feedback[0].id"),
])
def test_bad_feedback_is_400(collector, project, item, expect):
    """Bad feedback items are refused with the item index and field."""
    pid = collector.project_id(project)
    status, body = call(collector.url, "POST", f"/v1/project_logs/{pid}/feedback",
                        {"feedback": [item]}, token=collector.api_key)
    assert status == 400 and expect in body["error"]
