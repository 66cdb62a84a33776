"""What a store takes and returns: organizations, projects and keys, the pieces it writes
and the pages of rows it reads out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spanlog.server.rows._json import dumps, loads

DEFAULT_ORG = "default"


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


class Page:
    """One page of rows, most recently updated first, and the cursor for the next one.

    An engine that keeps rows as JSON text may hand over the text (``raw``) instead of
    dicts: the API then splices it into the response without decoding and re-encoding.
    """

    def __init__(self, rows: list[dict[str, Any]] | None, cursor: str | None, *,
                 raw: list[str] | None = None) -> None:
        if rows is None and raw is None:
            raise ValueError("a Page needs rows or raw")
        self._rows = rows
        self._raw = raw
        self.cursor = cursor

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts."""
        if self._rows is None:
            assert self._raw is not None
            self._rows = [loads(text) for text in self._raw]
        return self._rows

    def rows_json(self) -> str:
        """The rows as one JSON array."""
        return "[" + ",".join(self.lines()) + "]"

    def lines(self) -> list[str]:
        """Each row as JSON text on one line (JSON text has no raw newline)."""
        if self._raw is not None:
            return self._raw
        return [dumps(row) for row in self.rows]
