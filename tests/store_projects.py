"""Test helpers shared by the store and server tests: a project of the default org, and
the ids a fetch selects through all its pages."""

from __future__ import annotations

from typing import Any

from spanlog.server.store._engine import Store
from spanlog.server.store._records import DEFAULT_ORG, Project


async def default_org_project(store: Store, name: str = "Global") -> Project:
    """Project ``name`` of the default org in a started ``store``, created if new."""
    org = await store.org(DEFAULT_ORG)
    assert org is not None
    found = await store.project(org.id, name, create=True)
    assert found is not None
    return found


async def ids(store: Store, project_id: str, text: str | None = None, limit: int = 50,
              **kw: Any) -> list[str]:
    """The ids a fetch of ``project_id`` with filter ``text`` selects, through every cursor
    page of ``limit`` rows."""
    rows: list[str] = []
    cursor = None
    for _ in range(1000):
        page = await store.fetch(project_id, filter=text, cursor=cursor, limit=limit, **kw)
        rows.extend(r["id"] for r in page.rows)
        if page.cursor is None:
            return rows
        cursor = page.cursor
    raise AssertionError("fetch never ran out of pages")
