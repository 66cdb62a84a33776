"""Spans and rows: what start_span, Span.log, Logger.log and current_span produce."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

import spanlog
from spanlog.testing import capture_rows


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["span_attributes"]["name"]: row for row in rows if "span_attributes" in row}


def test_span_rows_have_the_protocol_shape() -> None:
    """A root and a child span become one row each with PROTOCOL.md's ids, metrics, context."""
    with capture_rows(project="shape") as rows:
        with spanlog.start_span(name="root", input={"q": 1}) as root:
            with root.start_span(name="child", type="tool") as child:
                child.log(output="done")
    spans = by_name(rows)
    assert set(spans) == {"root", "child"}
    top, low = spans["root"], spans["child"]
    assert re.fullmatch(r"[0-9a-f]{16}", top["span_id"])
    assert re.fullmatch(r"[0-9a-f]{32}", top["root_span_id"])
    assert top["span_parents"] is None and low["span_parents"] == [top["span_id"]]
    assert low["root_span_id"] == top["root_span_id"]
    assert uuid.UUID(top["id"]).version == 4 and top["id"] == root.id and low["id"] == child.id
    assert top["span_attributes"] == {"name": "root", "type": "task"}
    assert low["span_attributes"] == {"name": "child", "type": "tool"}
    assert top["_is_merge"] is False and top["log_id"] == "g"
    assert top["project_name"] == "shape"
    assert top["metrics"]["start"] <= low["metrics"]["start"] <= low["metrics"]["end"]
    assert low["metrics"]["end"] <= top["metrics"]["end"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", top["created"])
    assert top["context"]["caller_filename"] == __file__
    assert top["context"]["caller_functionname"] == "test_span_rows_have_the_protocol_shape"
    assert top["context"]["span_origin"] == {"name": "spanlog", "version": spanlog.__version__}
    assert top["input"] == {"q": 1} and low["output"] == "done"


def test_span_logs_merge_into_one_row() -> None:
    """Several span.log calls before the end travel as a single merged row."""
    with capture_rows() as rows:
        span = spanlog.start_span(name="work", metadata={"a": 1}, tags=["x"])
        span.log(metadata={"b": 2}, tags=["y", "x"], scores={"s": 0.5})
        span.log(metadata={"a": 3}, metrics={"tokens": 7}, output=1)
        span.log(output=2)
        end = span.end()
        assert span.end() == end  # ending twice keeps the first end
    (row,) = rows
    assert row["metadata"] == {"a": 3, "b": 2}
    assert row["tags"] == ["x", "y"]
    assert row["scores"] == {"s": 0.5}
    assert row["output"] == 2
    assert row["metrics"]["tokens"] == 7 and row["metrics"]["end"] == end


def test_log_after_end_is_a_merge_piece() -> None:
    """span.log after span.end sends a merge row on the same id."""
    with capture_rows() as rows:
        span = spanlog.start_span(name="late")
        span.end()
        span.log(output="afterwards")
    first, second = rows
    assert first["id"] == second["id"] == span.id
    assert first["_is_merge"] is False and second["_is_merge"] is True
    assert second["output"] == "afterwards"


def test_start_span_plain_object_is_not_current() -> None:
    """start_span returns a span that becomes current only inside `with`."""
    with capture_rows():
        span = spanlog.start_span(name="plain")
        assert isinstance(spanlog.current_span(), spanlog.NoopSpan)
        with span:
            assert spanlog.current_span() is span
        assert isinstance(spanlog.current_span(), spanlog.NoopSpan)


def test_current_span_is_noop_when_nothing_is_active() -> None:
    """current_span never returns None, and the no-op span accepts every call."""
    span = spanlog.current_span()
    assert isinstance(span, spanlog.NoopSpan) and not span
    span.log(output=1)
    span.log_feedback(scores={"a": 1})
    with span.start_span(name="x") as child:
        child.log(input=1)
    assert span.export() == "" and span.id == ""


def test_without_a_logger_spans_are_noops() -> None:
    """start_span and traced do nothing (and raise nothing) before init_logger."""
    assert isinstance(spanlog.start_span(name="x"), spanlog.NoopSpan)

    @spanlog.traced
    def f(x: int) -> int:
        return x + 1

    assert f(1) == 2


def test_explicit_row_id_and_start_time() -> None:
    """start_span(id=..., start_time=...) sets the row id and metrics.start."""
    with capture_rows() as rows:
        span = spanlog.start_span(name="given", id="my-row-1", start_time=1000.5)
        assert span.id == "my-row-1"
        span.end(end_time=1001.0)
    (row,) = rows
    assert row["id"] == "my-row-1"
    assert row["metrics"]["start"] == 1000.5 and row["metrics"]["end"] == 1001.0


def test_logger_log_returns_the_row_id() -> None:
    """Logger.log writes one complete root row and returns its id."""
    with capture_rows() as rows:
        row_id = spanlog.log(input="q", output="a", scores={"good": True},
                             metadata={"user_id": "1234"}, tags=["prod"])
        given = spanlog.log(id="fixed", output=1)
    first, second = rows
    assert first["id"] == row_id and second["id"] == given == "fixed"
    assert first["scores"] == {"good": 1}
    assert first["span_parents"] is None and first["metadata"] == {"user_id": "1234"}
    assert first["metrics"]["start"] == first["metrics"]["end"]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("scores", {"acc": 1.5}, "scores['acc']"),
    ("scores", {"acc": float("nan")}, "scores['acc']"),
    ("scores", {"acc": "high"}, "scores['acc']"),
    ("scores", [0.5], "scores must be a dict"),
    ("scores", {1: 0.5}, "score names"),
    ("metadata", {1: "x"}, "metadata keys"),
    ("metadata", ["x"], "metadata must be a dict"),
    ("tags", "prod", "tags must be a list"),
    ("tags", ["ok", 3], "tags must be strings"),
    ("metrics", {"tokens": "many"}, "metrics['tokens']"),
])
def test_bad_fields_raise_value_errors_naming_the_field(field: str, value: Any,
                                                        message: str) -> None:
    """Logger.log rejects a bad score/metadata/tags/metrics value with a ValueError."""
    with capture_rows() as rows, pytest.raises(ValueError, match=re.escape(message)):
        spanlog.log(**{field: value})
    assert rows == []


def test_unknown_field_is_rejected() -> None:
    """A misspelled field is an error, not silently dropped."""
    with capture_rows(), pytest.raises(ValueError, match="unknown field 'ouput'"):
        spanlog.start_span(name="x").log(ouput=1)


def test_bad_span_type_is_rejected() -> None:
    """Span types are limited to the protocol's list."""
    with capture_rows(), pytest.raises(ValueError, match="type must be one of"):
        spanlog.start_span(name="x", type="banana")


def test_values_are_snapshotted_when_logged() -> None:
    """Mutating a dict after logging it does not change the row."""
    data = {"items": [1, 2], "nested": {"k": "v"}}
    with capture_rows() as rows:
        with spanlog.start_span(name="snap", input=data) as span:
            data["items"].append(3)
            data["nested"]["k"] = "changed"
            meta = {"m": [1]}
            span.log(metadata=meta)
            meta["m"].append(2)
    (row,) = rows
    assert row["input"] == {"items": [1, 2], "nested": {"k": "v"}}
    assert row["metadata"] == {"m": [1]}


def test_error_recorded_in_with_block_and_reraised() -> None:
    """An exception leaving a `with span` is logged with its traceback and propagates."""
    err = RuntimeError("boom")
    with capture_rows() as rows:
        with pytest.raises(RuntimeError) as caught, spanlog.start_span(name="fails"):
            raise err
    assert caught.value is err
    (row,) = rows
    assert "RuntimeError: boom" in row["error"] and "Traceback" in row["error"]


def test_children_of_a_plain_parent_span_nest_under_it() -> None:
    """Spans started from a parent object (not current) nest under it explicitly."""
    with capture_rows() as rows:
        parent = spanlog.start_span(name="parent")
        children = [parent.start_span(name=f"c{i}") for i in range(3)]
        for child in children:
            child.end()
        parent.end()
    spans = by_name(rows)
    for i in range(3):
        assert spans[f"c{i}"]["span_parents"] == [spans["parent"]["span_id"]]
