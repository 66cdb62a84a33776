"""Test helpers for code that uses spanlog: see the rows it would send, without a collector.

::

    from spanlog.testing import capture_rows

    def test_answer_is_traced():
        with capture_rows() as rows:
            answer("hi")
        assert rows.by_name("answer")[0]["input"] == {"question": "hi"}

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

from . import _logger
from ._logger import Logger
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

    def __init__(self, logger: Logger) -> None:
        super().__init__()
        self.logger = logger

    def flush(self) -> CapturedRows:
        """Deliver what is still buffered (spans logged after their end, feedback)."""
        self.logger.flush()
        return self

    def by_name(self, name: str) -> list[dict[str, Any]]:
        """The span rows named ``name``."""
        return [row for row in self
                if (row.get("span_attributes") or {}).get("name") == name]


@contextmanager
def capture_rows(project: str = "Global", logger: Logger | None = None) -> Iterator[CapturedRows]:
    """Collect the rows that ``logger`` (default: the current one) would send while the
    block runs.

    Without a current logger one is made current for the block (``project``). Each trace is
    delivered into the list when it ends; the block's exit delivers the rest. Other loggers
    are not affected, and rows the logger had buffered before the block are included.
    """
    target = logger or _logger.current_logger()
    temporary = None
    if target is None:
        target = temporary = _logger.init_logger(project=project)
    rows = CapturedRows(target)
    flusher = target._flusher
    previous, flusher.capture = flusher.capture, InMemoryExporter(rows)
    try:
        yield rows
    finally:
        try:
            rows.flush()
        finally:
            flusher.capture = previous
            if temporary is not None:
                temporary.close(0)
                _logger.set_current_logger(None)
