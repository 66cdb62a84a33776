"""A project's figures over a time range, in time buckets: what the monitor page charts and
the summary beside the logs table shows (docs/protocol.md, "Aggregates").

Both engines fold the same per-span figures (``_facts.py``) with :func:`add_span`, so they
agree on every rule here. Each span counts in the bucket of its own start:

- ``traces``: root spans; ``failed_traces``: root spans with an error; ``errors``: spans
  with an error;
- ``llm_calls``: ``llm`` spans; tokens and cost: sums over every span, as trace totals are;
- root latency percentiles from a histogram of root durations whose bins are 25% wide
  (:func:`latency_bin`): a percentile is the middle of its bin, within 12% of the exact value;
- ``scores``: each score's average over the spans that have it.

A split (``model``, ``name`` or ``tag``) groups each span by its own value (a span with two
tags counts in both, one without in the null group).

Hourly rollups keep a week of a busy project cheap to chart: every write adds its spans'
figures to (project, hour, split kind, group) cells and takes away those of the spans it
replaced (``rollup_cells``). An aggregate whose bucket is a whole number of hours reads the
whole hours of its range from the rollups and folds the spans of the partial hours at its
edges; any other (and any filtered one) folds the spans of its range. Buckets are aligned to
multiples of their size since the Unix epoch (an hourly bucket starts on the hour), the first
and last clipped to the range.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from spanlog.server.rows._json import dumps_internal, loads
from spanlog.server.store._errors import BadRequest

SPLITS = ("model", "name", "tag")
# The split kinds cells are kept for: none (the whole project), and each split.
KINDS: dict[str | None, int] = {None: 0, "model": 1, "name": 2, "tag": 3}
HOUR = 3600
MAX_BUCKETS = 1000
# Bucket sizes picked when the client gives none: the smallest giving at most this many,
# whole hours from a range of 6 hours up (so that the rollups answer).
_AUTO_BUCKETS = 200
_SHORT_SIZES = (60, 300, 900)
_HOUR_SIZES = (HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, 24 * HOUR, 7 * 24 * HOUR)
PERCENTILES = (50, 95, 99)
# What a cell counts, in the order of the rollup tables' columns.
COUNTERS = ("traces", "errors", "failed_traces", "llm_calls", "prompt_tokens",
            "completion_tokens", "tokens", "cost", "priced", "unpriced_llm_calls")
_ALL_KINDS = tuple(KINDS.values())
_RATIO = 1.25
_LOG_RATIO = math.log(_RATIO)


@dataclass(frozen=True)
class Window:
    """What an aggregate covers: ``[since, until)`` in buckets of ``bucket`` seconds."""

    since: float
    until: float
    bucket: float
    split_by: str | None = None
    filter: str | None = None

    @property
    def first(self) -> int:
        """The epoch-aligned number of the first bucket."""
        return math.floor(self.since / self.bucket)

    @property
    def buckets(self) -> int:
        return math.ceil(self.until / self.bucket) - self.first

    def slot(self, started: float) -> int:
        """The bucket index of a span that started at ``started`` (inside the range)."""
        return math.floor(started / self.bucket) - self.first

    @property
    def hourly(self) -> bool:
        """Whether whole hours of the range can come from the rollups."""
        return self.filter is None and self.bucket % HOUR == 0

    def hours(self) -> tuple[int, int]:
        """The whole hours ``[first, end)`` inside the range (first >= end: none)."""
        return math.ceil(self.since / HOUR), math.floor(self.until / HOUR)


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
        sizes = _HOUR_SIZES if span >= 6 * HOUR else _SHORT_SIZES + _HOUR_SIZES
        size = next((s for s in sizes if span / s <= _AUTO_BUCKETS), None)
        bucket = size if size is not None else math.ceil(span / _AUTO_BUCKETS / HOUR) * HOUR
    elif isinstance(bucket, bool) or not isinstance(bucket, (int, float)) \
            or not math.isfinite(bucket) or bucket < 1:
        raise BadRequest(f"bucket: must be a number of seconds of at least 1, got {bucket!r}")
    count = math.ceil(until / bucket) - math.floor(since / bucket)
    if count > MAX_BUCKETS:
        raise BadRequest(f"bucket: {bucket:g} s makes {count} buckets over this range; at "
                         f"most {MAX_BUCKETS} (take a larger bucket)")
    if split_by is not None and split_by not in SPLITS:
        raise BadRequest(f"split_by: must be one of {', '.join(SPLITS)}, got {split_by!r}")
    if filter_text is not None and not isinstance(filter_text, str):
        raise BadRequest("filter: must be a string expression such as "
                         "\"metadata.user_id = '1234'\"")
    if isinstance(filter_text, str) and not filter_text.strip():
        filter_text = None
    return Window(float(since), float(until), float(bucket), split_by, filter_text)


def latency_bin(seconds: float) -> int:
    """The histogram bin of a duration: 0 up to 1 ms, then bins 25% wide."""
    ms = seconds * 1000
    return 0 if ms <= 1 else math.ceil(math.log(ms) / _LOG_RATIO)


def _bin_value(index: int) -> float:
    """The duration (seconds) a bin stands for: the geometric middle of its bounds."""
    return 0.001 if index == 0 else _RATIO ** (index - 0.5) / 1000


# One cell: the COUNTERS, the latency histogram (bin -> count) and score sums (name ->
# [total, count]).
Cell = tuple[list[Any], dict[int, int], dict[str, list[Any]]]
# Cells by (slot, kind, group as JSON): the slot is an hour (rollups) or a bucket index.
Cells = dict[tuple[int, int, str], Cell]


def _cell(cells: Cells, key: tuple[int, int, str]) -> Cell:
    found = cells.get(key)
    if found is None:
        found = cells[key] = ([0, 0, 0, 0, 0, 0, 0, 0.0, 0, 0], {}, {})
    return found


@lru_cache(maxsize=4096)
def _group(value: Any) -> str:
    """A group's key: its value as JSON ("null" for spans without one)."""
    return dumps_internal(value)


@lru_cache(maxsize=4096)
def _tag_groups(tags: str | None) -> tuple[str, ...]:
    return tuple(_group(tag) for tag in loads(tags)) if tags else ("null",)


def add_span(cells: Cells, slot: int, facts: Sequence[Any], kinds: Iterable[int],
             sign: int = 1, *, empty_cells: bool = True) -> None:
    """Add (``sign`` -1: take away) one span's figures (``_facts.FACT_COLUMNS`` values) to
    its cells of ``slot`` for each split kind of ``kinds``. A span with no figure (most
    spans: neither a root, an LLM call, an error nor scored) still makes its cells, so that an
    aggregate lists its groups, unless ``empty_cells`` is false (the rollups, which keep no
    empty cell: see :func:`rollup_rows`)."""
    (is_root, started, ended, name, kind, model, prompt, completion, tokens, cost, error,
     scores, tags) = facts
    llm = kind == "llm"
    deltas = [(i, sign * delta) for i, delta in enumerate((
        is_root, error, is_root and error, int(llm), prompt or 0, completion or 0, tokens or 0,
        cost or 0.0, int(cost is not None), int(llm and cost is None))) if delta]
    latency = None
    if is_root and ended is not None and started is not None and ended >= started:
        latency = latency_bin(ended - started)
    own = loads(scores).items() if scores else ()
    if not (deltas or latency is not None or own or empty_cells):
        return
    for kind_id in kinds:
        if kind_id == 0:
            groups: tuple[str, ...] = ("null",)
        elif kind_id == 1:
            groups = (_group(model),)
        elif kind_id == 2:
            groups = (_group(name),)
        else:
            groups = _tag_groups(tags)
        for group in groups:
            key = (slot, kind_id, group)
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = ([0, 0, 0, 0, 0, 0, 0, 0.0, 0, 0], {}, {})
            counts, histogram, sums = cell
            for i, delta in deltas:
                counts[i] += delta
            if latency is not None:
                histogram[latency] = histogram.get(latency, 0) + sign
            for score, value in own:
                total = sums.get(score)
                if total is None:
                    total = sums[score] = [0.0, 0]
                total[0] += sign * value
                total[1] += sign


def hourly_cells(spans: Iterable[Sequence[Any]]) -> Cells:
    """The rollup cells of spans of one project (``FACT_COLUMNS`` values each): what a job
    of new spans adds, folded ahead of the writer (in an ingest worker)."""
    cells: Cells = {}
    for facts in spans:
        started = facts[1]
        if started is not None:
            add_span(cells, math.floor(started / HOUR), facts, _ALL_KINDS, empty_cells=False)
    return cells


def rollup_cells(added: Iterable[Sequence[Any]], removed: Iterable[Sequence[Any]]
                 ) -> dict[Any, Cells]:
    """The rollup changes of one write, by project: ``added`` and ``removed`` are
    ``(pid, *FACT_COLUMNS values)`` of the spans written and of those they replaced."""
    out: dict[Any, Cells] = {}
    for entries, sign in ((added, 1), (removed, -1)):
        for pid, *facts in entries:
            started = facts[1]
            if started is not None:
                add_span(out.setdefault(pid, {}), math.floor(started / HOUR), facts, _ALL_KINDS,
                         sign, empty_cells=False)
    return out


def rollup_rows(pid: Any, cells: Cells) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]],
                                                  list[tuple[Any, ...]]]:
    """``cells`` as rows of the three rollup tables, in key order: (pid, hour, kind, group,
    *COUNTERS), (pid, hour, kind, group, bin, count), (pid, hour, kind, group, name, total,
    count). Rows that change nothing are left out."""
    counts_rows: list[tuple[Any, ...]] = []
    latency_rows: list[tuple[Any, ...]] = []
    score_rows: list[tuple[Any, ...]] = []
    for (hour, kind, group), (counts, histogram, sums) in sorted(cells.items()):
        key = (pid, hour, kind, group)
        if any(counts):
            counts_rows.append((*key, *counts))
        latency_rows.extend((*key, b, n) for b, n in sorted(histogram.items()) if n)
        score_rows.extend((*key, name, total, n) for name, (total, n) in sorted(sums.items())
                          if n or total)
    return counts_rows, latency_rows, score_rows


class Folder:
    """What an engine hands the spans and rollup rows of one aggregate to."""

    def __init__(self, win: Window) -> None:
        self.win = win
        self._kinds = sorted({0, KINDS[win.split_by]})
        self.cells: Cells = {}

    def spans(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Fold spans: ``FACT_COLUMNS`` values each, started inside the range."""
        win, cells, kinds = self.win, self.cells, self._kinds
        for facts in rows:
            add_span(cells, win.slot(facts[1]), facts, kinds)

    def _slot_of_hour(self, hour: int) -> int:
        return self.win.slot(hour * HOUR)

    def rollup_counts(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Fold rollup rows ``(hour, kind, group, *COUNTERS)``."""
        for hour, kind, group, *counts in rows:
            into = _cell(self.cells, (self._slot_of_hour(hour), kind, group))[0]
            for i, value in enumerate(counts):
                into[i] += value

    def rollup_latency(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Fold rollup rows ``(hour, kind, group, bin, count)``."""
        for hour, kind, group, index, n in rows:
            histogram = _cell(self.cells, (self._slot_of_hour(hour), kind, group))[1]
            histogram[index] = histogram.get(index, 0) + n

    def rollup_scores(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Fold rollup rows ``(hour, kind, group, name, total, count)``."""
        for hour, kind, group, name, total, n in rows:
            sums = _cell(self.cells, (self._slot_of_hour(hour), kind, group))[2]
            into = sums.setdefault(name, [0.0, 0])
            into[0] += total
            into[1] += n

    def raw_ranges(self) -> list[tuple[float, float]]:
        """The parts of the range whose spans the engine must fold itself (the rest it
        reads from the rollups: :meth:`rollup_hours`)."""
        win = self.win
        first, end = win.hours()
        if not win.hourly or first >= end:
            return [(win.since, win.until)]
        parts = [(win.since, first * HOUR), (end * HOUR, win.until)]
        return [(a, b) for a, b in parts if a < b]

    def rollup_hours(self) -> tuple[int, int] | None:
        """The hours ``[first, end)`` to read from the rollups, or None."""
        first, end = self.win.hours()
        return (first, end) if self.win.hourly and first < end else None

    @property
    def kinds(self) -> list[int]:
        """The split kinds the rollup reads need."""
        return self._kinds

    def result(self) -> dict[str, Any]:
        """The response of docs/protocol.md "Aggregates"."""
        win = self.win
        n = win.buckets
        split = KINDS[win.split_by]
        series: dict[str, list[Cell | None]] = {}
        total: Cell = ([0, 0, 0, 0, 0, 0, 0, 0.0, 0, 0], {}, {})
        for (slot, kind, group), cell in self.cells.items():
            if not 0 <= slot < n:
                continue
            if kind == split:
                series.setdefault(group, [None] * n)[slot] = cell
            if kind == 0:
                _merge(total, cell)
        ordered = sorted(series.items(), key=lambda item: (item[0] == "null", item[0]))
        first = win.first
        return {"since": win.since, "until": win.until, "bucket": win.bucket,
                "split_by": win.split_by, "filter": win.filter,
                "buckets": [max(win.since, (first + i) * win.bucket) for i in range(n)],
                "series": [_series(loads(group), cells) for group, cells in ordered],
                "summary": _figures(total)}


def _merge(into: Cell, cell: Cell) -> None:
    for i, value in enumerate(cell[0]):
        into[0][i] += value
    for index, count in cell[1].items():
        into[1][index] = into[1].get(index, 0) + count
    for name, (total, count) in cell[2].items():
        sums = into[2].setdefault(name, [0.0, 0])
        sums[0] += total
        sums[1] += count


def _percentiles(histogram: dict[int, int]) -> dict[str, float | None]:
    total = sum(n for n in histogram.values() if n > 0)
    out: dict[str, float | None] = {f"latency_p{p}": None for p in PERCENTILES}
    if not total:
        return out
    ordered = sorted((b, n) for b, n in histogram.items() if n > 0)
    for p in PERCENTILES:
        rank, seen = math.ceil(total * p / 100), 0
        for index, count in ordered:
            seen += count
            if seen >= rank:
                out[f"latency_p{p}"] = _bin_value(index)
                break
    return out


def _figures(cell: Cell) -> dict[str, Any]:
    counts, histogram, sums = cell
    figures: dict[str, Any] = {name: int(value) for name, value in zip(COUNTERS, counts,
                                                                      strict=True)}
    # Sums of floats depend on their order (rollups add them by hour): 12 decimals are more
    # than a cost or a score means, and the same whichever way they were added.
    figures["cost"] = round(float(counts[7]), 12) if counts[8] > 0 else None
    del figures["priced"]
    figures.update(_percentiles(histogram))
    figures["scores"] = {name: round(total / n, 12) for name, (total, n) in sorted(sums.items())
                         if n > 0}
    traces = figures["traces"]
    figures["error_rate"] = figures["failed_traces"] / traces if traces else None
    return figures


def _series(group: Any, cells: list[Cell | None]) -> dict[str, Any]:
    out: dict[str, Any] = {"group": group}
    names = sorted({name for cell in cells if cell is not None for name in cell[2]})
    per_bucket = [_figures(cell) if cell is not None else None for cell in cells]
    empty = _figures(([0, 0, 0, 0, 0, 0, 0, 0.0, 0, 0], {}, {}))
    for key in (*(c for c in COUNTERS if c != "priced"),
                *(f"latency_p{p}" for p in PERCENTILES)):
        out[key] = [(f if f is not None else empty)[key] for f in per_bucket]
    out["scores"] = {name: [f["scores"].get(name) if f is not None else None
                            for f in per_bucket] for name in names}
    return out
