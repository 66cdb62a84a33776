"""Feedback and score submissions, as rows and as the collector stores them."""

from __future__ import annotations

from typing import Any

import pytest
from sdk_support import LoggerFactory

import spanlog
from spanlog.testing import InMemoryExporter, capture_rows


def test_feedback_rows_follow_the_protocol() -> None:
    """log_feedback: a merge row on the target with audit fields; a comment row of its own."""
    with capture_rows() as rows:
        with spanlog.start_span(name="answer") as span:
            pass
        span.log_feedback(scores={"thumbs_up": 1}, expected="better", tags=["reviewed"],
                          comment="too long", metadata={"user": "ann"}, source="app")
    _, update, comment = rows
    assert update == {**update, "id": span.id, "scores": {"thumbs_up": 1},
                      "expected": "better", "tags": ["reviewed"], "_audit_source": "app",
                      "_audit_metadata": {"user": "ann"}, "_is_merge": True}
    assert "metadata" not in update
    assert comment["origin"] == {"id": span.id} and comment["comment"] == {"text": "too long"}
    assert comment["id"] != span.id and comment["_audit_source"] == "app"


def test_feedback_before_the_span_ends_survives_its_row() -> None:
    """Feedback buffered before its span's row is merged under that row, not erased by it."""
    exporter = InMemoryExporter()
    logger = spanlog.init_logger(transport=exporter, flush_linger=60, set_current=False)
    try:
        span = logger.start_span(name="slow", output="x")
        logger.log_feedback(id=span.id, scores={"early": 0.5}, tags=["a"])
        span.log(tags=["b"])
        span.end()
        assert logger.flush(timeout=5)
    finally:
        logger.close(timeout=5)
    (row,) = exporter.rows
    assert row["id"] == span.id and row["_is_merge"] is False
    assert row["scores"] == {"early": 0.5} and row["output"] == "x"
    assert sorted(row["tags"]) == ["a", "b"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "at least one of"),
    ({"scores": {"a": 2}}, "scores['a']"),
    ({"scores": {"a": 1}, "source": "robot"}, "source must be one of"),
    ({"comment": 5}, "comment must be a string"),
])
def test_bad_feedback_raises(kwargs: dict[str, Any], message: str) -> None:
    """log_feedback validates its arguments with clear ValueErrors."""
    with capture_rows(), pytest.raises(ValueError, match=message.replace("[", r"\[")):
        spanlog.log_feedback(id="row-1", **kwargs)


def test_several_feedbacks_on_one_span_all_land(collector: Any, make_logger: LoggerFactory,
                                                project: str) -> None:
    """Feedback from several calls (and after delivery) merges into the stored row."""
    logger = make_logger(async_flush=False)
    with logger.start_span(name="answer", output="42", tags=["prod"]) as span:
        pass
    logger.log_feedback(id=span.id, scores={"correct": 1}, comment="nice")
    logger.log_feedback(id=span.id, scores={"helpful": 0.5}, tags=["reviewed"],
                        metadata={"reviewer": "bob"})
    logger.log_feedback(id=span.id, expected="42!")
    rows = {row["id"]: row for row in collector.fetch(project=project)}
    stored = rows[span.id]
    assert stored["scores"] == {"correct": 1, "helpful": 0.5}
    assert sorted(stored["tags"]) == ["prod", "reviewed"]
    assert stored["expected"] == "42!" and stored["output"] == "42"
    comments = [row for row in rows.values() if row.get("origin") == {"id": span.id}]
    assert [c["comment"] for c in comments] == [{"text": "nice"}]


def test_score_submissions_are_averaged_on_the_parent(collector: Any,
                                                      make_logger: LoggerFactory,
                                                      project: str) -> None:
    """Each submit_scores call is its own child span; the trace shows their average on the
    parent, from a span object and from an exported handle alike."""
    logger = make_logger(async_flush=False)
    with logger.start_span(name="answer") as span:
        pass
    span.submit_scores({"relevance": 1.0})
    span.submit_scores({"relevance": 0.0}, metadata={"user": "b"})
    logger.submit_scores({"relevance": 0.5}, parent=span.export())
    spans = collector.trace(project, span.root_span_id)
    by_id = {row["id"]: row for row in spans}
    assert by_id[span.id]["scores_avg"] == {"relevance": 0.5}
    children = [row for row in spans if row["span_parents"] == [span.span_id]]
    assert len(children) == 3
    assert all(row["span_attributes"]["type"] == "score" for row in children)
