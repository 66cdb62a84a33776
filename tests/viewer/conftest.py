"""Fixtures for the viewer: a collector that serves it, and headless Chromium to drive it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright
from viewer_harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    Collector,
    open_context,
    watch,
)
from viewer_traces import logger_for

import spanlog


@pytest.fixture(scope="session")
def viewer_collector(collector: Any) -> Collector:
    """The session's collector (its app serves the viewer), as the viewer tests call it."""
    return Collector(collector.url, collector.api_key)


@pytest.fixture
def logger(viewer_collector: Collector, project: tuple[str, str]) -> Iterator[spanlog.Logger]:
    """An SDK logger for the test's project, closed afterwards."""
    logger = logger_for(viewer_collector.url, viewer_collector.api_key, project[0])
    try:
        yield logger
    finally:
        logger.close(10)


@pytest.fixture
def project(viewer_collector: Collector) -> tuple[str, str]:
    """A fresh project (name, id), so tests sharing the collector never see each other."""
    name = f"viewer-{uuid.uuid4().hex[:8]}"
    return name, viewer_collector.project_id(name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from the Debian package (browser downloads are impossible here).

    Module-scoped: sync_playwright runs an event loop in this thread while it is open, which
    would break every asyncio test collected after the viewer's if it lived for the session.
    """
    # A missing tool fails rather than skips, as everywhere in this suite (.ci/run).
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium "
                    "(or point SPANLOG_CHROMIUM at a Chromium binary)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      headless=True)
        expect.set_options(timeout=TIMEOUT_MS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def viewer(browser: Any, viewer_collector: Collector) -> Iterator[Any]:
    """A new page in a fresh browser context that already holds the API key."""
    context, problems = open_context(browser, viewer_collector)
    page = watch(context.new_page(), problems)
    try:
        yield page
        problems.check()
    finally:
        context.close()
