"""The store interface every engine implements, and the logic the engines share.

The API layer (``_app.py``) talks only to :class:`Store`; the SQLite engine (``_sqlite.py``)
is the default and a PostgreSQL engine can follow behind the same methods. Shared here:
the records a store returns, how a piece lands on a stored row (:func:`apply_piece`, built on
``spanlog._merge``), and the per-span score averages of a trace (:func:`with_score_averages`).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from spanlog._merge import is_merge, merge_into, merge_under, strip_control

DEFAULT_ORG = "default"
DEFAULT_PROJECT = "Global"


class NotFound(LookupError):
    """The object asked for does not exist (HTTP 404)."""


class Unavailable(RuntimeError):
    """The store cannot take this request now: shutting down or overloaded (HTTP 503)."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BadRequest(ValueError):
    """The request cannot be served as asked (HTTP 400); the message says what and where."""


@dataclass(frozen=True)
class Org:
    """An organization: the unit keys belong to and projects live in."""

    id: str
    name: str
    created: str


@dataclass(frozen=True)
class Project:
    """A project inside an organization; rows belong to exactly one project."""

    id: str
    name: str
    org_id: str
    created: str

    def to_json(self) -> dict[str, Any]:
        """The project as the HTTP API returns it."""
        return {"id": self.id, "name": self.name, "org_id": self.org_id, "created": self.created}


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: only the hash of its secret token is kept."""

    id: str
    name: str
    org_id: str
    org_name: str
    projects: tuple[str, ...] | None  # project names the key may use; None means all
    created: str
    revoked: str | None = None

    def allows(self, project: Project) -> bool:
        """Whether this key may read and write ``project``."""
        if project.org_id != self.org_id:
            return False
        return self.projects is None or project.name in self.projects


@dataclass
class Piece:
    """One validated incoming piece bound for a project, as handed to :meth:`Store.write`."""

    project_id: str
    row: dict[str, Any]


@dataclass
class Page:
    """One page of rows, most recently updated first, and the cursor for the next one."""

    rows: list[dict[str, Any]]
    cursor: str | None


@dataclass
class StoredRow:
    """What an engine keeps for one (project, id) while applying pieces."""

    data: dict[str, Any]
    # Digest of the replace piece this row is based on; None while only merges arrived.
    base_digest: str | None = None
    changed: bool = field(default=False)


def now_iso() -> str:
    """The current time as ISO-8601 UTC, the form ``created`` takes."""
    return datetime.now(timezone.utc).isoformat()


def piece_digest(row: Mapping[str, Any]) -> str:
    """A stable digest of a piece, so a retried replace piece can be recognised."""
    text = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def apply_piece(stored: StoredRow | None, piece: Mapping[str, Any]) -> StoredRow | None:
    """The stored row after ``piece`` lands on it, or None when nothing changes.

    Rules (PROTOCOL.md, "Merge"): a merge piece deep-merges; a merge piece for an id not stored
    yet is stored as it is; a replace piece replaces, except that when only merges were stored
    so far (feedback that overtook the span) it goes *underneath* them (``merge_under``). A
    replace piece identical to the one the row is based on is a retry and changes nothing,
    so retries leave the store as if the batch had been sent once.
    """
    if is_merge(piece):
        if stored is None:
            data = strip_control(piece)
            data.setdefault("created", now_iso())
            return StoredRow(data=data, base_digest=None, changed=True)
        return StoredRow(data=merge_into(stored.data, piece), base_digest=stored.base_digest,
                         changed=True)
    digest = piece_digest(piece)
    if stored is None:
        data = strip_control(piece)
        data.setdefault("created", now_iso())
        return StoredRow(data=data, base_digest=digest, changed=True)
    if stored.base_digest == digest:
        return None
    if stored.base_digest is None:
        merged = dict(stored.data)
        if piece.get("created") is not None:
            # The server stamped `created` on the first merge; the span's own value wins.
            merged.pop("created", None)
        data = merge_under(piece, merged)
    else:
        data = merge_into(stored.data, piece)
    data.setdefault("created", now_iso())
    return StoredRow(data=data, base_digest=digest, changed=True)


def is_root(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` is the root span of its trace (no parents)."""
    return not row.get("span_parents")


def with_score_averages(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of one trace, each with ``scores_avg``: its own and its descendants' scores.

    For every span and every score name, the mean of that score over the span itself and every
    span below it (through ``span_parents``) that has a non-null value for it. This is how the
    seed document's "multiple scores" work: each submission is a child span, and the parent
    shows their average.
    """
    children: dict[str, list[int]] = {}
    by_span: dict[str, int] = {}
    for i, row in enumerate(rows):
        span_id = row.get("span_id")
        if isinstance(span_id, str):
            by_span[span_id] = i
    for i, row in enumerate(rows):
        for parent in row.get("span_parents") or ():
            if parent in by_span:
                children.setdefault(parent, []).append(i)

    own: list[dict[str, float]] = []
    for row in rows:
        scores = row.get("scores") or {}
        own.append({name: float(value) for name, value in scores.items()
                    if isinstance(value, (int, float)) and not isinstance(value, bool)})

    result = []
    for i, row in enumerate(rows):
        # Walk the subtree with a visited set: exact with several parents per span, and a
        # malformed trace with a cycle still counts each span once. Traces are small.
        seen = {i}
        stack = [i]
        sums: dict[str, tuple[float, int]] = {}
        while stack:
            j = stack.pop()
            for name, value in own[j].items():
                total, count = sums.get(name, (0.0, 0))
                sums[name] = (total + value, count + 1)
            span_id = rows[j].get("span_id")
            for child in children.get(span_id, ()) if isinstance(span_id, str) else ():
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        avg = {name: total / count for name, (total, count) in sorted(sums.items())}
        result.append({**row, "scores_avg": avg})
    return result


class Store(ABC):
    """Where the collector keeps orgs, projects, keys and rows. Engines implement this.

    Writes are acknowledged only after they are durable; a write call is all or nothing.
    Every row returned carries ``_xact_id`` (the string of its last write's transaction id,
    increasing), ``project_id`` and ``log_id: "g"``.
    """

    @abstractmethod
    async def start(self) -> None:
        """Open connections and start background workers."""

    @abstractmethod
    async def close(self) -> None:
        """Finish pending writes and release every resource."""

    # -- organizations, projects, keys -------------------------------------------------

    @abstractmethod
    async def org(self, name: str, *, create: bool = False) -> Org | None:
        """The organization called ``name`` (created when ``create``), or None."""

    @abstractmethod
    async def org_by_id(self, org_id: str) -> Org | None:
        """The organization with id ``org_id``, or None."""

    @abstractmethod
    async def project(self, org_id: str, name: str, *, create: bool = False) -> Project | None:
        """The project ``name`` in ``org_id`` (created when ``create``), or None."""

    @abstractmethod
    async def project_by_id(self, project_id: str) -> Project | None:
        """The project with id ``project_id``, or None."""

    @abstractmethod
    async def projects(self, org_id: str) -> list[Project]:
        """Every project of ``org_id``, oldest first."""

    @abstractmethod
    async def key_by_hash(self, token_hash: str) -> ApiKey | None:
        """The key whose secret token hashes to ``token_hash`` (revoked ones too), or None."""

    @abstractmethod
    async def has_keys(self) -> bool:
        """Whether any key was ever created (revoked ones count: the collector stays locked)."""

    @abstractmethod
    async def add_key(self, key: ApiKey, token_hash: str) -> None:
        """Store a new key under the hash of its secret token."""

    @abstractmethod
    async def keys(self) -> list[ApiKey]:
        """Every key, oldest first, revoked ones included."""

    @abstractmethod
    async def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke the key ``key_id`` (:class:`NotFound` when there is none); return it."""

    # -- rows --------------------------------------------------------------------------

    @abstractmethod
    async def write(self, pieces: Sequence[Piece]) -> None:
        """Apply ``pieces`` in order, all or nothing, and return once they are durable."""

    @abstractmethod
    async def fetch(self, project_id: str, *, filter: str | None = None, limit: int = 50,
                    cursor: str | None = None, roots_only: bool = False) -> Page:
        """Rows of a project, most recently updated first, optionally filtered.

        ``filter`` is a PROTOCOL.md filter expression (:class:`BadRequest` when it does not
        parse); ``cursor`` continues a previous page.
        """

    @abstractmethod
    async def latest_xact(self, project_id: str) -> str | None:
        """The transaction id of the project's latest write (None while it has no rows)."""

    @abstractmethod
    async def trace(self, project_id: str, root_span_id: str) -> list[dict[str, Any]]:
        """Every row of one trace, oldest first (by ``created``), without score averages."""
