"""The store interface every engine implements.

The HTTP layer talks only to :class:`Store`; the SQLite engine is the default and the
PostgreSQL engine serves the same methods. What a store takes and returns is in
``_records.py``, its errors in ``_errors.py``; the logic the engines share is in the modules
beside this one and in ``rows/``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from spanlog.server.store._aggregate import Window
from spanlog.server.store._errors import NotFound
from spanlog.server.store._records import ApiKey, Org, Page, Piece, Project
from spanlog.server.store._sessions import SessionQuery

# How long one read (a fetch or a trace) may run before it is stopped with QueryTooSlow
# (docs/collector.md, "What it guarantees"); ``spanlog serve --query-timeout`` changes it.
DEFAULT_QUERY_TIMEOUT = 10.0

# The type of ``Store.prepare_rows``: validated rows in; the rows (None where the second
# result carries one) and what ``Store.write(pieces, prepared=...)`` takes back out.
PrepareRows = Callable[[list[dict[str, Any]]], tuple[list[dict[str, Any] | None], Any]]


class Store(ABC):
    """Where the collector keeps orgs, projects, keys and rows. Engines implement this.

    Writes are acknowledged only after they are durable; a write call is all or nothing.
    Every row returned carries ``_xact_id`` (the string of its last write's transaction id,
    increasing), ``project_id`` and ``log_id: "g"``.
    """

    # Seconds one fetch or trace read may run (the HTTP layer sets it from its settings).
    query_timeout: float = DEFAULT_QUERY_TIMEOUT
    # The projects an engine has looked up, by id: each with the engine's own number for it
    # (its pid), which :meth:`project_by_id` records here.
    _projects: dict[str, tuple[Project, int]]

    async def _pid(self, project_id: str) -> int:
        """The engine's number for project ``project_id``; NotFound when there is none."""
        if project_id not in self._projects and await self.project_by_id(project_id) is None:
            raise NotFound(f"project {project_id!r} not found")
        return self._projects[project_id][1]

    @property
    @abstractmethod
    def reads_running(self) -> int:
        """How many budgeted reads (fetches, traces, sessions, aggregates) run now: past
        their turn, on a reader. For diagnostics and for tests that must see reads under
        way; at log level DEBUG each such read's start is logged with this count."""

    def interrupt_reads(self) -> None:
        """Stop every read running now and refuse new ones (shutdown: the serving stops
        waiting for them). Engines whose reads end with their connections may do nothing."""
        return None

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
    async def project_settings(self, project_id: str) -> dict[str, Any]:
        """The settings set on project ``project_id`` (only those a user set; readers apply
        ``_settings.with_defaults``); :class:`NotFound` when there is no such project."""

    @abstractmethod
    async def change_project_settings(self, project_id: str,
                                      changes: dict[str, Any]) -> dict[str, Any]:
        """Apply ``changes`` (checked by ``_settings.check_settings``; a null removes) to the
        project's settings, atomically; return the settings now set."""

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

    # A pure function (picklable: module level) that an ingest worker process may run on a
    # request's validated rows: it returns the rows, None where its second result carries a
    # row in a form cheaper to hand across processes, and that second result, which
    # ``write(pieces, prepared=...)`` takes back (pieces of such rows have ``row`` None).
    # None: the engine prepares nothing ahead, and rows cross as they are.
    prepare_rows: PrepareRows | None = None

    @abstractmethod
    async def write(self, pieces: Sequence[Piece], prepared: Any = None) -> None:
        """Apply ``pieces`` in order, all or nothing, and return once they are durable.
        ``prepared``: what this engine's :attr:`prepare_rows` returned for them."""

    @abstractmethod
    async def fetch(self, project_id: str, *, filter: str | None = None, limit: int = 50,
                    cursor: str | None = None, roots_only: bool = False,
                    since: float | None = None, until: float | None = None) -> Page:
        """Rows of a project, most recently updated first, optionally filtered.

        ``since``/``until`` (Unix seconds) keep the spans that started in ``[since, until)``
        (``started`` of ``_facts.py``); comment rows, which are no spans, are then left out.

        ``filter`` is a docs/protocol.md filter expression (:class:`BadRequest` when it does not
        parse); ``cursor`` continues a previous page. With ``roots_only`` only root spans
        (``is_root``, ``rows/_model.py``) are listed, each with ``scores_avg`` over its whole trace
        (``subtree_averages``, ``_scores.py``), read for the whole page at once.
        """

    @abstractmethod
    async def sessions(self, project_id: str,
                       query: SessionQuery) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the project's sessions (``_sessions.py``), latest first, each with its
        trace count, first and last start and totals; and the cursor of the next page.
        Within the per-query time budget, like :meth:`fetch`."""

    @abstractmethod
    async def aggregate(self, project_id: str, win: Window) -> dict[str, Any]:
        """A project's figures over the time range of ``win``, in its buckets, optionally
        split and filtered: the response of docs/protocol.md "Aggregates"
        (``_aggregate.py`` has the rules and the SQL both engines run)."""

    @abstractmethod
    async def latest_xact(self, project_id: str) -> str | None:
        """The transaction id of the project's latest write (None while it has no rows)."""

    @abstractmethod
    async def trace(self, project_id: str, root_span_id: str) -> list[dict[str, Any]]:
        """Every row of one trace, oldest first (by ``created``), without score averages."""
