"""Where a trace's flush is handed to the platform (waitUntil hooks); see DESIGN.md, flushing.

Owned by the serverless work (issue 4). The SDK core calls :func:`find_wait_until` at the end
of each trace; a non-None result takes a fresh flush coroutine and keeps the invocation alive
until it completes.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

WaitUntil = Callable[[Coroutine[Any, Any, Any]], None]


def find_wait_until() -> WaitUntil | None:
    """The waitUntil hook in scope for the current request, or None when there is none."""
    return None
