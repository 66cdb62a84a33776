"""The errors a store raises; each is answered with its HTTP status (docs/protocol.md)."""

from __future__ import annotations


class NotFound(LookupError):
    """The object asked for does not exist (HTTP 404)."""


class Unavailable(RuntimeError):
    """The store cannot take this request now: shutting down or overloaded (HTTP 503)."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DiskFull(Unavailable):
    """The database's disk is full: writes fail until space is freed, reads still work
    (HTTP 507)."""

    def __init__(self, message: str = "the disk holding the database is full: rows cannot "
                 "be stored until space is freed (reads still work)",
                 retry_after: float = 60.0) -> None:
        super().__init__(message, retry_after)


class BadRequest(ValueError):
    """The request cannot be served as asked (HTTP 400); the message says what and where."""


class QueryTooSlow(BadRequest):
    """A read ran past the collector's time budget and was stopped (HTTP 400): the message
    says how long the budget is, how to change it and how to narrow the query
    (docs/collector.md, "What it guarantees")."""

    def __init__(self, budget: float) -> None:
        super().__init__(
            f"the query took longer than {budget:g} s and was stopped (the collector's query "
            "time budget, spanlog serve --query-timeout); narrow it: add an equality on an "
            "indexed field (metadata.user_id = '...', tags includes '...', root_span_id = "
            "'...'), use fewer or more specific LIKE patterns, or ask for a smaller limit")
        self.budget = budget


class StoreCorrupt(RuntimeError):
    """The database file is damaged or not a database; the message says what to do."""
