"""From request bodies to pieces: decode and validate, resolve projects, check scope, build
feedback.

Everything here happens before the store is touched, so a bad row anywhere in a request
rejects the whole request with nothing stored. Decoding and validating (:func:`decode_rows`)
is pure and may run in an ingest worker process; binding rows to projects
(:func:`bind_rows`) needs the store and runs in the serving process.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from spanlog._event import FEEDBACK_SOURCES  # one list for the SDK and the collector
from spanlog._merge import IS_MERGE
from spanlog.server.http._auth import Access
from spanlog.server.http._body import BodyTooLarge, check_object, parse_json
from spanlog.server.rows._model import now_iso
from spanlog.server.rows._validate import InvalidRow, validate_row
from spanlog.server.store._engine import PrepareRows, Store
from spanlog.server.store._errors import BadRequest, NotFound
from spanlog.server.store._records import Piece, Project

# Fields that route a piece or steer the seed platform's backend, never stored in the row.
_ROUTING_FIELDS = frozenset({
    "project_id", "project_name", "log_id", "_parent_id", "_async_scoring_control",
    "_skip_async_scoring", "_array_delete",
})

# The most rows one request may carry (docs/collector.md, "What it guarantees"); the SDKs
# send at most 1,000 by default.
MAX_ROWS = 100_000

FEEDBACK_FIELDS = frozenset({"id", "scores", "expected", "comment", "metadata", "tags",
                             "source"})


def _storable(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` (a fresh copy from ``validate_row``, changed in place) without routing fields."""
    for routing in _ROUTING_FIELDS.intersection(row):  # one or two of seven: fewer calls
        del row[routing]
    if row.get("_object_delete") is not True:
        row.pop("_object_delete", None)
    return row


@dataclass(slots=True)
class RowBatch:
    """A request's rows, decoded and validated (perhaps in a worker process, see
    ``_workers``), not yet bound to their projects."""

    routes: list[tuple[str | None, str | None]]  # each row's project_id and project_name
    ids: list[str]
    rows: list[dict[str, Any] | None]  # storable; None where `prepared` carries the row
    prepared: Any = None  # what the store's prepare_rows made of them
    overflow: str | None = None  # the rows are in this overflow upload (the braintrust SDK's)
    # Every row's (project_id, project_name), when the request gave one for all (OTLP's
    # x-bt-parent) and ``routes`` is empty: bound once, not row by row.
    route: tuple[str | None, str | None] | None = None


def decode_rows(raw: bytes, field: str, project_id: str | None = None,
                prepare_rows: PrepareRows | None = None, source: str = "body") -> RowBatch:
    """Decode the JSON object ``raw`` and validate the rows in its ``field``, all before any
    project is looked up or anything is stored; pure, so a worker process can run it.

    ``project_id`` is the project of rows that name none (the URL's); ``prepare_rows`` is the
    store's (``Store.prepare_rows``). Raises :class:`BadBody`, ``BadRequest`` or
    :class:`InvalidRow` naming the first thing wrong.
    """
    body = check_object(parse_json(raw), (field,), source)
    rows = body[field]
    if field == "rows" and isinstance(rows, dict) and rows.get("type") == "logs3_overflow":
        key = rows.get("key")
        if not isinstance(key, str):
            raise BadRequest(f"{source}.rows.key: must be the key POST /logs3/overflow "
                             "returned")
        return RowBatch([], [], [], overflow=key)
    if not isinstance(rows, list):
        raise BadRequest(f"{source}.{field}: must be a list of rows")
    if len(rows) > MAX_ROWS:
        raise BodyTooLarge(f"{source}.{field}: {len(rows)} rows is over the limit of "
                           f"{MAX_ROWS:,} per request (see docs/collector.md)")
    routes: list[tuple[str | None, str | None]] = []
    ids: list[str] = []
    storable: list[dict[str, Any] | None] = []
    for i, raw_row in enumerate(rows):
        if project_id is not None and isinstance(raw_row, dict) \
                and raw_row.get("project_id") is None and raw_row.get("project_name") is None:
            raw_row = {**raw_row, "project_id": project_id}
        row = validate_row(f"{field}[{i}]", raw_row)
        routes.append((row.get("project_id"), row.get("project_name")))
        ids.append(row["id"])
        storable.append(_storable(row))
    prepared = None
    if prepare_rows is not None:
        storable, prepared = prepare_rows(storable)  # type: ignore[arg-type]
    return RowBatch(routes, ids, storable, prepared)


async def bind_rows(store: Store, access: Access, batch: RowBatch, *, where: str,
                    project: Project | None = None) -> list[Piece]:
    """Bind each row of ``batch`` to its project (``project`` when the URL gives it).

    Raises :class:`NotFound` for an unknown project, ``Forbidden`` for a project outside the
    key's scope, :class:`InvalidRow` for a row of another project than the URL's.
    """
    if batch.route is not None:
        shared = RowBatch([batch.route], batch.ids[:1], batch.rows[:1])
        [piece] = await bind_rows(store, access, shared, where=where, project=project)
        return [Piece(piece.project_id, row) for row in batch.rows]  # type: ignore[arg-type]
    pieces: list[Piece] = []
    by_name: dict[str, Project] = {}
    by_id: dict[str, Project] = {}
    if project is not None:
        by_id[project.id] = project
    # Every project id is checked before any project is created by name: a request that
    # fails creates nothing (docs/collector.md, "What it guarantees"). Where a row is
    # (`rows[3]`) is worded only for an error: these loops run for every row.
    names: set[str] = set()
    for i, (project_id, name) in enumerate(batch.routes):
        if project_id is not None and project_id not in by_id:
            found = await store.project_by_id(project_id)
            if found is None:
                raise NotFound(f"{where}[{i}].project_id: project {project_id!r} not found")
            access.check(found)
            if project is not None and found.id != project.id:
                raise InvalidRow(f"{where}[{i}].project_id: {found.id!r} differs from the "
                                 f"project in the URL ({project.id!r})")
            by_id[project_id] = found
        elif project_id is None and name is not None and name not in names:
            access.check_name(name)
            names.add(name)
    for i, (project_id, name) in enumerate(batch.routes):
        if project_id is not None:
            found = by_id.get(project_id)
            if found is None:
                found = await store.project_by_id(project_id)
                if found is None:
                    raise NotFound(f"{where}[{i}].project_id: project {project_id!r} not "
                                   "found")
                access.check(found)
                by_id[project_id] = found
        else:
            assert name is not None  # validate_row requires one of the two
            found = by_name.get(name)
            if found is None:
                access.check_name(name)
                found = await store.project(access.org.id, name, create=True)
                assert found is not None
                by_name[name] = found
        if project is not None and found.id != project.id:
            raise InvalidRow(f"{where}[{i}].project_id: {found.id!r} differs from the project "
                             f"in the URL ({project.id!r})")
        pieces.append(Piece(found.id, batch.rows[i]))  # type: ignore[arg-type]
    return pieces


def _comment_id(target: str, item: dict[str, Any]) -> str:
    # Derived from the request, so a retried feedback request rewrites the same comment row
    # instead of adding a second one (docs/protocol.md: retries leave the store as if sent once).
    text = json.dumps([target, item], sort_keys=True, default=str)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "spanlog-comment:" + text))


def feedback_pieces(project: Project, items: Any) -> list[Piece]:
    """The pieces ``log_feedback`` makes (docs/protocol.md, feedback): merges plus comment rows."""
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
            raise InvalidRow(f"{here}.source: must be one of {', '.join(FEEDBACK_SOURCES)}, "
                             f"got {source!r}")
        comment = item.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise InvalidRow(f"{here}.comment: must be a string")
        metadata = item.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidRow(f"{here}.metadata: must be an object, got "
                             f"{type(metadata).__name__}")
        audit = {"_audit_source": source, "_audit_metadata": metadata}
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
