"""The store interface every engine implements, and the logic the engines share.

The API layer (``_app.py``) talks only to :class:`Store`; the SQLite engine (``_sqlite.py``)
is the default and a PostgreSQL engine can follow behind the same methods. Shared here:
the records a store returns, how a piece lands on a stored row (:func:`apply_piece`, built on
``spanlog._merge``), how a comment row joins its target's trace (:func:`link_comment`), and
the per-span score averages of a trace (:func:`with_score_averages`, :func:`subtree_averages`).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from spanlog._merge import CONTROL_FIELDS, is_merge, merge_into, merge_under, strip_control
from spanlog.server.rows._json import dumps, dumps_bytes, dumps_internal, loads

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
    # An engine's own precomputation for this piece (see SqliteStore.write); opaque here.
    prepared: Any = field(default=None, compare=False)


@dataclass(slots=True)
class Replace:
    """A replace piece made ready to store: the row, its digest, its JSON when final."""

    data: dict[str, Any]
    digest: str
    text: str | None
    # Whether the server stamped ``created`` (the piece had none): under stored merges, the
    # first merge's stamp then stays.
    stamped: bool = False


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
        if self._raw is not None:
            return "[" + ",".join(self._raw) + "]"
        return dumps(self.rows)


@dataclass
class StoredRow:
    """What an engine keeps for one (project, id) while applying pieces."""

    data: dict[str, Any]
    # Digest of the replace piece this row is based on; None while only merges arrived.
    base_digest: str | None = None
    # ``data`` already encoded as JSON, when that was needed anyway (saves a second encode).
    text: str | None = field(default=None, compare=False)


def now_iso() -> str:
    """The current time as ISO-8601 UTC, the form ``created`` takes."""
    return datetime.now(timezone.utc).isoformat()


def prepare_replace(piece: Mapping[str, Any]) -> Replace:
    """A replace piece as stored data, its digest, and its JSON when that is final.

    Pure, so an engine may call it before its write transaction (off the writer thread).
    """
    # strip_control, done as one C-level copy: this runs for every incoming row.
    data = dict(piece)
    for control in CONTROL_FIELDS:
        data.pop(control, None)
    encoded = dumps_bytes(data)
    # A retry re-sends the same piece, so the same bytes: the digest of our own encoding of
    # it recognises the retry without a second, key-sorted encoding.
    digest = hashlib.blake2b(encoded, digest_size=16).hexdigest()
    text: str | None = encoded.decode()
    stamped = data.get("created") is None
    if stamped:
        data["created"] = now_iso()
        text = None
    if data.get("span_id") is None and data.get("root_span_id") is None \
            and data.get("origin") is None:
        # A plain event (no span ids, not a comment): a trace of one span, as the seed
        # platform's API treats it, so it lists, opens and filters like any other trace.
        data["span_id"] = data["root_span_id"] = data["id"]
        text = None
    return Replace(data, digest, text, stamped)


def apply_piece(stored: StoredRow | None, piece: Mapping[str, Any],
                replace: Replace | None = None) -> StoredRow | None:
    """The stored row after ``piece`` lands on it, or None when nothing changes.

    Rules (docs/protocol.md, "Merge"): a merge piece deep-merges; a merge piece for an id not stored
    yet is stored as it is; a replace piece replaces, except that when only merges were stored
    so far (feedback that overtook the span) it goes *underneath* them (``merge_under``). A
    replace piece identical to the one the row is based on is a retry and changes nothing,
    so retries leave the store as if the batch had been sent once. ``replace`` is
    ``prepare_replace(piece)`` when the caller computed it already.
    """
    if is_merge(piece):
        if stored is None:
            data = strip_control(piece)
            data.setdefault("created", now_iso())
            return StoredRow(data=data, base_digest=None)
        return StoredRow(data=merge_into(stored.data, piece), base_digest=stored.base_digest)
    ready = replace or prepare_replace(piece)
    base, digest = ready.data, ready.digest
    if stored is None:
        return StoredRow(data=base, base_digest=digest, text=ready.text)
    if stored.base_digest == digest:
        return None
    if stored.base_digest is None:
        merged = dict(stored.data)
        if not ready.stamped:
            # The server stamped `created` on the first merge; the span's own value wins.
            merged.pop("created", None)
        data = merge_under(base, merged)
    else:
        data = merge_into(stored.data, base)
    data.setdefault("created", now_iso())
    return StoredRow(data=data, base_digest=digest)



def parse_cursor(cursor: str | None) -> int | None:
    """The transaction id a fetch cursor continues below (:class:`BadRequest` when malformed)."""
    if cursor is None or cursor == "":
        return None
    try:
        value = int(cursor)
    except (TypeError, ValueError):
        raise BadRequest(f"cursor: not a cursor this collector returned: {cursor!r}") from None
    if value <= 0:
        raise BadRequest(f"cursor: not a cursor this collector returned: {cursor!r}")
    return value


def api_row(xact: int, data: str, project_id: str) -> dict[str, Any]:
    """A stored row (its JSON text) as the API returns it, with its transaction id."""
    row: dict[str, Any] = loads(data)
    row["_xact_id"] = str(xact)
    row["project_id"] = project_id
    row["log_id"] = "g"
    return row


def trace_order(row: Mapping[str, Any]) -> tuple[float, str, int]:
    """The order of a trace's rows, on every engine: start time, then created, then
    transaction id."""
    metrics = row.get("metrics") or {}
    start = metrics.get("start") if isinstance(metrics, dict) else None
    return (start if isinstance(start, (int, float)) else float("inf"),
            str(row.get("created") or ""), int(row["_xact_id"]))

def is_root(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` is the root span of a trace: a span (it has a ``span_id``) without
    parents. Comment rows and feedback that arrived before its span are not."""
    return (not row.get("span_parents") and row.get("span_id") is not None
            and row.get("origin") is None)


def comment_target(row: Mapping[str, Any]) -> str | None:
    """The id of the row that comment row ``row`` is about; None when ``row`` is no comment.

    A comment is its own row ``{id, origin: {id: target}, comment: {text}}`` (docs/protocol.md,
    feedback), the shape both ``log_feedback`` implementations write and the viewer reads.
    """
    if row.get("comment") is None:
        return None
    origin = row.get("origin")
    target = origin.get("id") if isinstance(origin, dict) else None
    return target if isinstance(target, str) else None


def link_comment(comment: StoredRow, target: Mapping[str, Any] | None) -> StoredRow | None:
    """``comment`` placed in its target's trace, or None when there is nothing to do.

    A comment row gets the target's ``root_span_id``, so reading the trace returns it, and
    ``span_parents: [target's span_id]``, so a tree built from ``span_parents`` hangs it under
    the span it is about. It never becomes a root (:func:`is_root`) and never counts in score
    averages (:func:`with_score_averages`). Nothing happens while the target has no trace yet
    (not stored, or only feedback merges stored so far); engines call this again when the
    target's first ``root_span_id`` arrives, so either arrival order ends the same way.
    """
    if target is None or comment.data.get("root_span_id") is not None:
        return None
    root = target.get("root_span_id")
    if root is None:
        return None
    data = dict(comment.data)
    data["root_span_id"] = root
    span_id = target.get("span_id")
    if span_id is not None and not data.get("span_parents"):
        data["span_parents"] = [span_id]
    return StoredRow(data=data, base_digest=comment.base_digest)



RowKey = tuple[int, str]  # (the engine's project number, row id)


def waiting_comments(current: Mapping[RowKey, StoredRow | None],
                     keys: Iterable[RowKey]) -> dict[RowKey, RowKey]:
    """The comments among ``keys`` that are not in a trace yet, each with its target's key."""
    waiting: dict[RowKey, RowKey] = {}
    for key in keys:
        stored = current[key]
        if stored is not None and stored.data.get("root_span_id") is None:
            target_id = comment_target(stored.data)
            if target_id is not None:
                waiting[key] = (key[0], target_id)
    return waiting


def link_waiting(current: dict[RowKey, StoredRow | None], waiting: Mapping[RowKey, RowKey],
                 stored_targets: Mapping[RowKey, Mapping[str, Any]]) -> None:
    """Link each waiting comment to its target's trace, in place in ``current``.

    A target written in this batch is taken from ``current``; otherwise from
    ``stored_targets`` (the engine's lookup of ``root_span_id`` and ``span_id``).
    """
    for key, target_key in waiting.items():
        target: Mapping[str, Any] | None
        if target_key in current:
            target_row = current[target_key]
            target = target_row.data if target_row is not None else None
        else:
            target = stored_targets.get(target_key)
        comment = current[key]
        assert comment is not None
        linked = link_comment(comment, target)
        if linked is not None:
            current[key] = linked

def with_score_averages(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of one trace, each with ``scores_avg``: its own and its descendants' scores.

    For every span and every score name, the mean of that score over the span itself and every
    span below it (through ``span_parents``) that has a non-null value for it. This is how the
    seed document's "multiple scores" work: each submission is a child span, and the parent
    shows their average. Comment rows (:func:`comment_target`) hang in the tree but carry no
    scores of their own, whatever they hold.
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
        scores = row.get("scores") if comment_target(row) is None else None
        if not isinstance(scores, dict):
            scores = {}
        own.append({name: float(value) for name, value in scores.items()
                    if isinstance(value, (int, float)) and not isinstance(value, bool)})

    sums = _tree_sums(rows, children, own)
    if sums is None:
        sums = [_subtree_sums(rows, children, own, i) for i in range(len(rows))]
    return [{**row, "scores_avg": {name: total / count
                                   for name, (total, count) in sorted(total_by_name.items())}}
            for row, total_by_name in zip(rows, sums, strict=True)]


# What averaging needs of one row: (id, span_id, span_parents, scores); scores None for
# comment rows, which never count.
TraceLink = tuple[str, Any, Any, Any]


def trace_links(row: Mapping[str, Any]) -> str:
    """``[span_id, span_parents, scores]`` of ``row`` as JSON: what :func:`subtree_averages`
    needs of it, small enough for an engine to keep beside the row and read a whole page of
    traces' worth at once. A comment row's scores are left out (they never count)."""
    scores = row.get("scores") if comment_target(row) is None else None
    return dumps_internal((row.get("span_id"), row.get("span_parents"), scores))


def subtree_averages(trace: Sequence[TraceLink], ids: Iterable[str]) -> dict[str, dict[str, float]]:
    """``scores_avg`` of the rows ``ids`` of one trace, from just its tree links and scores.

    The same definition as :func:`with_score_averages` (each span below, through
    ``span_parents``, counted once), walking only the subtrees asked for: a ``roots_only``
    fetch needs the roots' averages alone, for a whole page of traces read at once.
    """
    children: dict[str, list[int]] = {}
    position: dict[str, int] = {}
    for i, (row_id, _, parents, _) in enumerate(trace):
        position[row_id] = i
        if isinstance(parents, list):
            for parent in parents:
                children.setdefault(parent, []).append(i)
    out: dict[str, dict[str, float]] = {}
    for row_id in ids:
        start = position.get(row_id)
        if start is None:
            continue
        sums: dict[str, list[float]] = {}
        seen = {start}
        stack = [start]
        while stack:
            _, span_id, _, scores = trace[stack.pop()]
            if isinstance(scores, dict):
                for name, value in scores.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        total = sums.get(name)
                        if total is None:
                            sums[name] = [float(value), 1]
                        else:
                            total[0] += value
                            total[1] += 1
            if isinstance(span_id, str):
                for child in children.get(span_id, ()):
                    if child not in seen:
                        seen.add(child)
                        stack.append(child)
        out[row_id] = {name: total / count for name, (total, count) in sorted(sums.items())}
    return out


_Sums = dict[str, tuple[float, int]]


def roots_by_trace(roots: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """A page's roots ``(root_span_id, id)`` grouped by trace: what :func:`root_averages`
    needs, and the trace ids to read the links of."""
    wanted: dict[str, list[str]] = {}
    for root_span_id, row_id in roots:
        wanted.setdefault(root_span_id, []).append(row_id)
    return wanted


def root_averages(traces: Mapping[str, Sequence[TraceLink]], wanted: Mapping[str, list[str]]
                  ) -> dict[tuple[str, str], dict[str, float]]:
    """``scores_avg`` of each wanted root ``(root_span_id, id)``, from its trace's links."""
    return {(root_span_id, row_id): average
            for root_span_id, trace in traces.items()
            for row_id, average in subtree_averages(trace, wanted[root_span_id]).items()}


def _add(into: _Sums, scores: Mapping[str, tuple[float, int]]) -> None:
    for name, (total, count) in scores.items():
        old_total, old_count = into.get(name, (0.0, 0))
        into[name] = (old_total + total, old_count + count)


def _tree_sums(rows: Sequence[Mapping[str, Any]], children: dict[str, list[int]],
               own: list[dict[str, float]]) -> list[_Sums] | None:
    """Subtree sums in one bottom-up pass, or None unless the trace is a forest."""
    parent_of: dict[int, int] = {}
    for kids in children.values():
        for kid in kids:
            if kid in parent_of:  # a span with two parents in this trace: not a tree
                return None
            parent_of[kid] = -1
    spans = [row.get("span_id") for row in rows if isinstance(row.get("span_id"), str)]
    if len(set(spans)) < len(spans):
        # Two rows share a span_id: both are parents of its children, which one pass up a
        # forest cannot express.
        return None
    index = {row.get("span_id"): i for i, row in enumerate(rows)}
    pending = [0] * len(rows)
    for parent_span, kids in children.items():
        for kid in kids:
            parent_of[kid] = index[parent_span]
            pending[index[parent_span]] += 1
    sums: list[_Sums] = [{name: (value, 1) for name, value in scores.items()} for scores in own]
    ready = [i for i in range(len(rows)) if pending[i] == 0]
    done = 0
    while ready:
        i = ready.pop()
        done += 1
        parent = parent_of.get(i)
        if parent is not None:
            _add(sums[parent], sums[i])
            pending[parent] -= 1
            if pending[parent] == 0:
                ready.append(parent)
    return sums if done == len(rows) else None  # a cycle never gets ready


def _subtree_sums(rows: Sequence[Mapping[str, Any]], children: dict[str, list[int]],
                  own: list[dict[str, float]], i: int) -> _Sums:
    # The general case (several parents, cycles): walk the subtree with a visited set, so
    # each span counts once. Quadratic at worst, which only malformed traces pay.
    seen = {i}
    stack = [i]
    sums: _Sums = {}
    while stack:
        j = stack.pop()
        _add(sums, {name: (value, 1) for name, value in own[j].items()})
        span_id = rows[j].get("span_id")
        for child in children.get(span_id, ()) if isinstance(span_id, str) else ():
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return sums


# The type of ``Store.prepare_rows``: validated rows in; the rows (None where the second
# result carries one) and what ``Store.write(pieces, prepared=...)`` takes back out.
PrepareRows = Callable[[list[dict[str, Any]]], tuple[list[dict[str, Any] | None], Any]]


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
                    cursor: str | None = None, roots_only: bool = False) -> Page:
        """Rows of a project, most recently updated first, optionally filtered.

        ``filter`` is a docs/protocol.md filter expression (:class:`BadRequest` when it does not
        parse); ``cursor`` continues a previous page. With ``roots_only`` only root spans
        (:func:`is_root`) are listed, each with ``scores_avg`` over its whole trace
        (:func:`subtree_averages`), read for the whole page at once.
        """

    @abstractmethod
    async def latest_xact(self, project_id: str) -> str | None:
        """The transaction id of the project's latest write (None while it has no rows)."""

    @abstractmethod
    async def trace(self, project_id: str, root_span_id: str) -> list[dict[str, Any]]:
        """Every row of one trace, oldest first (by ``created``), without score averages."""
