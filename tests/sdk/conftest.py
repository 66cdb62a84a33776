"""SDK test fixtures: loggers against the real collector, each closed after its test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sdk_support import LoggerFactory

import spanlog
from spanlog import _logger


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
