"""A project's figures over a time range, in time buckets: what the monitor page charts and
the summary beside the logs table shows (docs/protocol.md, "Aggregates").

Both engines run the same statements over their table of per-span figures (``_facts.py``),
written here once with what differs between the two SQL dialects in :class:`Dialect`. Each
span counts in the bucket of its own start:

- ``traces``: root spans; ``latency_p50/p95/p99``: their durations (nearest rank);
- ``errors``: traces with at least one failed span in the bucket;
- ``llm_calls``: ``llm`` spans; tokens and cost: sums over every span, as trace totals are;
- ``scores``: each score's average over the spans that have it.

A split (``model``, ``name`` or ``tag``) groups each span by its own value (a span with two
tags counts in both). A filter keeps the traces whose root matches it: the engine first finds
those roots, and the statements then read only their spans.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spanlog.server.store._errors import BadRequest

SPLITS = ("model", "name", "tag")
MAX_BUCKETS = 1000
# Bucket sizes picked when the client gives none: the smallest giving at most this many.
_AUTO_BUCKETS = 200
_BUCKET_SIZES = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Window:
    """What an aggregate covers: ``[since, until)`` in buckets of ``bucket`` seconds."""

    since: float
    until: float
    bucket: float
    split_by: str | None = None
    filter: str | None = None

    @property
    def buckets(self) -> int:
        return max(1, math.ceil((self.until - self.since) / self.bucket))


def window(since: float | None, until: float | None, bucket: Any, split_by: Any,
           filter_text: Any, now: float) -> Window:
    """The checked :class:`Window` of a request (defaults: the last 24 hours, a bucket size
    giving at most 200 buckets); :class:`BadRequest` naming the field otherwise."""
    until = now if until is None else until
    since = until - 86400 if since is None else since
    if since >= until:
        raise BadRequest(f"until: must be after since (since {since:g}, until {until:g})")
    span = until - since
    if bucket is None:
        size = next((s for s in _BUCKET_SIZES if span / s <= _AUTO_BUCKETS), None)
        bucket = size if size is not None else math.ceil(span / _AUTO_BUCKETS)
    elif isinstance(bucket, bool) or not isinstance(bucket, (int, float)) \
            or not math.isfinite(bucket) or bucket < 1:
        raise BadRequest(f"bucket: must be a number of seconds of at least 1, got {bucket!r}")
    if span / bucket > MAX_BUCKETS:
        raise BadRequest(f"bucket: {bucket:g} s makes {math.ceil(span / bucket)} buckets over "
                         f"this range; at most {MAX_BUCKETS} (take a larger bucket)")
    if split_by is not None and split_by not in SPLITS:
        raise BadRequest(f"split_by: must be one of {', '.join(SPLITS)}, got {split_by!r}")
    if filter_text is not None and not isinstance(filter_text, str):
        raise BadRequest("filter: must be a string expression such as "
                         "\"metadata.user_id = '1234'\"")
    if isinstance(filter_text, str) and not filter_text.strip():
        filter_text = None
    return Window(float(since), float(until), float(bucket), split_by, filter_text)


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines' SQL for the statements of :func:`statements`."""

    table: str
    # The trace a span belongs to (a root without root_span_id is a trace of its own).
    trace_key: str
    # A join giving each span one row per tag as ``t.value`` (a span without tags: NULL).
    tags_join: str
    # A join giving each span one row per own score as ``sc.key`` and ``sc.value``.
    scores_join: str
    score_value: str
    # The bucket number of ``s.started`` given the placeholders of since and bucket size.
    bucket: Callable[[str, str], str]
    # A condition: the span's trace is one of the list that placeholder holds.
    in_traces: Callable[[str], str]
    # The placeholder of the n-th (1-based) parameter, of SQL type ``kind``.
    placeholder: Callable[[int, str], str]


@dataclass
class _Params:
    dialect: Dialect
    values: list[Any] = field(default_factory=list)

    def add(self, value: Any, kind: str) -> str:
        self.values.append(value)
        return self.dialect.placeholder(len(self.values), kind)


def statements(dialect: Dialect, pid: int, win: Window, traces: Any = None
               ) -> dict[str, tuple[str, list[Any]]]:
    """The statements of one aggregate, by name, each with its parameters. ``traces``: the
    engine's parameter value for the list of traces a filter kept (None: no filter)."""
    out: dict[str, tuple[str, list[Any]]] = {}
    for name, grouped in (("series", True), ("summary", False)):
        for part in ("counts", "latency", "scores"):
            params = _Params(dialect)
            out[f"{name}_{part}"] = (_statement(dialect, params, pid, win, traces, part,
                                                grouped), params.values)
    return out


def _statement(dialect: Dialect, params: _Params, pid: int, win: Window, traces: Any,
               part: str, grouped: bool) -> str:
    where = [f"s.pid = {params.add(pid, 'bigint')}",
             f"s.started >= {params.add(win.since, 'float8')}",
             f"s.started < {params.add(win.until, 'float8')}"]
    if traces is not None:
        where.append(dialect.in_traces(params.add(traces, "text[]")))
    joins = ""
    if grouped:
        bucket = dialect.bucket(params.add(win.since, "float8"), params.add(win.bucket, "float8"))
        group = {"model": "s.model", "name": "s.name", "tag": "t.value", None: "NULL"}[
            win.split_by]
        if win.split_by == "tag":
            joins = f" {dialect.tags_join}"
        keys, by = f"{bucket} AS b, {group} AS g", " GROUP BY 1, 2"
    else:
        keys, by = "0 AS b, NULL AS g", ""
    source = f"{dialect.table} AS s{joins}"
    if part == "counts":
        return (
            f"SELECT {keys}, sum(s.is_root), "
            f"count(DISTINCT CASE WHEN s.error = 1 THEN {dialect.trace_key} END), "
            "sum(CASE WHEN s.type = 'llm' THEN 1 ELSE 0 END), sum(s.prompt_tokens), "
            "sum(s.completion_tokens), sum(s.tokens), sum(s.cost), "
            "sum(CASE WHEN s.type = 'llm' AND s.cost IS NULL THEN 1 ELSE 0 END) "
            f"FROM {source} WHERE {' AND '.join(where)}{by}")
    if part == "scores":
        return (f"SELECT {keys}, sc.key, avg({dialect.score_value}), count(*) "
                f"FROM {source} {dialect.scores_join} WHERE {' AND '.join(where)}"
                f"{by}{', 3' if grouped else ' GROUP BY 3'}")
    # Latency: each bucket's durations ranked, and the ranks of its percentiles kept.
    ranks = " OR ".join(f"k = (n * {p} + 99) / 100" for p in PERCENTILES)
    return (
        f"SELECT b, g, k, n, d FROM (SELECT b, g, d, "
        "row_number() OVER (PARTITION BY b, g ORDER BY d) AS k, "
        "count(*) OVER (PARTITION BY b, g) AS n FROM "
        f"(SELECT {keys}, s.ended - s.started AS d FROM {source} "
        f"WHERE {' AND '.join(where)} AND s.is_root = 1 AND s.ended >= s.started) AS roots"
        f") AS ranked WHERE {ranks}")


def _empty(n: int, value: Any) -> list[Any]:
    return [value] * n


def assemble(win: Window, results: Mapping[str, Sequence[Sequence[Any]]]) -> dict[str, Any]:
    """The response of an aggregate (docs/protocol.md, "Aggregates") from the rows each
    statement of :func:`statements` returned."""
    n = win.buckets
    series: dict[Any, dict[str, Any]] = {}

    def group(key: Any) -> dict[str, Any]:
        found = series.get(key)
        if found is None:
            found = series[key] = {
                "group": key, "traces": _empty(n, 0), "errors": _empty(n, 0),
                "llm_calls": _empty(n, 0), "prompt_tokens": _empty(n, 0),
                "completion_tokens": _empty(n, 0), "tokens": _empty(n, 0),
                "cost": _empty(n, None), "unpriced_llm_calls": _empty(n, 0),
                **{f"latency_p{p}": _empty(n, None) for p in PERCENTILES}, "scores": {}}
        return found

    for b, g, *values in results["series_counts"]:
        if not 0 <= int(b) < n:
            continue
        into = group(g)
        for name, value in zip(("traces", "errors", "llm_calls", "prompt_tokens",
                                "completion_tokens", "tokens", "cost", "unpriced_llm_calls"),
                               values, strict=True):
            into[name][int(b)] = _figure(name, value)
    for b, g, k, count, duration in results["series_latency"]:
        if 0 <= int(b) < n:
            for p in _percentiles_at(int(k), int(count)):
                group(g)[f"latency_p{p}"][int(b)] = float(duration)
    for b, g, name, average, _ in results["series_scores"]:
        if 0 <= int(b) < n:
            group(g)["scores"].setdefault(name, _empty(n, None))[int(b)] = float(average)
    ordered = sorted(series.values(), key=lambda s: (s["group"] is None, str(s["group"])))

    summary: dict[str, Any] = {"traces": 0, "errors": 0, "llm_calls": 0, "prompt_tokens": 0,
                               "completion_tokens": 0, "tokens": 0, "cost": None,
                               "unpriced_llm_calls": 0,
                               **{f"latency_p{p}": None for p in PERCENTILES}, "scores": {}}
    for _, _, *values in results["summary_counts"]:
        for name, value in zip(("traces", "errors", "llm_calls", "prompt_tokens",
                                "completion_tokens", "tokens", "cost", "unpriced_llm_calls"),
                               values, strict=True):
            summary[name] = _figure(name, value)
    for _, _, k, count, duration in results["summary_latency"]:
        for p in _percentiles_at(int(k), int(count)):
            summary[f"latency_p{p}"] = float(duration)
    for _, _, name, average, _ in results["summary_scores"]:
        summary["scores"][name] = float(average)
    summary["scores"] = dict(sorted(summary["scores"].items()))
    summary["error_rate"] = summary["errors"] / summary["traces"] if summary["traces"] else None
    return {"since": win.since, "until": win.until, "bucket": win.bucket,
            "split_by": win.split_by, "filter": win.filter,
            "buckets": [win.since + i * win.bucket for i in range(n)],
            "series": ordered, "summary": summary}


def _figure(name: str, value: Any) -> Any:
    if name == "cost":
        return float(value) if value is not None else None
    return int(value or 0)


def _percentiles_at(rank: int, count: int) -> list[int]:
    """The percentiles whose nearest rank among ``count`` values is ``rank``."""
    return [p for p in PERCENTILES if (count * p + 99) // 100 == rank]
