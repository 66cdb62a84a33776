"""SDK test fixtures: loggers against the real collector, and internal errors as failures."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sdk_support import LoggerFactory

import spanlog
from spanlog import _logger


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class ExpectedErrors:
    """The ERROR records the ``spanlog`` logger emitted during a test that expects some."""

    def __init__(self, handler: _Errors) -> None:
        self._handler = handler

    @property
    def messages(self) -> list[str]:
        return [record.getMessage() for record in self._handler.records]


@pytest.fixture(autouse=True)
def spanlog_errors(request: pytest.FixtureRequest) -> Iterator[_Errors]:
    """Fail any test in which spanlog logged an ERROR (it never raises them), unless the
    test asked for ``expect_spanlog_errors``."""
    handler = _Errors()
    log = logging.getLogger("spanlog")
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
    if "expect_spanlog_errors" not in request.fixturenames and handler.records:
        messages = [r.getMessage() for r in handler.records]
        pytest.fail(f"spanlog logged internal errors: {messages}")


@pytest.fixture
def expect_spanlog_errors(spanlog_errors: _Errors) -> ExpectedErrors:
    """Allow (and expose) ERROR records of the ``spanlog`` logger in this test."""
    return ExpectedErrors(spanlog_errors)


@pytest.fixture
def project() -> str:
    """A project name no other test uses."""
    return f"sdk-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_logger(collector: Any, project: str) -> Iterator[LoggerFactory]:
    """Make loggers pointed at the test collector (project: the test's own); each is closed
    and the current logger cleared after the test."""
    made: list[spanlog.Logger] = []

    def make(**kwargs: Any) -> spanlog.Logger:
        kwargs.setdefault("project", project)
        kwargs.setdefault("api_url", collector.url)
        kwargs.setdefault("api_key", collector.api_key)
        kwargs.setdefault("retry_backoff", 0.01)
        kwargs.setdefault("flush_linger", 0.01)
        logger = spanlog.init_logger(**kwargs)
        made.append(logger)
        return logger

    try:
        yield make
    finally:
        for logger in made:
            logger.close(timeout=5)
        _logger.set_current_logger(None)


@pytest.fixture(autouse=True)
def no_current_logger() -> Iterator[None]:
    """Every test starts and ends without a current logger."""
    _logger.set_current_logger(None)
    yield
    _logger.set_current_logger(None)
