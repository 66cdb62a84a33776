"""What handlers read from a request: the collector app's parts (its store, auth, settings,
overflow uploads and ingest workers) and the checks every handler starts with (who is calling,
and whether they may use the project asked for).

Shared by the API's routes (``_app.py``) and the viewer's (``_viewer.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from spanlog.server.http._auth import LOOPBACK_NAMES, Access, Auth, host_name
from spanlog.server.http._body import DEFAULT_MAX_BODY, BodyBudget
from spanlog.server.http._guard import DEFAULT_MAX_CONNECTIONS
from spanlog.server.http._overflow import DEFAULT_MAX_UPLOAD_BYTES, OverflowUploads
from spanlog.server.http._workers import IngestWorkers
from spanlog.server.store._engine import DEFAULT_QUERY_TIMEOUT, Store
from spanlog.server.store._errors import NotFound
from spanlog.server.store._records import Project


@dataclass
class Settings:
    """How one collector behaves; every field has the default ``spanlog serve`` uses."""

    max_body_bytes: int = DEFAULT_MAX_BODY
    # The base URL clients should use (login's api_url); None: the URL the request came to.
    public_url: str | None = None
    # Open mode (any token accepted while no key exists) is only ever allowed on loopback.
    open_allowed: bool = True
    # The address the collector listens on (a name open mode answers to, with localhost).
    listen_host: str | None = None
    # Largest single "logs3 overflow" upload (the braintrust SDK's path for huge rows).
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    # Processes that decode and prepare ingested rows (see _workers); 0: the event loop does.
    ingest_workers: int = 0
    # Seconds one fetch or trace read may run before it is stopped (docs/collector.md).
    query_timeout: float = DEFAULT_QUERY_TIMEOUT
    # Request bodies held in memory at once, all requests together (None: four request
    # limits plus one overflow upload); more answers 503 with Retry-After.
    max_bodies_bytes: int | None = None
    # Open connections at once (see _guard: the ones stalled in their headers make room).
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def open_hosts(self) -> frozenset[str]:
        """The Host names an open collector answers to (docs/collector.md, open mode)."""
        names = set(LOOPBACK_NAMES)
        for host in (self.listen_host, self.public_url and urlsplit(self.public_url).netloc):
            if host:
                names.add(host_name(host if not host.count(":") > 1 else f"[{host}]"))
        return frozenset(names)

    def bodies_budget(self) -> int:
        """The bytes of request bodies that may be held in memory at once."""
        if self.max_bodies_bytes is not None:
            return self.max_bodies_bytes
        return 4 * self.max_body_bytes + self.max_upload_bytes


STORE = web.AppKey("store", Store)
AUTH = web.AppKey("auth", Auth)
SETTINGS = web.AppKey("settings", Settings)
UPLOADS = web.AppKey("uploads", OverflowUploads)
WORKERS = web.AppKey("workers", IngestWorkers)
BUDGET = web.AppKey("budget", BodyBudget)


# Whether the collector was in open mode when the request arrived, as ``_app`` found it
# before any handler ran: one look at the keys per request, not one per check.
OPEN_MODE = web.RequestKey("spanlog_open_mode", bool)


async def request_access(request: web.Request) -> Access:
    """What the caller of ``request`` may do (``Unauthorized`` without a valid key)."""
    return await request.app[AUTH].access(request.headers.get("Authorization"),
                                          open_mode=request.get(OPEN_MODE))


async def request_project(request: web.Request, access: Access, project_id: str) -> Project:
    """The project ``project_id``, when it exists and ``access`` may use it."""
    project = await request.app[STORE].project_by_id(project_id)
    if project is None:
        raise NotFound(f"project {project_id!r} not found")
    access.check(project)
    return project


async def latest_xact(request: web.Request, project_id: str) -> str | None:
    """The project's latest transaction id, for a caller allowed to read it (viewer hook)."""
    access = await request_access(request)
    project = await request_project(request, access, project_id)
    return await request.app[STORE].latest_xact(project.id)
