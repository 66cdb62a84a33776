"""Test helpers for code that uses spanlog: see the rows it would send, without a collector.

::

    from spanlog.testing import capture_rows

    def test_answer_is_traced():
        with capture_rows() as rows:
            answer("hi")
        assert rows[0]["input"] == {"question": "hi"}

Inside :func:`capture_rows` every logger delivers to an :class:`InMemoryExporter` instead of
its collector, and each trace is delivered as soon as it ends, through the same merging,
batching and encoding as real delivery: ``rows`` holds exactly the decoded request rows.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from . import _flush, _logger
from ._transport import Response

__all__ = ["InMemoryExporter", "capture_rows"]


class InMemoryExporter:
    """A transport that keeps the rows of every ``/logs3`` request in :attr:`rows`."""

    def __init__(self, rows: list[dict[str, Any]] | None = None) -> None:
        self.rows: list[dict[str, Any]] = [] if rows is None else rows
        self.requests = 0

    def post(self, url: str, body: bytes, headers: Mapping[str, str],
             timeout: float) -> Response:
        """Decode one request and keep its rows."""
        if {k.lower(): v for k, v in headers.items()}.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        self.requests += 1
        self.rows.extend(json.loads(body)["rows"])
        return Response(200, {}, b"{}")

    def get(self, url: str, headers: Mapping[str, str], timeout: float) -> Response:
        """Answer ``GET /version`` without a payload limit."""
        return Response(200, {}, b'{"version":"in-memory"}')

    def close(self) -> None:
        """Nothing to release."""


class CapturedRows(list):  # type: ignore[type-arg]
    """The rows captured so far: a list that fills as traces end."""

    def flush(self) -> CapturedRows:
        """Deliver what is still buffered (spans logged after their end, feedback)."""
        _logger.flush()
        return self

    def by_name(self, name: str) -> list[dict[str, Any]]:
        """The span rows named ``name``."""
        return [row for row in self
                if (row.get("span_attributes") or {}).get("name") == name]


@contextmanager
def capture_rows(project: str = "Global") -> Iterator[CapturedRows]:
    """Collect the rows the SDK would send while the block runs.

    Without an initialized logger one is made current for the block (``project``). Each
    trace is delivered into the list when it ends; the block's exit delivers the rest.
    """
    rows = CapturedRows()
    exporter = InMemoryExporter(rows)
    previous = _logger.current_logger()
    temporary = None
    if previous is None:
        temporary = _logger.init_logger(project=project)
    _flush._captures.append(exporter)
    try:
        yield rows
    finally:
        try:
            rows.flush()
        finally:
            _flush._captures.remove(exporter)
            if temporary is not None:
                temporary.close(0)
                _logger.set_current_logger(previous)
