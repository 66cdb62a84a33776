"""Fixtures for the serverless harnesses: the installed runtimes and a slow link.

The ``collector`` fixture comes from ``tests/conftest.py`` (the real collector on a free port).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import runtimes_setup  # noqa: E402
from harness_common import LINK_DELAY, SlowLink  # noqa: E402


@pytest.fixture(scope="session")
def vercel_python() -> Path:
    """The interpreter of the Vercel runtime venv (created on first use, then cached)."""
    return runtimes_setup.vercel_python()


@pytest.fixture(scope="session")
def pyodide_package() -> Path:
    """The npm pyodide package the Cloudflare harness loads."""
    return runtimes_setup.pyodide_package()


@pytest.fixture(scope="session")
def workers_sdk() -> Path:
    """The unpacked Python sources of workers-runtime-sdk."""
    return runtimes_setup.workers_sdk()


@pytest.fixture
def slow_link(collector: object) -> Iterator[SlowLink]:
    """A relay to the collector that delays every request by ``LINK_DELAY`` seconds."""
    link = SlowLink(collector.url, LINK_DELAY)  # type: ignore[attr-defined]
    try:
        yield link
    finally:
        link.close()

