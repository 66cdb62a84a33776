"""What a stored row's fields mean beyond their shape: when it was created, whether it is
the root of a trace, and which row a comment row is about."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any


def now_iso() -> str:
    """The current time as ISO-8601 UTC, the form ``created`` takes."""
    return datetime.now(timezone.utc).isoformat()


def is_root(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` is the root span of a trace: a span (it has a ``span_id``) without
    parents. Comment rows and feedback that arrived before its span are not."""
    return (not row.get("span_parents") and row.get("span_id") is not None
            and row.get("origin") is None)


def comment_target(row: Mapping[str, Any]) -> str | None:
    """The id of the row that comment row ``row`` is about; None when ``row`` is no comment.

    A comment is its own row ``{id, origin: {id: target}, comment: {text}}`` (docs/protocol.md,
    feedback), the shape both ``log_feedback`` implementations write and the viewer reads.
    """
    if row.get("comment") is None:
        return None
    origin = row.get("origin")
    target = origin.get("id") if isinstance(origin, dict) else None
    return target if isinstance(target, str) else None
