"""Score averages over a trace: each span with the mean of every score over itself and the
spans below it (docs/design.md, "multiple scores").

One computation serves both readers: the trace endpoint, which has whole rows
(:func:`with_score_averages`), and a ``roots_only`` page, which has only what averaging needs
of each row, kept beside it by the engines (:func:`trace_links`, :func:`subtree_averages`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from spanlog.server.rows._json import dumps_internal
from spanlog.server.rows._model import comment_target

# What averaging needs of one row: (span_id, span_parents, scores); scores None for comment
# rows, which never count.
_Link = tuple[Any, Any, Any]
# The same with the row's id first, as an engine reads it back for a page of roots.
TraceLink = tuple[str, Any, Any, Any]
# Per score name: the sum of its values and how many there are.
_Sums = dict[str, tuple[float, int]]


def _link(row: Mapping[str, Any]) -> _Link:
    scores = row.get("scores") if comment_target(row) is None else None
    return row.get("span_id"), row.get("span_parents"), scores


def trace_links(row: Mapping[str, Any]) -> str:
    """``[span_id, span_parents, scores]`` of ``row`` as JSON: what :func:`subtree_averages`
    needs of it, small enough for an engine to keep beside the row and read a whole page of
    traces' worth at once. A comment row's scores are left out (they never count)."""
    return dumps_internal(_link(row))


def with_score_averages(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of one trace, each with ``scores_avg``: its own and its descendants' scores.

    For every span and every score name, the mean of that score over the span itself and every
    span below it (through ``span_parents``) that has a non-null value for it. This is how the
    seed document's "multiple scores" work: each submission is a child span, and the parent
    shows their average. Comment rows (``comment_target``) hang in the tree but carry no
    scores of their own, whatever they hold.
    """
    sums = _subtree_sums([_link(row) for row in rows], range(len(rows)))
    return [{**row, "scores_avg": _averages(row_sums)}
            for row, row_sums in zip(rows, sums, strict=True)]


def subtree_averages(trace: Sequence[TraceLink], ids: Iterable[str]) -> dict[str, dict[str, float]]:
    """``scores_avg`` of the rows ``ids`` of one trace, from just its tree links and scores:
    what :func:`with_score_averages` gives those rows. A ``roots_only`` fetch needs the
    roots' averages alone, for a whole page of traces read at once."""
    position: dict[str, int] = {}
    for i, (row_id, _, _, _) in enumerate(trace):
        position[row_id] = i
    wanted = [(row_id, position[row_id]) for row_id in ids if row_id in position]
    sums = _subtree_sums([link[1:] for link in trace], [i for _, i in wanted])
    return {row_id: _averages(row_sums)
            for (row_id, _), row_sums in zip(wanted, sums, strict=True)}


def roots_by_trace(roots: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """A page's roots ``(root_span_id, id)`` grouped by trace: what :func:`root_averages`
    needs, and the trace ids to read the links of."""
    wanted: dict[str, list[str]] = {}
    for root_span_id, row_id in roots:
        wanted.setdefault(root_span_id, []).append(row_id)
    return wanted


def root_averages(traces: Mapping[str, Sequence[TraceLink]], wanted: Mapping[str, list[str]]
                  ) -> dict[tuple[str, str], dict[str, float]]:
    """``scores_avg`` of each wanted root ``(root_span_id, id)``, from its trace's links."""
    return {(root_span_id, row_id): average
            for root_span_id, trace in traces.items()
            for row_id, average in subtree_averages(trace, wanted[root_span_id]).items()}


def _averages(sums: _Sums) -> dict[str, float]:
    return {name: total / count for name, (total, count) in sorted(sums.items())}


def _subtree_sums(links: Sequence[_Link], starts: Iterable[int]) -> list[_Sums]:
    """The score sums of the subtree under each row of ``starts`` (positions in ``links``),
    each span below counted once however many paths lead to it."""
    by_span: dict[str, int] = {}
    for i, (span_id, _, _) in enumerate(links):
        if isinstance(span_id, str):
            by_span[span_id] = i
    children: dict[str, list[int]] = {}
    for i, (_, parents, _) in enumerate(links):
        if isinstance(parents, list):
            for parent in parents:
                if parent in by_span:
                    children.setdefault(parent, []).append(i)
    own: list[dict[str, float]] = []
    for _, _, scores in links:
        if not isinstance(scores, dict):
            scores = {}
        own.append({name: float(value) for name, value in scores.items()
                    if isinstance(value, (int, float)) and not isinstance(value, bool)})
    sums = _tree_sums(links, children, own)
    if sums is not None:
        return [sums[i] for i in starts]
    return [_walk_sums(links, children, own, i) for i in starts]


def _add(into: _Sums, scores: Mapping[str, tuple[float, int]]) -> None:
    for name, (total, count) in scores.items():
        old_total, old_count = into.get(name, (0.0, 0))
        into[name] = (old_total + total, old_count + count)


def _tree_sums(links: Sequence[_Link], children: dict[str, list[int]],
               own: list[dict[str, float]]) -> list[_Sums] | None:
    """Subtree sums in one bottom-up pass, or None unless the trace is a forest."""
    parent_of: dict[int, int] = {}
    for kids in children.values():
        for kid in kids:
            if kid in parent_of:  # a span with two parents in this trace: not a tree
                return None
            parent_of[kid] = -1
    spans = [span_id for span_id, _, _ in links if isinstance(span_id, str)]
    if len(set(spans)) < len(spans):
        # Two rows share a span_id: both are parents of its children, which one pass up a
        # forest cannot express.
        return None
    index = {span_id: i for i, (span_id, _, _) in enumerate(links)}
    pending = [0] * len(links)
    for parent_span, kids in children.items():
        for kid in kids:
            parent_of[kid] = index[parent_span]
            pending[index[parent_span]] += 1
    sums: list[_Sums] = [{name: (value, 1) for name, value in scores.items()} for scores in own]
    ready = [i for i in range(len(links)) if pending[i] == 0]
    done = 0
    while ready:
        i = ready.pop()
        done += 1
        parent = parent_of.get(i)
        if parent is not None:
            _add(sums[parent], sums[i])
            pending[parent] -= 1
            if pending[parent] == 0:
                ready.append(parent)
    return sums if done == len(links) else None  # a cycle never gets ready


def _walk_sums(links: Sequence[_Link], children: dict[str, list[int]],
               own: list[dict[str, float]], i: int) -> _Sums:
    # The general case (several parents, cycles): walk the subtree with a visited set, so
    # each span counts once. Quadratic at worst, which only malformed traces pay.
    seen = {i}
    stack = [i]
    sums: _Sums = {}
    while stack:
        j = stack.pop()
        _add(sums, {name: (value, 1) for name, value in own[j].items()})
        span_id = links[j][0]
        for child in children.get(span_id, ()) if isinstance(span_id, str) else ():
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return sums
