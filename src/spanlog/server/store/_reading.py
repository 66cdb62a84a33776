"""What the engines share when they read rows out: the cursor a page continues below, a
stored row as the API returns it, and the order of a trace's rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spanlog.server.rows._json import loads
from spanlog.server.store._errors import BadRequest

# The most spans one trace read returns (docs/collector.md, "What it guarantees"): a bigger
# trace is refused with a message saying how to page through it instead.
MAX_TRACE_SPANS = 20_000


def check_trace_size(count: int, root_span_id: str) -> None:
    """:class:`BadRequest` when a trace read found more than :data:`MAX_TRACE_SPANS` rows."""
    if count > MAX_TRACE_SPANS:
        raise BadRequest(
            f"trace {root_span_id!r} has more than {MAX_TRACE_SPANS} spans, more than one "
            "request returns; page through it with fetch and the filter "
            f"\"root_span_id = '{root_span_id}'\" (docs/collector.md)")


def parse_cursor(cursor: str | None) -> int | None:
    """The transaction id a fetch cursor continues below (:class:`BadRequest` when malformed)."""
    if cursor is None or cursor == "":
        return None
    try:
        value = int(cursor)
    except (TypeError, ValueError):
        raise BadRequest(f"cursor: not a cursor this collector returned: {cursor!r}") from None
    if value <= 0 or value >= 2**63:  # transaction ids are 64-bit in both engines
        raise BadRequest(f"cursor: not a cursor this collector returned: {cursor!r}")
    return value


def api_row(xact: int, data: str, project_id: str) -> dict[str, Any]:
    """A stored row (its JSON text) as the API returns it, with its transaction id."""
    row: dict[str, Any] = loads(data)
    row["_xact_id"] = str(xact)
    row["project_id"] = project_id
    row["log_id"] = "g"
    return row


def trace_order(row: Mapping[str, Any]) -> tuple[float, str, int]:
    """The order of a trace's rows, on every engine: start time, then created, then
    transaction id."""
    metrics = row.get("metrics") or {}
    start = metrics.get("start") if isinstance(metrics, dict) else None
    return (start if isinstance(start, (int, float)) else float("inf"),
            str(row.get("created") or ""), int(row["_xact_id"]))
