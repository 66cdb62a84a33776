"""Rows waiting to be sent: a bounded queue that counts what it drops and merges by id.

The caller's thread only appends (``deque.append`` is atomic, so no lock on the hot path);
the flusher drains, folds the pieces of each row together with :mod:`spanlog._merge` and
hands back one row per id. A full buffer refuses new rows and counts each one exactly; the
count shows in ``spanlog.stats()`` and in a warning at most every ``_WARN_EVERY`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from . import _log
from ._ids import row_id_for
from ._merge import IS_MERGE, merge_into, merge_under
from ._serialize import pace

_WARN_EVERY = 10.0

# A row, or a row still to be made: a callable that the flush calls, off the caller's thread
# (spanlog.otel queues the values of ended OpenTelemetry spans so); it returns None if it
# cannot be one.
Piece = dict[str, Any] | Callable[[], dict[str, Any] | None]


class Buffer:
    """A bounded FIFO of row pieces."""

    __slots__ = ("_drop_lock", "_last_warning", "_unwarned", "dropped", "max_rows", "rows")

    def __init__(self, max_rows: int) -> None:
        self.rows: deque[Piece] = deque()
        self.max_rows = max_rows
        self.dropped = 0
        self._unwarned = 0
        self._last_warning = 0.0
        self._drop_lock = threading.Lock()

    def push(self, row: Piece) -> None:
        """Queue ``row``, or count it as dropped when the buffer is full."""
        rows = self.rows
        if len(rows) < self.max_rows:
            rows.append(row)
        else:
            self.drop(1)

    def drop(self, count: int) -> None:
        """Count ``count`` rows as dropped and warn, at most every few seconds."""
        with self._drop_lock:  # only on the drop path: keeps the count exact across threads
            self.dropped += count
            self._unwarned += count
            now = time.monotonic()
            if now - self._last_warning < _WARN_EVERY:
                return
            unwarned, self._unwarned, self._last_warning = self._unwarned, 0, now
        _log.warning("spanlog buffer full (max_queue_rows=%d): dropped %d row(s); "
                    "%d dropped in total", self.max_rows, unwarned, self.dropped)

    def drain(self, limit: int | None = None) -> list[Piece]:
        """Take up to ``limit`` pieces (all by default), oldest first."""
        rows = self.rows
        count = len(rows) if limit is None else min(limit, len(rows))
        pop = rows.popleft
        return [pop() for _ in range(count)]

    def requeue(self, rows: list[dict[str, Any]]) -> None:
        """Put rows that could not be delivered back in front, in their order.

        They were accepted once, so they go back even past ``max_rows``: a collector outage
        must not turn into loss while there is memory for it; new rows are what gets refused.
        """
        self.rows.extendleft(reversed(rows))

    def reset(self) -> None:
        """Start empty (a forked child must not resend its parent's rows), fresh lock."""
        self.rows.clear()  # in place: loggers keep a reference to it for the hot path
        self.dropped = 0
        self._unwarned = 0
        self._last_warning = 0.0
        self._drop_lock = threading.Lock()


def merge_pieces(pieces: list[Piece]) -> list[dict[str, Any]]:
    """One row per id, in order of first appearance, pieces folded in the order logged.

    Fills in ``id`` where a span left it to be derived (see :func:`spanlog._ids.row_id_for`)
    and keeps ``_is_merge`` true only when the first piece of the row was itself a merge
    (the collector then merges the whole row into what it stored before).
    """
    out: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for at in range(0, len(pieces), 64):
        pace()  # between every 64 pieces: an event loop on another thread gets its turn
        for piece in pieces[at:at + 64]:
            if not isinstance(piece, dict):  # a row made only now, off the caller's thread
                made = piece()
                if made is None:
                    continue
                piece = made
            row_id = piece.get("id")
            if row_id is None:
                row_id = piece["id"] = row_id_for(piece["root_span_id"], piece["span_id"])
            known = index.get(row_id)
            if known is None:
                index[row_id] = len(out)
                out.append(piece)
                continue
            before = out[known]
            if piece.get(IS_MERGE):
                merged = merge_into(before, piece)
                merged[IS_MERGE] = bool(before.get(IS_MERGE))
            elif before.get(IS_MERGE):
                # A replace after merges (feedback logged before its span ended): the
                # replace goes underneath so the feedback survives, as the collector does.
                merged = merge_under(piece, before)
                merged[IS_MERGE] = False
            else:
                merged = merge_into(before, piece)
                merged[IS_MERGE] = False
            out[known] = merged
    return out
