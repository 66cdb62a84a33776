"""From request bodies to pieces: validate, resolve projects, check scope, build feedback.

Everything here happens before the store is touched, so a bad row anywhere in a request
rejects the whole request with nothing stored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from spanlog._merge import IS_MERGE
from spanlog.server._auth import Access
from spanlog.server._rows import InvalidRow, validate_row
from spanlog.server._store import NotFound, Piece, Project, Store, now_iso

# Fields that route a piece or steer the seed platform's backend, never stored in the row.
_ROUTING_FIELDS = frozenset({
    "project_id", "project_name", "log_id", "_parent_id", "_async_scoring_control",
    "_skip_async_scoring", "_array_delete",
})

FEEDBACK_FIELDS = frozenset({"id", "scores", "expected", "comment", "metadata", "tags",
                             "source"})
FEEDBACK_SOURCES = frozenset({"app", "api", "external"})


def _storable(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` (a fresh copy from ``validate_row``, changed in place) without routing fields."""
    for routing in _ROUTING_FIELDS:
        row.pop(routing, None)
    if row.get("_object_delete") is not True:
        row.pop("_object_delete", None)
    return row


async def row_pieces(store: Store, access: Access, rows: Sequence[Any], *, where: str,
                     project: Project | None = None) -> list[Piece]:
    """Validate ``rows`` and bind each to its project (``project`` when given by the path).

    Raises :class:`InvalidRow` naming the first bad row, :class:`NotFound` for an unknown
    project, ``Forbidden`` for a project outside the key's scope.
    """
    pieces: list[Piece] = []
    by_name: dict[str, Project] = {}
    by_id: dict[str, Project] = {}
    if project is not None:
        by_id[project.id] = project
    for i, raw in enumerate(rows):
        here = f"{where}[{i}]"
        if project is not None and isinstance(raw, dict) and raw.get("project_id") is None \
                and raw.get("project_name") is None:
            raw = {**raw, "project_id": project.id}
        row = validate_row(here, raw)
        project_id = row.get("project_id")
        if project_id is not None:
            found = by_id.get(project_id)
            if found is None:
                found = await store.project_by_id(project_id)
                if found is None:
                    raise NotFound(f"{here}.project_id: project {project_id!r} not found")
                access.check(found)
                by_id[project_id] = found
        else:
            name = row["project_name"]
            found = by_name.get(name)
            if found is None:
                access.check_name(name)
                found = await store.project(access.org.id, name, create=True)
                assert found is not None
                by_name[name] = found
        if project is not None and found.id != project.id:
            raise InvalidRow(f"{here}.project_id: {found.id!r} differs from the project "
                             f"in the URL ({project.id!r})")
        pieces.append(Piece(found.id, _storable(row)))
    return pieces


def _comment_id(target: str, item: dict[str, Any]) -> str:
    # Derived from the request, so a retried feedback request rewrites the same comment row
    # instead of adding a second one (PROTOCOL.md: retries leave the store as if sent once).
    text = json.dumps([target, item], sort_keys=True, default=str)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "spanlog-comment:" + text))


def feedback_pieces(project: Project, items: Any) -> list[Piece]:
    """The pieces ``log_feedback`` makes (PROTOCOL.md, feedback): merges plus comment rows."""
    if not isinstance(items, list):
        raise InvalidRow("feedback: must be a list of feedback objects")
    pieces: list[Piece] = []
    for i, item in enumerate(items):
        here = f"feedback[{i}]"
        if not isinstance(item, dict):
            raise InvalidRow(f"{here}: must be an object")
        unknown = sorted(set(item) - FEEDBACK_FIELDS)
        if unknown:
            raise InvalidRow(f"{here}: unknown field {unknown[0]!r} (allowed: "
                             f"{', '.join(sorted(FEEDBACK_FIELDS))})")
        source = item.get("source") or "external"
        if source not in FEEDBACK_SOURCES:
            raise InvalidRow(f"{here}.source: must be one of app, api, external, "
                             f"got {source!r}")
        comment = item.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise InvalidRow(f"{here}.comment: must be a string")
        audit = {"_audit_source": source, "_audit_metadata": item.get("metadata")}
        update = {k: item[k] for k in ("scores", "expected", "tags") if item.get(k) is not None}
        if not update and comment is None:
            raise InvalidRow(f"{here}: needs at least one of scores, expected, tags, comment")
        target = item.get("id")
        if update:
            row = validate_row(here, {"id": target, "project_id": project.id, **update,
                                      **audit, IS_MERGE: True})
            pieces.append(Piece(project.id, _storable(row)))
        if comment is not None:
            validate_row(here, {"id": target, "project_id": project.id})
            row = {"id": _comment_id(str(target), item), "created": now_iso(),
                   "origin": {"id": target}, "comment": {"text": comment}, **audit}
            pieces.append(Piece(project.id, row))
    return pieces
