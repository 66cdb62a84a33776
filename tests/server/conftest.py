"""Fixtures for the collector's own tests: private collectors on their own files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spanlog.server.http._runner import BackgroundCollector


@pytest.fixture
def make_collector(tmp_path: Path) -> Iterator[Callable[..., BackgroundCollector]]:
    """Start private collectors (open mode unless keys are created); all stopped after."""
    started: list[BackgroundCollector] = []

    def make(name: str = "c", **kwargs: Any) -> BackgroundCollector:
        server = BackgroundCollector(str(tmp_path / f"{name}.sqlite3"), **kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
