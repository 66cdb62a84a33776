"""Sessions and project settings over HTTP (docs/protocol.md, "Sessions", "Project settings"):

- ``GET /v1/project_logs/{id}/sessions``: a page of the project's sessions, latest first;
- ``GET /v1/project_logs/{id}/sessions/{session_id}``: one session, its traces in start order;
- ``GET|PATCH /v1/project/{id}/settings``: the project's settings (the session key).

A session's traces are read with fetch and the filter ``<session key> = '<session id>'``
(roots only), so they come with the same ``scores_avg`` and ``trace_totals`` as the logs table.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from spanlog.server.http._body import read_object
from spanlog.server.http._context import (
    BUDGET,
    SETTINGS,
    STORE,
    request_access,
    request_project,
)
from spanlog.server.http._reads import unless_gone
from spanlog.server.http._time import parse_range
from spanlog.server.rows._json import dumps
from spanlog.server.store._errors import BadRequest, NotFound
from spanlog.server.store._reading import trace_order
from spanlog.server.store._sessions import (
    SessionQuery,
    check_limit,
    parse_cursor,
    session_filter,
)
from spanlog.server.store._settings import check_settings, session_path, with_defaults

# The most traces one session read returns (one fetch page); more are flagged ``truncated``.
MAX_SESSION_TRACES = 1000


def _json(value: Any) -> web.Response:
    return web.Response(text=dumps(value), content_type="application/json")


async def _session_key(request: web.Request, project_id: str) -> tuple[str, tuple[str, ...]]:
    key: str = with_defaults(await request.app[STORE].project_settings(project_id))[
        "session_key"]
    return key, session_path(key)


async def list_sessions(request: web.Request) -> web.Response:
    """``GET /v1/project_logs/{id}/sessions``: ``limit``, ``cursor``, ``since``, ``until``."""
    access = await request_access(request)
    project = await request_project(request, access, request.match_info["project_id"])
    source = dict(request.query)
    try:
        limit = int(source.get("limit", "50"))
    except ValueError:
        raise BadRequest(f"limit: must be an integer, got {source['limit']!r}") from None
    since, until = parse_range(source)
    key, path = await _session_key(request, project.id)
    query = SessionQuery(path, limit=check_limit(limit), after=parse_cursor(source.get("cursor")),
                         since=since, until=until)
    sessions, cursor = await unless_gone(request, request.app[STORE].sessions(project.id, query))
    return _json({"key": key, "sessions": sessions, "cursor": cursor})


async def get_session(request: web.Request) -> web.Response:
    """``GET /v1/project_logs/{id}/sessions/{session_id}``: the session's summary and its
    traces' root spans, oldest first."""
    access = await request_access(request)
    project = await request_project(request, access, request.match_info["project_id"])
    session_id = request.match_info["session_id"]
    key, path = await _session_key(request, project.id)
    store = request.app[STORE]
    # The traces first, through the filter's index; the summary then reads only their spans
    # (every root of the project only when there are more traces than one read returns).
    page = await unless_gone(request, store.fetch(
        project.id, filter=session_filter(key, session_id), roots_only=True,
        limit=MAX_SESSION_TRACES))
    ids = tuple(sorted({row["root_span_id"] for row in page.rows
                        if isinstance(row.get("root_span_id"), str)}))
    found: list[dict[str, Any]] = []
    if ids:
        found, _ = await unless_gone(request, store.sessions(project.id, SessionQuery(
            path, limit=1, session_id=session_id,
            traces=None if page.cursor is not None else ids)))
    if not found:
        raise NotFound(f"no session {session_id!r} in project {project.name!r} (no root span "
                       f"with {key} = {session_id!r})")
    traces = sorted(page.rows, key=trace_order)
    return _json({"key": key, "session": found[0], "traces": traces,
                  "truncated": page.cursor is not None})


async def get_settings(request: web.Request) -> web.Response:
    """``GET /v1/project/{id}/settings``: every setting, defaults included."""
    access = await request_access(request)
    project = await request_project(request, access, request.match_info["project_id"])
    return _json(with_defaults(await request.app[STORE].project_settings(project.id)))


async def change_settings(request: web.Request) -> web.Response:
    """``PATCH /v1/project/{id}/settings``: set some settings (null: back to the default)."""
    access = await request_access(request)
    project = await request_project(request, access, request.match_info["project_id"])
    body = await read_object(request, request.app[SETTINGS].max_body_bytes, (),
                             request.app[BUDGET])
    changes = check_settings(body)
    stored = await request.app[STORE].change_project_settings(project.id, changes)
    return _json(with_defaults(stored))


def setup_sessions(app: web.Application) -> None:
    """Add the sessions and project settings endpoints to the collector's ``app``."""
    app.router.add_get("/v1/project_logs/{project_id}/sessions", list_sessions)
    app.router.add_get("/v1/project_logs/{project_id}/sessions/{session_id}", get_session)
    app.router.add_get("/v1/project/{project_id}/settings", get_settings)
    app.router.add_patch("/v1/project/{project_id}/settings", change_settings)
