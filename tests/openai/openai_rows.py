"""Reading back what the wrapped clients logged, from the real collector."""

from __future__ import annotations

from typing import Any

import spanlog


def llm_rows(collector: Any, project: str, n: int) -> list[dict[str, Any]]:
    """Flush, then the project's ``llm`` rows (exactly ``n`` of them), oldest first."""
    assert spanlog.flush(timeout=10), "flush did not deliver everything"
    collector.wait_for_rows(n, project=project, filter="span_attributes.type = 'llm'")
    rows = collector.fetch(project, filter="span_attributes.type = 'llm'")
    assert len(rows) == n, f"expected {n} llm rows, got {len(rows)}: {rows}"
    return sorted(rows, key=lambda r: r["metrics"]["start"])


def all_rows(collector: Any, project: str, n: int) -> list[dict[str, Any]]:
    """Flush, then all ``n`` rows of the project, oldest first."""
    assert spanlog.flush(timeout=10), "flush did not deliver everything"
    collector.wait_for_rows(n, project=project)
    rows = collector.fetch(project)
    assert len(rows) == n, f"expected {n} rows, got {len(rows)}: {rows}"
    return sorted(rows, key=lambda r: r["metrics"]["start"])


# In async tests the SDK may be delivering from a task on the test's own event loop: flush
# with aflush and read the collector from a thread, so that the loop is never blocked.


async def allm_rows(collector: Any, project: str, n: int) -> list[dict[str, Any]]:
    """:func:`llm_rows` for async tests."""
    import asyncio

    assert await spanlog.aflush(timeout=10), "aflush did not deliver everything"
    return await asyncio.to_thread(llm_rows, collector, project, n)


async def aall_rows(collector: Any, project: str, n: int) -> list[dict[str, Any]]:
    """:func:`all_rows` for async tests."""
    import asyncio

    assert await spanlog.aflush(timeout=10), "aflush did not deliver everything"
    return await asyncio.to_thread(all_rows, collector, project, n)
