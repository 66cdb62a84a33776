"""Inputs both engines refuse with the same 4xx error (docs/collector.md): a cursor beyond
64 bits, a filter holding a NUL character."""

from __future__ import annotations

import pytest

from spanlog.server.store._engine import Store
from spanlog.server.store._errors import BadRequest
from spanlog.server.store._records import Piece
from store_projects import default_org_project


@pytest.mark.parametrize("cursor", [str(2**63), str(2**64 + 1)])
async def test_a_cursor_beyond_64_bits_is_bad_request(store: Store, cursor: str) -> None:
    project = await default_org_project(store, "p")
    await store.write([Piece(project.id, {"id": "a", "input": "x"})])
    with pytest.raises(BadRequest, match="cursor"):
        await store.fetch(project.id, cursor=cursor)


async def test_a_filter_with_a_nul_is_refused(store: Store) -> None:
    project = await default_org_project(store, "p")
    await store.write([Piece(project.id, {"id": "a", "input": "x"})])
    with pytest.raises(BadRequest, match="NUL"):
        await store.fetch(project.id, filter="input = 'a\u0000b'")
