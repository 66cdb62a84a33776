"""Test helper shared by the store and server tests: a project of the default org."""

from __future__ import annotations

from spanlog.server.store._engine import Store
from spanlog.server.store._records import DEFAULT_ORG, Project


async def default_org_project(store: Store, name: str = "Global") -> Project:
    """Project ``name`` of the default org in a started ``store``, created if new."""
    org = await store.org(DEFAULT_ORG)
    assert org is not None
    found = await store.project(org.id, name, create=True)
    assert found is not None
    return found
