"""Who is calling: API keys, their organization and project scope, and the open mode.

Keys are random 256-bit tokens; the store keeps only their SHA-256 (a fast hash is enough
for high-entropy secrets, unlike passwords). A key belongs to one organization and may be
limited to a list of project names (the seed document's production / staging split).

Open mode: a collector bound to loopback with no key ever created accepts any bearer token,
or none, as full access to the default organization, so that ``spanlog serve`` and the SDK
work together with zero setup on a developer's machine. Creating the first key ends open
mode for good; a collector bound to any other address refuses to start without keys.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import uuid
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

from spanlog.server.rows._model import now_iso
from spanlog.server.store._engine import Store
from spanlog.server.store._records import DEFAULT_ORG, ApiKey, Org, Project

TOKEN_PREFIX = "sl-"


class Unauthorized(PermissionError):
    """No valid key (HTTP 401)."""


class Forbidden(PermissionError):
    """A valid key that may not touch this project or organization (HTTP 403)."""


def hash_token(token: str) -> str:
    """The hex SHA-256 under which a key's token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the collector reachable from this machine only."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# Names a browser on this machine may use for an open collector (docs/collector.md, open mode).
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
# Request body types a browser may send cross-site without asking first (CORS "simple").
# Python's urllib and `curl -d` label a JSON body as a form: that one is refused only from
# a browser (a request that carries a header only browsers send).
_SIMPLE_TYPES = ("text/plain", "multipart/form-data")
_FORM_TYPE = "application/x-www-form-urlencoded"
_BROWSER_HEADERS = ("Origin", "Referer", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest")


def host_name(host: str) -> str:
    """``host`` (a Host header or URL authority) without its port, lowercased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def open_mode_refusal(headers: Mapping[str, str], allowed_hosts: Set[str],
                      write: bool) -> str | None:
    """Why an open collector refuses this request from a web page, or None to serve it.

    Open mode trusts whoever can reach the loopback address; a web page the developer visits
    can reach it too. A page on another site may send a ``no-cors`` POST (text/plain, no
    preflight), and a site whose name resolves to 127.0.0.1 (DNS rebinding) may read the
    answers: so only the collector's own names are served, and writes must come from no
    page or from the collector's own pages, with a JSON body or none. SDKs and curl send no
    ``Origin`` and no ``Sec-Fetch-Site``.
    """
    host = headers.get("Host")
    if host is not None and host_name(host) not in allowed_hosts:
        return (f"Host {host!r} is not a name of this collector (open mode serves "
                f"{', '.join(sorted(allowed_hosts))}; set --public-url for another)")
    if not write:
        return None
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site.lower() not in ("same-origin", "none"):
        return f"cross-site write refused (Sec-Fetch-Site: {site}) in open mode"
    origin = headers.get("Origin")
    if origin is not None:
        authority = origin.partition("://")[2]
        if not authority or host_name(authority) not in allowed_hosts:
            return f"cross-site write refused (Origin: {origin}) in open mode"
    content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type in _SIMPLE_TYPES or (content_type == _FORM_TYPE and any(
            name in headers for name in _BROWSER_HEADERS)):
        return (f"Content-Type {content_type} refused for writes in open mode: send "
                "application/json (or no Content-Type)")
    return None


async def create_key(store: Store, org_name: str, *, projects: Sequence[str] | None = None,
                     name: str = "") -> tuple[ApiKey, str]:
    """Create a key for ``org_name`` (created if missing); return it and its secret token.

    The token is shown once: only its hash is stored.
    """
    if not org_name:
        raise ValueError("org name must not be empty")
    org = await store.org(org_name, create=True)
    assert org is not None
    scope = tuple(dict.fromkeys(projects)) if projects else None
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(id="key_" + uuid.uuid4().hex[:12], name=name, org_id=org.id,
                 org_name=org.name, projects=scope, created=now_iso())
    await store.add_key(key, hash_token(token))
    return key, token


@dataclass(frozen=True)
class Access:
    """What one request may do: its organization, and its key (None in open mode)."""

    org: Org
    key: ApiKey | None

    def allows_name(self, project_name: str) -> bool:
        """Whether a project called ``project_name`` in this organization is in scope."""
        return self.key is None or self.key.projects is None or project_name in self.key.projects

    def check(self, project: Project) -> None:
        """Raise :class:`Forbidden` unless ``project`` is in scope."""
        if project.org_id != self.org.id:
            raise Forbidden(f"project {project.id!r} belongs to another organization")
        if not self.allows_name(project.name):
            raise Forbidden(f"this key may not access project {project.name!r}")

    def check_name(self, project_name: str) -> None:
        """Raise :class:`Forbidden` unless a project called ``project_name`` is in scope."""
        if not self.allows_name(project_name):
            raise Forbidden(f"this key may not access project {project_name!r}")


class Auth:
    """Turns a request's ``Authorization`` header into an :class:`Access`."""

    def __init__(self, store: Store, *, open_allowed: bool) -> None:
        self._store = store
        self._open_allowed = open_allowed
        self._locked = False  # becomes True once a key exists; keys are never deleted

    async def is_open(self) -> bool:
        """Whether the collector currently runs in open mode."""
        if not self._open_allowed or self._locked:
            return False
        if await self._store.has_keys():
            self._locked = True
            return False
        return True

    async def access(self, authorization: str | None, *,
                     open_mode: bool | None = None) -> Access:
        """The access granted by ``authorization`` (:class:`Unauthorized` when none);
        ``open_mode``: what :meth:`is_open` said for this request (None: ask it)."""
        if open_mode is None:
            open_mode = await self.is_open()
        if open_mode:
            org = await self._store.org(DEFAULT_ORG, create=True)
            assert org is not None
            return Access(org, None)
        if not authorization:
            raise Unauthorized("missing Authorization header (expected 'Bearer <api key>')")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Authorization header must be 'Bearer <api key>'")
        key = await self._store.key_by_hash(hash_token(token))
        if key is None:
            raise Unauthorized("invalid API key")
        if key.revoked is not None:
            raise Unauthorized(f"API key {key.id} was revoked at {key.revoked}")
        org = await self._store.org_by_id(key.org_id)
        if org is None:
            raise Unauthorized(f"API key {key.id} belongs to an organization that is gone")
        return Access(org, key)
