"""What trace totals and project aggregates need of one span, kept by the engines in a
narrow table beside the rows (``spans`` in SQLite, ``spanlog_spans`` in PostgreSQL).

A page of roots gets its traces' totals, and an aggregate over a week of spans gets its
sums, from these columns alone, without parsing a row (docs/protocol.md, "Trace totals").
Both engines take the values from :func:`span_facts`, so they agree on every rule here:

- ``started``/``ended``: ``metrics.start``/``metrics.end`` (Unix seconds); a row without a
  start is placed at its ``created`` time, so every span has a place in a time range.
- ``type``, ``name``: ``span_attributes.type`` and ``.name``; an ``llm`` span is an LLM call.
- ``model``: ``metadata.model``.
- ``prompt_tokens``, ``completion_tokens``: the metrics of those names; ``tokens`` is
  ``metrics.tokens``, or their sum when it is absent.
- ``cost``: the span's estimated cost in USD (``rows._cost.span_cost``), None when unknown.
- ``error``: 1 when the span has a non-null ``error``.
- ``scores``: the span's own numeric scores as a JSON object, ``tags`` its string tags as
  a JSON array (None when there are none).

Comment rows are not spans and have no facts.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from spanlog.server.rows._cost import span_cost
from spanlog.server.rows._json import dumps_internal
from spanlog.server.rows._model import comment_target, is_root

# The columns :func:`span_facts` gives values for, in its order (after the row's own keys).
FACT_COLUMNS = ("is_root", "started", "ended", "name", "type", "model", "prompt_tokens",
                "completion_tokens", "tokens", "cost", "error", "scores", "tags")

Facts = tuple[Any, ...]


def _number(value: Any) -> float | None:
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        return float(value) if -1e300 < value < 1e300 else None
    return None


def _count(value: Any) -> int | None:
    kind = type(value)
    if kind is int:
        return value if 0 <= value < 2**63 else None
    if kind is float and value.is_integer() and 0 <= value < 2**63:
        return int(value)
    return None


def _created(row: dict[str, Any]) -> float | None:
    created = row.get("created")
    if type(created) is not str:
        return None
    try:
        return datetime.fromisoformat(created).timestamp()
    except ValueError:
        return None


_EMPTY: dict[str, Any] = {}


def span_facts(row: dict[str, Any]) -> Facts | None:
    """The values of :data:`FACT_COLUMNS` for stored row ``row``; None for a comment row."""
    if row.get("comment") is not None and comment_target(row) is not None:
        return None
    metrics = row.get("metrics")
    if type(metrics) is not dict:
        metrics = _EMPTY
    attributes = row.get("span_attributes")
    if type(attributes) is not dict:
        attributes = _EMPTY
    metadata = row.get("metadata")
    model = metadata.get("model") if type(metadata) is dict else None
    name, kind = attributes.get("name"), attributes.get("type")
    started = _number(metrics.get("start"))
    if started is None:
        started = _created(row)
    prompt = _count(metrics.get("prompt_tokens"))
    completion = _count(metrics.get("completion_tokens"))
    tokens = _count(metrics.get("tokens"))
    if tokens is None and prompt is not None and completion is not None:
        tokens = prompt + completion
    # Only an LLM span, or one whose client logged a cost, can have one.
    cost = span_cost(row) if kind == "llm" or "estimated_cost" in metrics \
        or "cost" in metrics else None
    own = labels = None
    scores = row.get("scores")
    if type(scores) is dict and scores:
        numeric = {key: float(value) for key, value in scores.items()
                   if _number(value) is not None}
        own = dumps_internal(numeric) if numeric else None
    tags = row.get("tags")
    if type(tags) is list and tags:
        strings = [tag for tag in tags if type(tag) is str]
        labels = dumps_internal(strings) if strings else None
    return (int(is_root(row)), started, _number(metrics.get("end")),
            name if type(name) is str else None, kind if type(kind) is str else None,
            model if type(model) is str else None, prompt, completion, tokens, cost,
            int(row.get("error") is not None), own, labels)


# What a trace's totals are made of, as SQL over its ``spans`` entries (both engines).
TOTALS_SQL = ("count(*), sum(CASE WHEN type = 'llm' THEN 1 ELSE 0 END), sum(prompt_tokens), "
              "sum(completion_tokens), sum(tokens), sum(cost), "
              "sum(CASE WHEN type = 'llm' AND cost IS NULL THEN 1 ELSE 0 END), sum(error), "
              "min(started), max(ended)")


def trace_totals(values: tuple[Any, ...] | None) -> dict[str, Any]:
    """The ``trace_totals`` object of a root (docs/protocol.md) from the :data:`TOTALS_SQL`
    values of its trace (None: the trace has no span entries)."""
    if values is None:
        values = (0, 0, None, None, None, None, 0, 0, None, None)
    spans, llm, prompt, completion, tokens, cost, unpriced, errors, first, last = values
    duration = last - first if first is not None and last is not None else None
    return {"spans": int(spans), "llm_calls": int(llm or 0),
            "prompt_tokens": int(prompt or 0), "completion_tokens": int(completion or 0),
            "tokens": int(tokens or 0),
            "estimated_cost": float(cost) if cost is not None else None,
            "unpriced_llm_calls": int(unpriced or 0), "errors": int(errors or 0),
            "duration": float(duration) if duration is not None and duration >= 0 else None}
