"""How pieces of one row combine: the merge rules of docs/protocol.md, shared by SDK and collector.

A span is written in several pieces with the same ``id``: its start (a replace), later
``span.log`` calls and its end (merges), feedback (merges, possibly from another process and
possibly arriving before the span's own first piece). The SDK buffer folds pieces together
before sending; the collector folds what arrives later into what it stored. Both call
:func:`merge_into` so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

IS_MERGE = "_is_merge"
MERGE_PATHS = "_merge_paths"

# Identity and birth of a span: the first value written wins, whatever comes later.
KEEP_FIRST = frozenset({"created", "span_id", "root_span_id", "span_parents"})

# Control fields that steer a merge and are never stored in the row itself.
CONTROL_FIELDS = frozenset({IS_MERGE, MERGE_PATHS})


def is_merge(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` is a merge piece (deep-merges) rather than a replace piece."""
    return bool(row.get(IS_MERGE))


def _union_tags(old: Any, new: Any) -> Any:
    if not isinstance(old, list) or not isinstance(new, list):
        return new
    seen = set()
    out = []
    for tag in [*old, *new]:
        key = tag if isinstance(tag, str) else repr(tag)
        if key not in seen:
            seen.add(key)
            out.append(tag)
    return out


def _deep_merge(into: dict[str, Any], update: Mapping[str, Any], stop: set[tuple[str, ...]],
                path: tuple[str, ...]) -> None:
    for key, value in update.items():
        here = (*path, key)
        current = into.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict) and here not in stop:
            merged = dict(current)
            _deep_merge(merged, value, stop, here)
            into[key] = merged
        else:
            into[key] = value


def _merge_stops(row: Mapping[str, Any]) -> set[tuple[str, ...]]:
    paths = row.get(MERGE_PATHS)
    if not isinstance(paths, Sequence) or isinstance(paths, str):
        return set()
    return {tuple(str(p) for p in path) for path in paths
            if isinstance(path, Sequence) and not isinstance(path, str)}


def strip_control(row: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``row`` without the fields that only steer merging."""
    return {k: v for k, v in row.items() if k not in CONTROL_FIELDS}


def merge_into(stored: Mapping[str, Any] | None, incoming: Mapping[str, Any]) -> dict[str, Any]:
    """The row that results from applying piece ``incoming`` on top of ``stored``.

    - a merge piece deep-merges: objects key by key (not below ``_merge_paths``), scalars and
      arrays replace, ``tags`` union;
    - a replace piece replaces everything;
    - either way ``created``, ``span_id``, ``root_span_id`` and ``span_parents`` keep the first
      value that was written.

    Neither argument is modified. The result carries no control fields.
    """
    if stored is None:
        return strip_control(incoming)
    if is_merge(incoming):
        result = dict(stored)
        stops = _merge_stops(incoming)
        for key, value in incoming.items():
            if key in CONTROL_FIELDS:
                continue
            if key in KEEP_FIRST and result.get(key) is not None:
                continue
            if key == "tags":
                result[key] = _union_tags(result.get(key), value)
            elif (isinstance(value, Mapping) and isinstance(result.get(key), dict)
                  and (key,) not in stops):
                merged = dict(result[key])
                _deep_merge(merged, value, stops, (key,))
                result[key] = merged
            else:
                result[key] = value
        return result
    result = strip_control(incoming)
    for key in KEEP_FIRST:
        if stored.get(key) is not None:
            result[key] = stored[key]
    return result


def merge_under(base: Mapping[str, Any], merged_pieces: Mapping[str, Any]) -> dict[str, Any]:
    """Put a late replace piece ``base`` underneath merges that arrived before it.

    Feedback may reach the collector before the span's own first (replace) piece. Applying
    the replace last would erase that feedback, so the collector applies the replace first
    and the earlier merges on top, as if everything had arrived in order.
    """
    on_top = dict(merged_pieces)
    on_top[IS_MERGE] = True
    return merge_into(strip_control(base), on_top)
