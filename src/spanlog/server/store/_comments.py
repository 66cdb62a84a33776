"""Placing comment rows in their target's trace, on every engine.

A comment is its own row ``{id, origin: {id: target}, comment: {text}}`` (docs/protocol.md,
feedback). It joins its target's trace as soon as both are stored, whichever arrived first:
:func:`link_comment` says how one comment joins, :func:`waiting_comments` and
:func:`link_waiting` do it for a write batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from spanlog.server.rows._apply import StoredRow
from spanlog.server.rows._model import comment_target


def link_comment(comment: StoredRow, target: Mapping[str, Any] | None) -> StoredRow | None:
    """``comment`` placed in its target's trace, or None when there is nothing to do.

    A comment row gets the target's ``root_span_id``, so reading the trace returns it, and
    ``span_parents: [target's span_id]``, so a tree built from ``span_parents`` hangs it under
    the span it is about. It never becomes a root (``is_root``) and never counts in score
    averages (``_scores.py``). Nothing happens while the target has no trace yet (not stored,
    or only feedback merges stored so far); engines call this again when the target's first
    ``root_span_id`` arrives, so either arrival order ends the same way.
    """
    if target is None or comment.data.get("root_span_id") is not None:
        return None
    root = target.get("root_span_id")
    if root is None:
        return None
    data = dict(comment.data)
    data["root_span_id"] = root
    span_id = target.get("span_id")
    if span_id is not None and not data.get("span_parents"):
        data["span_parents"] = [span_id]
    return StoredRow(data=data, base_digest=comment.base_digest)


RowKey = tuple[int, str]  # (the engine's project number, row id)


def waiting_comments(current: Mapping[RowKey, StoredRow | None],
                     keys: Iterable[RowKey]) -> dict[RowKey, RowKey]:
    """The comments among ``keys`` that are not in a trace yet, each with its target's key."""
    waiting: dict[RowKey, RowKey] = {}
    for key in keys:
        stored = current[key]
        if stored is not None and stored.data.get("root_span_id") is None:
            target_id = comment_target(stored.data)
            if target_id is not None:
                waiting[key] = (key[0], target_id)
    return waiting


def link_waiting(current: dict[RowKey, StoredRow | None], waiting: Mapping[RowKey, RowKey],
                 stored_targets: Mapping[RowKey, Mapping[str, Any]]) -> None:
    """Link each waiting comment to its target's trace, in place in ``current``.

    A target written in this batch is taken from ``current``; otherwise from
    ``stored_targets`` (the engine's lookup of ``root_span_id`` and ``span_id``).
    """
    for key, target_key in waiting.items():
        target: Mapping[str, Any] | None
        if target_key in current:
            target_row = current[target_key]
            target = target_row.data if target_row is not None else None
        else:
            target = stored_targets.get(target_key)
        comment = current[key]
        assert comment is not None
        linked = link_comment(comment, target)
        if linked is not None:
            current[key] = linked
