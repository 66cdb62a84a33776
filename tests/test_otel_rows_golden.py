"""span_to_row's output over a fixed corpus equals what it was when recorded
(tests/otel_rows_golden.json), key order included: a change to the mapping's code that changes
any row, or any error message, fails here.

The corpus is tests/otel_rows_corpus.py. After an intended change of output, record again and
review the diff of the JSON file::

    PYTHONPATH=src python3 tests/test_otel_rows_golden.py --record
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from otel_rows_corpus import corpus
from spanlog import _otel_rows
from spanlog._otel_rows import OtelSpanError, span_to_row
from spanlog.server.http._otlp import spans_to_batch
from spanlog.server.rows._validate import validate_row

GOLDEN = Path(__file__).with_name("otel_rows_golden.json")
SPANS = corpus()


def outcome(name: str) -> dict[str, Any]:
    """The row of corpus span ``name``, or the error it raises."""
    try:
        return {"row": span_to_row(SPANS[name])}
    except OtelSpanError as exc:
        return {"error": str(exc)}


@functools.cache
def recorded() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(GOLDEN.read_text())
    return result


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=1)


def test_the_golden_file_covers_the_corpus() -> None:
    """Every corpus span has a recorded outcome, and every recorded one a span."""
    assert sorted(recorded()) == sorted(SPANS)


@pytest.mark.parametrize("name", sorted(SPANS))
def test_span_to_row_output_is_unchanged(name: str) -> None:
    """The row (or error) of each corpus span is exactly the recorded one, in key order."""
    assert _text(outcome(name)) == _text(recorded()[name])


def test_a_shape_worked_out_before_maps_as_a_fresh_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """What span_to_row works out once per distinct set of attribute keys and event names
    (_otel_rows._Shape) changes no row: the corpus maps the same in reverse order, after
    every shape was cached (a shape shared with spans of other values), with the cache
    emptied at every new shape, and with no shape kept (as one with too long keys is not)."""
    reverse = sorted(SPANS, reverse=True)
    first = {name: _text(outcome(name)) for name in reverse}
    assert all(first[name] == _text(outcome(name)) for name in sorted(SPANS))
    monkeypatch.setattr(_otel_rows, "_SHAPES", {})
    monkeypatch.setattr(_otel_rows, "_SHAPES_KEPT", 1)
    assert all(first[name] == _text(outcome(name)) for name in sorted(SPANS))
    assert len(_otel_rows._SHAPES) == 1
    monkeypatch.setattr(_otel_rows, "_SHAPES", {})
    monkeypatch.setattr(_otel_rows, "_SHAPE_CHARS_KEPT", -1)  # no shape kept: each worked out
    assert all(first[name] == _text(outcome(name)) for name in reverse)
    assert not _otel_rows._SHAPES


def _plain_values(attributes: Any) -> bool:
    """Whether ``attributes`` is what OtelSpan.plain vouches for."""
    return type(attributes) is dict and all(
        type(k) is str and (v is None or type(v) in (str, bool) or (
            type(v) is int and abs(v) < 2**1023) or (type(v) is float and math.isfinite(v)))
        for k, v in attributes.items())


def test_a_span_marked_plain_maps_as_it_does_unmarked() -> None:
    """OtelSpan.plain (the protobuf decoder's word that nothing needs cleaning) spares the
    checks, not a bit of the row: every corpus span the decoder would mark maps the same
    marked, key order included (and there are some of each kind)."""
    plain = [name for name, span in SPANS.items()
             if not span.events and not span.links and _plain_values(span.attributes)
             and _plain_values(span.resource_attributes)
             and _plain_values(span.scope_attributes)]
    assert 10 <= len(plain) < len(SPANS)
    for name in plain:
        try:
            span = SPANS[name]  # a plain span's attributes are its own: the row keeps them
            marked = {"row": span_to_row(dataclasses.replace(
                span, plain=True, attributes=dict(span.attributes)))}
        except OtelSpanError as exc:
            marked = {"error": str(exc)}
        assert _text(marked) == _text(recorded()[name]), name


def test_the_collector_stores_every_corpus_row_as_validate_row_would() -> None:
    """The OTLP endpoint stores span_to_row's rows without validate_row (it checks only the
    project, server/http/_otlp.py): every row of the corpus passes validate_row unchanged, and
    the endpoint's batch holds exactly those rows and refuses exactly the corpus's bad spans."""
    batch, rejected = spans_to_batch([("corpus", list(SPANS.values()))], None, "otel")
    expected, routes, refused = [], [], []
    for i, (name, span) in enumerate(SPANS.items()):
        try:
            row = span_to_row(span)
        except OtelSpanError as exc:
            refused.append(f"corpus.spans[{i}].{exc}")
            continue
        piece = {"project_name": "otel", "log_id": "g", **row}
        assert validate_row(name, piece) == piece
        own = (row.pop("project_id", None), row.pop("project_name", None))
        routes.append(own if own != (None, None) else (None, "otel"))
        expected.append(row)
    assert rejected == refused
    assert batch.routes == routes and (None, "otel") in routes and len(set(routes)) > 1
    assert batch.ids == [row["id"] for row in expected]
    assert [_text(row) for row in batch.rows] == [_text(row) for row in expected]


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit(__doc__)
    GOLDEN.write_text(_text({name: outcome(name) for name in sorted(SPANS)}) + "\n")
    print(f"recorded {len(SPANS)} outcomes in {GOLDEN}")
