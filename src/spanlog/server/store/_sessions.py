"""Sessions (docs/protocol.md, "Sessions"): a project's traces grouped by the value of its
session key (``_settings.py``) on their root spans, as the engines list them.

A session is the set of traces whose root span holds the same string at the key's path;
it is as recent as the latest start of its traces. Both engines compute a page of sessions
in one SQL statement over root spans and their ``spans`` entries, with the same order
(latest start first, then session id, byte order, descending) and the same cursor.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from spanlog.server.store._errors import BadRequest
from spanlog.server.store._facts import trace_totals

MAX_SESSIONS = 200  # sessions per page


@dataclass(frozen=True)
class SessionQuery:
    """What a page of sessions is asked for (checked)."""

    path: tuple[str, ...]
    limit: int = 50
    # (latest start, session id) of the last session of the previous page.
    after: tuple[float, str] | None = None
    since: float | None = None
    until: float | None = None
    session_id: str | None = None  # only this session
    # Only these traces (root_span_ids), when the caller knows them: read through the trace
    # index instead of every root of the project.
    traces: tuple[str, ...] | None = None


def check_limit(limit: Any) -> int:
    """``limit`` of a page of sessions, from 1 to :data:`MAX_SESSIONS`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SESSIONS:
        raise BadRequest(f"limit: must be an integer from 1 to {MAX_SESSIONS}, got {limit!r}")
    return limit


def parse_cursor(cursor: str | None) -> tuple[float, str] | None:
    """The position a sessions cursor continues after (:class:`BadRequest` when malformed)."""
    if cursor is None or cursor == "":
        return None
    try:
        last, session_id = json.loads(cursor)
        if isinstance(last, bool) or not isinstance(last, (int, float)) \
                or not isinstance(session_id, str) or not math.isfinite(last):
            raise ValueError
    except (ValueError, TypeError):
        raise BadRequest(f"cursor: not a cursor this collector returned: {cursor!r}") from None
    return float(last), session_id


def make_cursor(last: float, session_id: str) -> str:
    """The cursor of a page that ends with this session."""
    return json.dumps([last, session_id], ensure_ascii=False)


def session_summary(session_id: str, traces: int, first: float | None, last: float | None,
                    totals: tuple[Any, ...]) -> dict[str, Any]:
    """One session as the API lists it (``totals``: the TOTALS_SQL values of its spans)."""
    return {"session_id": session_id, "traces": int(traces), "first_start": first,
            "last_start": last, "totals": trace_totals(totals if totals[0] else None)}


def session_filter(key: str, session_id: str) -> str:
    """The filter expression for the traces of one session (``key``: a checked session
    key, ``_settings.session_path``)."""
    return f"{key} = '{session_id.replace(chr(39), chr(39) * 2)}'"
