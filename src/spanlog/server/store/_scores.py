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
# A score with at most this many distinct values in a trace is summed by popcounts.
_FEW_VALUES = 64


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
    return _dag_sums(links, children, own, list(starts))


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


def _components(kids: list[list[int]]) -> tuple[list[int], int]:
    """Strongly connected components (Tarjan, iterative): each node's component number and
    how many there are. A component's successors always get smaller numbers, so counting up
    is a bottom-up order."""
    n = len(kids)
    index = [-1] * n
    low = [0] * n
    comp = [-1] * n
    on_stack = [False] * n
    stack: list[int] = []
    counter = 0
    count = 0
    for top in range(n):
        if index[top] != -1:
            continue
        work = [(top, 0)]
        index[top] = low[top] = counter
        counter += 1
        stack.append(top)
        on_stack[top] = True
        while work:
            node, at = work[-1]
            if at < len(kids[node]):
                work[-1] = (node, at + 1)
                kid = kids[node][at]
                if index[kid] == -1:
                    index[kid] = low[kid] = counter
                    counter += 1
                    stack.append(kid)
                    on_stack[kid] = True
                    work.append((kid, 0))
                elif on_stack[kid]:
                    low[node] = min(low[node], index[kid])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack[member] = False
                    comp[member] = count
                    if member == node:
                        break
                count += 1
    return comp, count


def _dag_sums(links: Sequence[_Link], children: dict[str, list[int]],
              own: list[dict[str, float]], starts: list[int]) -> list[_Sums]:
    """Subtree sums when spans have several parents (or parents form a cycle): each span
    below counted once, however many paths lead to it.

    Each span's set of descendants is a bitset (a Python int) built bottom-up over the
    strongly connected components: one OR per edge, each n/64 machine words, so 10,000
    spans take milliseconds where a walk per span took minutes. A score's sum over a set is
    ``value * popcount(set & spans with that value)`` per distinct value, or, for a score
    with many distinct values, one pass over the set's bits (in C: ``str.find``).
    """
    kids = [children.get(span_id, []) if isinstance(span_id, str) else []
            for span_id, _, _ in links]
    comp, count = _components(kids)
    members: list[list[int]] = [[] for _ in range(count)]
    for node, c in enumerate(comp):
        members[c].append(node)
    reach = [0] * count
    for c in range(count):  # successors first (see _components)
        bits = 0
        for node in members[c]:
            bits |= 1 << node
            for kid in kids[node]:
                if comp[kid] != c:
                    bits |= reach[comp[kid]]
        reach[c] = bits
    # Per score name: each distinct value and the spans that have it.
    by_value: dict[str, dict[float, int]] = {}
    for node, scores in enumerate(own):
        for name, value in scores.items():
            values = by_value.setdefault(name, {})
            values[value] = values.get(value, 0) | (1 << node)
    planes = {name: _bit_planes(values) for name, values in by_value.items()
              if len(values) > _FEW_VALUES}
    out: list[_Sums] = []
    for start in starts:
        bits = reach[comp[start]]
        sums: _Sums = {}
        for name, values in by_value.items():
            plane = planes.get(name)
            if plane is None:
                total, seen = 0.0, 0
                for value, mask in values.items():
                    hits = (bits & mask).bit_count()
                    if hits:
                        total += value * hits
                        seen += hits
            else:
                has, scale, positive, negative = plane
                seen = (bits & has).bit_count()
                exact = sum(((bits & mask).bit_count() << b) for b, mask in positive)
                exact -= sum(((bits & mask).bit_count() << b) for b, mask in negative)
                total = exact / scale
            if seen:
                sums[name] = (total, seen)
        out.append(sums)
    return out


def _bit_planes(values: dict[float, int]) -> tuple[int, int, list[tuple[int, int]],
                                                     list[tuple[int, int]]]:
    """A score's values as exact integers over one power-of-two scale (every float is one),
    split into bit planes: for each bit, the spans whose value has it. The sum over a set is
    then one popcount per plane (about 60 for arbitrary floats in [0, 1])."""
    ratios = {value: value.as_integer_ratio() for value in values}
    scale = max(den for _, den in ratios.values())
    has = 0
    positive: dict[int, int] = {}
    negative: dict[int, int] = {}
    for value, mask in values.items():
        has |= mask
        num, den = ratios[value]
        exact = num * (scale // den)
        into = positive if exact >= 0 else negative
        exact = abs(exact)
        b = 0
        while exact:
            if exact & 1:
                into[b] = into.get(b, 0) | mask
            exact >>= 1
            b += 1
    return has, scale, sorted(positive.items()), sorted(negative.items())
