"""The collector's HTTP API (docs/protocol.md): routes, authentication, errors.

Handlers only translate HTTP to :class:`~spanlog.server.store._engine.Store` calls;
everything they need from the engine goes through that interface, so either engine serves.
Every error is JSON ``{"error": "<what is wrong, where>"}`` with the status docs/protocol.md gives;
on the OTLP paths it is the ``google.rpc.Status`` OTLP/HTTP prescribes instead (docs/otel.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from spanlog import __version__
from spanlog.server.http._auth import (
    Access,
    Auth,
    Forbidden,
    Unauthorized,
    open_mode_refusal,
)
from spanlog.server.http._body import (
    BadBody,
    BodyBudget,
    BodyTimeout,
    BodyTooLarge,
    UnsupportedEncoding,
    read_bytes,
    read_object,
)
from spanlog.server.http._context import (
    AUTH,
    BUDGET,
    OPEN_MODE,
    SETTINGS,
    STORE,
    UPLOADS,
    WORKERS,
    Settings,
    request_access,
    request_project,
)
from spanlog.server.http._export import setup_export
from spanlog.server.http._guard import request_done, request_started
from spanlog.server.http._ingest import RowBatch, bind_rows, feedback_pieces
from spanlog.server.http._not_served import setup_not_served
from spanlog.server.http._otlp import PATHS as OTLP_PATHS
from spanlog.server.http._otlp import failure as otlp_failure
from spanlog.server.http._otlp import setup_otlp
from spanlog.server.http._overflow import OverflowUploads
from spanlog.server.http._reads import fetch_args, unless_gone
from spanlog.server.http._sessions import setup_sessions
from spanlog.server.http._time import parse_time
from spanlog.server.http._viewer import setup_viewer
from spanlog.server.http._workers import IngestWorkers
from spanlog.server.query import FilterError
from spanlog.server.rows._cost import load_prices
from spanlog.server.rows._json import dumps
from spanlog.server.rows._validate import InvalidRow
from spanlog.server.store._aggregate import window
from spanlog.server.store._engine import Store
from spanlog.server.store._errors import BadRequest, DiskFull, NotFound, Unavailable
from spanlog.server.store._records import Project
from spanlog.server.store._scores import with_score_averages

log = logging.getLogger("spanlog.server")


OPEN_HOSTS = web.AppKey[frozenset[str]]("open_hosts")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(request: web.Request, status: int, message: str,
           headers: dict[str, str] | None = None) -> web.Response:
    if request.path in OTLP_PATHS:
        return otlp_failure(request, status, message, headers)
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error with docs/protocol.md's status (a
    ``google.rpc.Status`` on the OTLP paths)."""
    request_started(request)
    try:
        return await _answer(request, handler)
    finally:
        request.app[BUDGET].release(request)
        request_done(request)


_READS = frozenset({"GET", "HEAD", "OPTIONS"})


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        open_mode = request[OPEN_MODE] = await request.app[AUTH].is_open()
        if open_mode:
            # The overflow upload's URL is its permission, and its body type the client's.
            write = request.method not in _READS and not request.path.startswith(
                "/logs3/overflow/")
            hosts = request.app[OPEN_HOSTS]
            refusal = open_mode_refusal(request.headers, hosts, write)
            if refusal is not None:
                raise Forbidden(refusal)
        return await handler(request)
    except (InvalidRow, BadRequest, BadBody, FilterError) as exc:
        # FilterError: a filter that parses but that the engine cannot run (docs/filters.md).
        return _error(request, 400,
                      f"filter: {exc}" if isinstance(exc, FilterError) else str(exc))
    except Unauthorized as exc:
        return _error(request, 401, str(exc), {"WWW-Authenticate": "Bearer"})
    except Forbidden as exc:
        return _error(request, 403, str(exc))
    except NotFound as exc:
        return _error(request, 404, str(exc))
    except BodyTooLarge as exc:
        return _error(request, 413, str(exc))
    except UnsupportedEncoding as exc:
        return _error(request, 415, str(exc))
    except BodyTimeout as exc:
        response = _error(request, 408, str(exc))
        response.force_close()
        return response
    except DiskFull as exc:
        return _error(request, 507, str(exc),
                      {"Retry-After": str(max(1, round(exc.retry_after)))})
    except Unavailable as exc:
        return _error(request, 503, str(exc),
                      {"Retry-After": str(max(1, round(exc.retry_after)))})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else None
        message = reason or f"{exc.reason}: {request.method} {request.path}"
        return _error(request, exc.status, message, {
            k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")})
    except Exception:
        log.exception("spanlog: internal error on %s %s", request.method, request.path)
        return _error(request, 500, f"internal error on {request.method} {request.path}")


async def _body(request: web.Request, *required: str) -> dict[str, Any]:
    return await read_object(request, request.app[SETTINGS].max_body_bytes, required,
                             request.app[BUDGET])


def _public_url(request: web.Request) -> str:
    """``--public-url``, else the address the request reached: never the ``Host`` header,
    which the client chooses (login's ``api_url`` would send an SDK elsewhere)."""
    configured = request.app[SETTINGS].public_url
    if configured:
        return configured.rstrip("/")
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return f"{request.scheme}://{request.app[SETTINGS].listen_host or '127.0.0.1'}"
    address, port = sockname[0], sockname[1]
    return f"http://{f'[{address}]' if ':' in address else address}:{port}"


# -- login, version, projects ------------------------------------------------------------

async def login(request: web.Request) -> web.Response:
    """``POST /api/apikey/login``: the key's organization and where its API lives."""
    access = await request_access(request)
    url = _public_url(request)
    return web.json_response({"org_info": [{
        "id": access.org.id, "name": access.org.name, "api_url": url, "proxy_url": None,
        "realtime_url": None, "is_universal_api": False, "git_metadata": None,
    }]})


async def version(request: web.Request) -> web.Response:
    """``GET /version``: what this collector is and how big a request may be."""
    return web.json_response({"version": __version__, "server": "spanlog",
                              "logs3_payload_max_bytes": request.app[SETTINGS].max_body_bytes})


async def ping(request: web.Request) -> web.Response:
    """``GET /ping``: who the caller is (the braintrust SDK's user_info)."""
    access = await request_access(request)
    return web.json_response({"id": access.key.id if access.key else "open",
                              "org_id": access.org.id, "org_name": access.org.name})


async def _project_named(request: web.Request, access: Access, name: Any,
                         where: str) -> Project:
    """The project called ``name`` (the request's field ``where``), created if missing."""
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"{where}: must be a non-empty string")
    access.check_name(name)
    project = await request.app[STORE].project(access.org.id, name, create=True)
    assert project is not None
    return project


async def create_project(request: web.Request) -> web.Response:
    """``POST /v1/project``: get or create a project by name."""
    access = await request_access(request)
    body = await _body(request, "name")
    org_name = body.get("org_name")
    if org_name is not None and org_name != access.org.name:
        raise Forbidden(f"this key belongs to organization {access.org.name!r}, "
                        f"not {org_name!r}")
    project = await _project_named(request, access, body["name"], "body.name")
    return web.json_response(project.to_json())


async def register_project(request: web.Request) -> web.Response:
    """``POST /api/project/register``: get or create a project by name, as
    ``{"project": {...}}`` (the braintrust TypeScript SDK's ``initLogger``)."""
    access = await request_access(request)
    body = await _body(request, "project_name")
    org_id = body.get("org_id")
    if org_id is not None and org_id != access.org.id:
        raise Forbidden(f"this key belongs to organization id {access.org.id!r}, "
                        f"not {org_id!r}")
    project = await _project_named(request, access, body["project_name"], "body.project_name")
    return web.json_response({"project": project.to_json()})


async def project_of_query(request: web.Request) -> web.Response:
    """``GET /api/project?id=...``: one project (the braintrust TypeScript SDK's
    ``initLogger`` given a ``projectId``)."""
    access = await request_access(request)
    project_id = request.query.get("id")
    if not project_id:
        raise BadRequest("query.id: the project's id is required (GET /api/project?id=...)")
    project = await request_project(request, access, project_id)
    return web.json_response(project.to_json())


async def list_projects(request: web.Request) -> web.Response:
    """``GET /v1/project``: the projects this key may see."""
    access = await request_access(request)
    name = request.query.get("project_name")
    projects = [p for p in await request.app[STORE].projects(access.org.id)
                if access.allows_name(p.name) and (name is None or p.name == name)]
    return web.json_response({"objects": [p.to_json() for p in projects]})


async def get_project(request: web.Request) -> web.Response:
    """``GET /v1/project/{id}``: one project."""
    access = await request_access(request)
    project = await request_project(request, access, request.match_info["project_id"])
    return web.json_response(project.to_json())


# -- rows --------------------------------------------------------------------------------

async def _raw_body(request: web.Request) -> bytes:
    return await read_bytes(request, request.app[SETTINGS].max_body_bytes, request.app[BUDGET])


async def _store_rows(request: web.Request, access: Access, batch: RowBatch, where: str,
                      project: Project | None = None) -> web.Response:
    pieces = await bind_rows(request.app[STORE], access, batch, where=where, project=project)
    await request.app[STORE].write(pieces, batch.prepared)
    return web.json_response({"row_ids": batch.ids})


async def logs3(request: web.Request) -> web.Response:
    """``POST /logs3``: store a batch of row pieces, all or nothing."""
    access = await request_access(request)
    workers = request.app[WORKERS]
    batch = await workers.decode(await _raw_body(request), "rows")
    if batch.overflow is not None:
        payload = request.app[UPLOADS].take(batch.overflow, access.org.id)
        request.app[BUDGET].take(request, len(payload))
        batch = await workers.decode(payload, "rows", source="overflow upload")
        if batch.overflow is not None:
            raise BadRequest("overflow upload: rows must be a list of rows")
    return await _store_rows(request, access, batch, "rows")


async def overflow_start(request: web.Request) -> web.Response:
    """``POST /logs3/overflow``: where to upload a batch too big for one request."""
    access = await request_access(request)
    body = await _body(request, "size_bytes")
    key = request.app[UPLOADS].create(access.org.id, body["size_bytes"])
    content_type = body.get("content_type")
    return web.json_response({
        "method": "PUT", "signedUrl": f"{_public_url(request)}/logs3/overflow/{key}",
        "headers": {"Content-Type": content_type if isinstance(content_type, str)
                    else "application/json"},
        "key": key})


async def overflow_upload(request: web.Request) -> web.Response:
    """``PUT /logs3/overflow/{key}``: the upload itself (the key is the permission)."""
    await request.app[UPLOADS].receive(request.match_info["key"], request)
    return web.json_response({"status": "success"})


async def insert(request: web.Request) -> web.Response:
    """``POST /v1/project_logs/{id}/insert``: store events into one project."""
    access = await request_access(request)
    project = await request_project(request, access, request.match_info["project_id"])
    batch = await request.app[WORKERS].decode(await _raw_body(request), "events", project.id)
    return await _store_rows(request, access, batch, "events", project)


async def feedback(request: web.Request) -> web.Response:
    """``POST /v1/project_logs/{id}/feedback``: scores, expected, tags, comments."""
    access = await request_access(request)
    project = await request_project(request, access, request.match_info["project_id"])
    body = await _body(request, "feedback")
    pieces = feedback_pieces(project, body["feedback"])
    await request.app[STORE].write(pieces)
    return web.json_response({"status": "success"})


async def fetch(request: web.Request) -> web.Response:
    """``POST|GET /v1/project_logs/{id}/fetch``: a page of rows, newest first."""
    access = await request_access(request)
    project = await request_project(request, access, request.match_info["project_id"])
    source = await _query_source(request)
    page = await unless_gone(request, request.app[STORE].fetch(project.id,
                                                                **fetch_args(source)))
    return web.Response(text=f'{{"events":{page.rows_json()},"cursor":{json.dumps(page.cursor)}}}',
                        content_type="application/json")


async def _query_source(request: web.Request) -> dict[str, Any]:
    """A read's arguments: the query string of a GET, else the JSON body (maybe empty)."""
    if request.method == "GET":
        return dict(request.query)
    if request.content_length == 0:
        return {}
    return await _body(request)


async def aggregate(request: web.Request) -> web.Response:
    """``POST|GET /v1/project_logs/{id}/aggregate``: a project's figures over a time range,
    in buckets (docs/protocol.md, "Aggregates")."""
    access = await request_access(request)
    project = await request_project(request, access, request.match_info["project_id"])
    source = await _query_source(request)
    now = time.time()
    bucket = source.get("bucket")
    if isinstance(bucket, str):  # from a GET query string
        try:
            bucket = float(bucket)
        except ValueError:
            raise BadRequest(f"bucket: must be a number of seconds, got {bucket!r}") from None
    win = window(parse_time(source.get("since"), "since", now),
                 parse_time(source.get("until"), "until", now), bucket,
                 source.get("split_by") or None, source.get("filter"), now)
    result = await unless_gone(request, request.app[STORE].aggregate(project.id, win))
    return web.Response(text=dumps(result), content_type="application/json")


async def trace(request: web.Request) -> web.Response:
    """``GET /v1/project_logs/{id}/trace/{root_span_id}``: one trace with score averages."""
    access = await request_access(request)
    project = await request_project(request, access, request.match_info["project_id"])
    rows = await unless_gone(request, request.app[STORE].trace(
        project.id, request.match_info["root_span_id"]))
    # Averaging and encoding a big trace is CPU work: on a thread, never on the event loop
    # (docs/collector.md, "What it guarantees").
    body = await asyncio.to_thread(lambda: dumps({"spans": with_score_averages(rows)}))
    return web.Response(text=body, content_type="application/json")


def create_app(store: Store, settings: Settings | None = None) -> web.Application:
    """The collector as an aiohttp application over ``store`` (started and closed with it)."""
    settings = settings or Settings()
    # aiohttp's own limit would answer 413 in text; ours answers in JSON (see _body.py).
    app = web.Application(middlewares=[errors_as_json], client_max_size=2**62)
    app[STORE] = store
    store.query_timeout = settings.query_timeout
    app[SETTINGS] = settings
    app[BUDGET] = BodyBudget(settings.bodies_budget())
    app[OPEN_HOSTS] = settings.open_hosts()
    app[AUTH] = Auth(store, open_allowed=settings.open_allowed)
    app[UPLOADS] = OverflowUploads(settings.max_upload_bytes)
    app[WORKERS] = IngestWorkers(settings.ingest_workers, store.prepare_rows)

    async def lifecycle(app: web.Application) -> Any:
        await store.start()
        # Pricing an LLM span's row may happen on the event loop (rows prepared in-process):
        # its database is imported ahead, off the loop.
        threading.Thread(target=load_prices, name="spanlog-prices", daemon=True).start()
        try:
            await app[WORKERS].start()
        except BaseException:
            app[WORKERS].close()
            await store.close()
            raise
        yield
        app[WORKERS].close()
        app[UPLOADS].close()
        await store.close()

    app.cleanup_ctx.append(lifecycle)

    async def interrupt_reads(app: web.Application) -> None:
        # Before aiohttp waits for running handlers: a slow fetch must not hold a shutdown.
        store.interrupt_reads()

    app.on_shutdown.append(interrupt_reads)
    app.router.add_post("/api/apikey/login", login)
    app.router.add_get("/version", version)
    app.router.add_get("/ping", ping)
    app.router.add_post("/v1/project", create_project)
    app.router.add_get("/v1/project", list_projects)
    app.router.add_get("/v1/project/{project_id}", get_project)
    app.router.add_post("/api/project/register", register_project)
    app.router.add_get("/api/project", project_of_query)
    app.router.add_post("/logs3", logs3)
    app.router.add_post("/logs3/overflow", overflow_start)
    app.router.add_put("/logs3/overflow/{key}", overflow_upload)
    app.router.add_post("/v1/project_logs/{project_id}/insert", insert)
    app.router.add_post("/v1/project_logs/{project_id}/fetch", fetch)
    app.router.add_get("/v1/project_logs/{project_id}/fetch", fetch)
    app.router.add_post("/v1/project_logs/{project_id}/feedback", feedback)
    app.router.add_get("/v1/project_logs/{project_id}/trace/{root_span_id}", trace)
    app.router.add_post("/v1/project_logs/{project_id}/aggregate", aggregate)
    app.router.add_get("/v1/project_logs/{project_id}/aggregate", aggregate)
    setup_export(app)  # rows as JSON Lines or CSV, streamed
    setup_sessions(app)  # sessions and project settings
    setup_otlp(app)  # OTLP/HTTP trace ingest (docs/otel.md)
    setup_viewer(app)  # the web viewer: pages, assets, live updates
    setup_not_served(app)  # experiments, datasets, prompts...: 501 naming the feature
    return app
