"""Fixtures for the wrap_openai tests: the fake OpenAI server, real clients, a fresh project."""

from __future__ import annotations

import re
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from fake_server import FakeOpenAI

import spanlog


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    """The OpenAI-compatible server on 127.0.0.1, shared by the whole session."""
    with FakeOpenAI() as server:
        yield server


_loggers: list[weakref.ref[spanlog.Logger]] = []


@pytest.fixture(scope="session", autouse=True)
def delivered_before_the_collector_stops(collector: Any) -> Iterator[None]:
    """At the end of the session, deliver what this suite's loggers still hold (a replaced
    logger delivers in the background) while the collector runs: torn down before it."""
    yield
    for ref in _loggers:
        logger = ref()
        if logger is not None:
            logger.flush(timeout=10)


@pytest.fixture
def project(request: pytest.FixtureRequest, collector: Any) -> Iterator[str]:
    """A project of its own for this test, with the logger pointed at the collector."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:60]
    project = f"openai-{name}-{uuid.uuid4().hex[:8]}"
    # No close at the end: the next test's init_logger replaces this logger, which then
    # delivers what it holds and releases its connection in the background.
    logger = spanlog.init_logger(project=project, api_url=collector.url,
                                 api_key=collector.api_key)
    _loggers.append(weakref.ref(logger))
    del logger
    yield project


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> Iterator[openai.OpenAI]:
    """A real, unwrapped sync client on the fake server, without retries."""
    with openai.OpenAI(base_url=fake_openai.base_url, api_key="test", max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(fake_openai: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    """A real, unwrapped async client on the fake server, without retries."""
    async with openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="test",
                                  max_retries=0) as c:
        yield c
