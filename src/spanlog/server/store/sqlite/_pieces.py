"""Applying pieces to stored rows in SQLite: the writer's job for every row write.

A job (:func:`write_pieces`) reads what is stored for the ids its pieces touch, folds the
pieces on top with the shared merge rules (``rows._apply.apply_piece``), places comment
rows in their target's trace (``store._comments.link_comment``), and writes the changed rows
and their index entries. Ingest speed is decided here, on the one writer thread, so:

- Encoding a row and walking its leaves happen before the transaction, into one shape
  (:class:`Prepared`) on either path: on the caller's thread (:func:`prepare`), or in an
  ingest worker process (:func:`prepare_rows`). A job of new rows is inserted from that as
  it is (:func:`_write_new`); the writer only redoes the work for rows a merge changed.
- Rows and index entries go in with multi-row ``INSERT ... VALUES (...), (...)`` statements
  of up to :data:`MAX_ROWS_PER_INSERT` rows (:func:`insert_many`): one ``sqlite3_step``
  inserts thousands of rows. Python's ``sqlite3`` releases the GIL around each step, so few
  long steps let the event loop parse the next requests on the other core meanwhile, where
  ``executemany`` would hand the GIL back and forth thousands of times per request.
- Index entries are grouped per (field, value) for the whole job (:func:`add_leaves`), so
  a value shared by many rows of the job costs one insert (see ``postings`` in
  ``_schema``); a rewritten row's old entries are left to match nothing.
- A row that is a span also gets its ``spans`` entry (``store._facts``), computed with its
  leaves and moved with its ``xact``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from spanlog._merge import is_merge
from spanlog.server.rows._apply import StoredRow, apply_piece, apply_replace, prepare_replace
from spanlog.server.rows._json import dumps, dumps_internal, loads
from spanlog.server.rows._model import comment_target, is_root
from spanlog.server.store._aggregate import (
    COUNTERS,
    Cells,
    hourly_cells,
    rollup_cells,
    rollup_rows,
)
from spanlog.server.store._comments import link_comment, link_waiting, waiting_comments
from spanlog.server.store._facts import FACT_COLUMNS, Facts, span_facts
from spanlog.server.store._records import Piece
from spanlog.server.store._scores import trace_links
from spanlog.server.store.sqlite._ids import ROW_IDS, forget
from spanlog.server.store.sqlite._leaf_keys import leaf_keys
from spanlog.server.store.sqlite._schema import EPOCH_BITS, ROW_COLUMNS, SPAN_COLUMNS
from spanlog.server.store.sqlite._writer import Txn

_ID_CHUNK = 500  # ids per `IN (...)` lookup, well under SQLite's bound-parameter limit
# Rows per multi-row INSERT statement: a power of two, so that only a few distinct statements
# exist per table and all stay in the connection's statement cache; a shorter tail is padded
# with zeros (the cheapest value to bind) that a LIMIT leaves out. Bound parameters stay under
# SQLite's default 32,766.
MAX_ROWS_PER_INSERT = 4096
_MIN_ROWS_PER_INSERT = 16
_MAX_PARAMS = 32_000

Key = tuple[int, str]  # (project pid, row id)


# The index leaves of a job's prepared pieces: leaf path key -> stored value -> the indexes
# of the pieces that hold it, ascending, each once (see add_leaves). Grouped before the
# transaction, and small: a value shared by many rows of a job is one entry.
Leaves = dict[int, dict[Any, list[int]]]


class Prepared(NamedTuple):
    """A replace piece made ready to store before the transaction: on the caller's thread
    (:func:`prepare`), or in an ingest worker process (:func:`prepare_rows`), whence it is
    pickled over as its fields. Its text and the columns below are all that a new row's
    insert needs (:func:`_write_new`); a piece merged in the transaction needs its row.
    """

    id: str
    text: str  # the row's JSON, final
    digest: str  # the piece's, and whether `created` was stamped: see rows._apply.Replace
    stamped: bool
    capped: bool  # from leaf_keys
    links: str  # trace_links
    facts: Facts | None  # span_facts
    # What the `rows` columns need of it besides the above.
    root_span_id: Any
    is_root: bool
    target: Any  # comment_target
    # The row; None while it travels as its text (a string crosses a process boundary far
    # cheaper than a dict): :func:`adopt` decodes it when the transaction needs it.
    data: dict[str, Any] | None


# A job's prepared pieces (None for a piece folded onto what is stored in the transaction: a
# merge or a delete), their leaves, and the rollup cells of their spans (``store._aggregate``):
# what a job of new rows of one project adds to the rollups, folded ahead.
Ready = tuple[list[Prepared | None], Leaves, Cells]


def add_leaves(group: Leaves, keys: list[tuple[int, Any]], n: int) -> None:
    """Add the leaves ``keys`` (path key, stored value) of row ``n`` to ``group``; rows are
    added in ascending ``n``. Groups a job's leaves by piece index, and its postings by xact."""
    for path, value in keys:
        values = group.get(path)
        if values is None:
            group[path] = {value: [n]}
            continue
        numbers = values.get(value)
        if numbers is None:
            values[value] = [n]
        elif numbers[-1] != n:  # a list holding the same value twice is one entry
            numbers.append(n)


def prepare(pieces: Sequence[Piece]) -> Ready:
    """What :func:`write_pieces` takes for ``pieces``, made on the caller's thread so that
    the writer spends its time in SQLite: their replace pieces encoded (:class:`Prepared`),
    their index leaves grouped, their rollup cells folded. A piece that meets a stored row
    in the transaction is merged there and this work is redone for it."""
    return _prepare([piece.row for piece in pieces], keep_rows=True)


def prepare_rows(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any] | None], Ready]:
    """:func:`prepare` for validated rows in an ingest worker process (``Store.prepare_rows``).

    Returns the rows with None for each replace piece, which travels as its JSON text instead,
    and what :func:`write_pieces` takes back: a job of new rows is inserted from that text as
    it is; any other job first has :func:`adopt` decode it.
    """
    ready = _prepare(rows, keep_rows=False)
    return [row if p is None else None for row, p in zip(rows, ready[0], strict=True)], ready


def _prepare(rows: list[dict[str, Any]], keep_rows: bool) -> Ready:
    prepared: list[Prepared | None] = []
    leaves: Leaves = {}
    for i, row in enumerate(rows):
        if is_merge(row) or row.get("_object_delete") is True:
            prepared.append(None)  # folded onto what is stored, in the transaction
            continue
        data, digest, text, stamped = prepare_replace(row)
        keys, capped = leaf_keys(data)
        add_leaves(leaves, keys, i)
        prepared.append(Prepared(data["id"], text or dumps(data), digest, stamped, capped,
                                 trace_links(data), span_facts(data),
                                 data.get("root_span_id"), is_root(data),
                                 comment_target(data), data if keep_rows else None))
    cells = hourly_cells(p.facts for p in prepared if p is not None and p.facts is not None)
    return prepared, leaves, cells


def adopt(prepared: list[Prepared | None]) -> list[Prepared | None]:
    """``prepared`` with the row of each piece that :func:`prepare_rows` carried as text."""
    return [p if p is None or p.data is not None else p._replace(data=loads(p.text))
            for p in prepared]


@lru_cache(maxsize=64)
def _insert_sql(head: str, width: int, count: int) -> str:
    group = "(" + ",".join("?" * width) + ")"
    return f"{head} SELECT * FROM (VALUES {','.join([group] * count)}) LIMIT ?"


def insert_many(conn: sqlite3.Connection, head: str, width: int, params: list[Any]) -> None:
    """Insert ``len(params) // width`` rows given flat in ``params`` with ``head``
    (``INSERT INTO t (a, b)``): one statement per :data:`MAX_ROWS_PER_INSERT` rows.

    Each statement is one ``sqlite3_step``, and Python's ``sqlite3`` gives the GIL up around
    every step: the writer must win it back from the event loop after each, which is where
    its time went with a statement (or an ``executemany`` step) per row.
    """
    total = len(params) // width
    largest = min(MAX_ROWS_PER_INSERT, 1 << ((_MAX_PARAMS // width).bit_length() - 1))
    done = 0
    while done < total:
        count = min(total - done, largest)
        size = max(_MIN_ROWS_PER_INSERT, 1 << (count - 1).bit_length())
        chunk = params[done * width:(done + count) * width]
        chunk.extend([0] * ((size - count) * width))
        chunk.append(count)
        conn.execute(_insert_sql(head, width, size), chunk)
        done += count


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), _ID_CHUNK):
        yield ids[start:start + _ID_CHUNK]


def _by_pid(keys: Iterable[Key]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for pid, row_id in keys:
        out.setdefault(pid, []).append(row_id)
    return out


def _by_ids(conn: sqlite3.Connection, keys: Iterable[Key],
            columns: str) -> Iterator[tuple[Key, tuple[Any, ...]]]:
    """``columns`` (of ``rows AS r``) of the stored rows ``keys`` (those that exist), found
    through the id index in a few ``IN`` lookups."""
    for pid, ids in _by_pid(keys).items():
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for row_id, *values in conn.execute(
                    f"SELECT r.id, {columns} FROM {ROW_IDS} AS i JOIN rows AS r "
                    f"ON r.xact = i.xact WHERE i.pid = ? AND i.id IN ({marks})", (pid, *chunk)):
                yield (pid, row_id), tuple(values)


def _stored(conn: sqlite3.Connection, keys: Iterable[Key]) -> dict[Key, tuple[int, StoredRow]]:
    """What is stored for ``keys``: (xact, row) each."""
    return {key: (xact, StoredRow(loads(data), base))
            for key, (xact, base, data) in _by_ids(conn, keys, "r.xact, r.base, r.data")}


def _trace_positions(conn: sqlite3.Connection, keys: Iterable[Key]) -> dict[Key, dict[str, Any]]:
    """``root_span_id`` and ``span_id`` of the stored rows ``keys`` (those that exist)."""
    return {key: {"root_span_id": root, "span_id": span_id}
            for key, (root, span_id) in _by_ids(
                conn, keys, "r.root_span_id, json_extract(r.data, '$.span_id')")}


def _link_comments(conn: sqlite3.Connection, old: dict[Key, tuple[int, StoredRow]],
                   current: dict[Key, StoredRow | None], changed: dict[Key, None]) -> None:
    """Put comment rows into their target's trace, whichever of the two arrived first.

    1. A comment written now whose target has a trace (stored, or in this batch) joins it.
    2. A row that got its first ``root_span_id`` now takes in the comments stored earlier
       that waited for it; they are rewritten (new ``xact``) after the batch's own rows.
    """
    waiting = waiting_comments(current, changed)
    if waiting:
        found = _trace_positions(conn, [t for t in waiting.values() if t not in current])
        link_waiting(current, waiting, found)

    gained: list[Key] = []
    for key in changed:
        stored = current[key]
        if stored is None or stored.data.get("root_span_id") is None:
            continue
        before = old.get(key)
        if before is None or before[1].data.get("root_span_id") is None:
            gained.append(key)
    for pid, ids in _by_pid(gained).items():
        if not _comments_wait(conn, pid):
            continue  # the usual case: no comment of this project waits for anything
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for xact, row_id, base, data, origin_id in conn.execute(
                    "SELECT xact, id, base, data, origin_id FROM rows WHERE pid = ? AND "
                    f"root_span_id IS NULL AND origin_id IS NOT NULL AND origin_id IN ({marks})",
                    (pid, *chunk)):
                key = (pid, row_id)
                if key in current:  # written in this batch: step 1 saw it
                    continue
                comment = StoredRow(loads(data), base)
                target_row = current[(pid, origin_id)]
                linked = link_comment(comment, target_row.data if target_row else None)
                if linked is not None:
                    old[key] = (xact, comment)
                    current[key] = linked
                    changed[key] = None


# Index postings of one job: project pid -> leaf path key -> stored value -> the xacts that
# hold it. Nested dicts: a job adds ~14 leaves per row, and a lookup per level costs less than
# building and hashing a key tuple per leaf.
Postings = dict[int, Leaves]


def _prepared_postings(leaves: Leaves, pids: list[int], xacts: list[int | None],
                       postings: Postings) -> None:
    """Add ``leaves`` (by piece index) to ``postings`` (by xact): ``xacts[i]`` is the xact
    piece ``i`` was stored under as prepared (None: not stored as prepared), ``pids[i]`` its
    project."""
    stored = [pid for pid, xact in zip(pids, xacts, strict=True) if xact is not None]
    if not stored:
        return
    if stored.count(stored[0]) == len(stored):  # the usual job: one project
        paths = postings.setdefault(stored[0], {})
        complete = len(stored) == len(xacts)
        for path, values in leaves.items():
            target = paths.setdefault(path, {})
            for value, numbers in values.items():
                found = [xacts[i] for i in numbers]
                if not complete:
                    found = [x for x in found if x is not None]
                if found:
                    target.setdefault(value, []).extend(found)  # type: ignore[arg-type]
        return
    for path, values in leaves.items():
        for value, numbers in values.items():
            for i in numbers:
                xact = xacts[i]
                if xact is not None:
                    postings.setdefault(pids[i], {}).setdefault(path, {}) \
                        .setdefault(value, []).append(xact)


def insert_postings(txn: Txn, postings: Postings) -> None:
    """Write one ``postings`` entry per (field, value): its xacts, newest first, in the
    epoch of the oldest (see ``_schema``)."""
    params: list[Any] = []
    epochs: set[int] = set()
    for pid, paths in postings.items():
        known = txn.known_fields(pid)
        for path, values in paths.items():
            field = known.get(path)
            if field is None:
                field = txn.field_id(pid, path)
            for value, xacts in values.items():
                xacts.sort(reverse=True)  # ascending already, but for rows merged in the job
                first = xacts[-1]
                epoch = first >> EPOCH_BITS
                epochs.add(epoch)
                params.extend((epoch, field, value, first, len(xacts), dumps_internal(xacts)))
    insert_many(txn.conn, "INSERT INTO postings (epoch, field, value, first, n, xacts)", 6,
                params)
    txn.conn.executemany("INSERT OR IGNORE INTO epochs (epoch) VALUES (?)",
                         [(epoch,) for epoch in epochs])


def _only_new_rows(conn: sqlite3.Connection, pids: list[int],
                   prepared: list[Prepared | None], distinct: int) -> bool:
    """Whether a job of prepared pieces (none stored yet) only adds rows as they are: every
    piece a prepared replace of its own id, none a comment, and no stored comment of these
    projects waiting for a trace (which one of these rows might be)."""
    if distinct != len(prepared):
        return False
    for p in prepared:
        if p is None or p.target is not None:
            return False
    return not any(_comments_wait(conn, pid) for pid in set(pids))


def _comments_wait(conn: sqlite3.Connection, pid: int) -> bool:
    """Whether some comment row of project ``pid`` still waits for its target's trace."""
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM rows WHERE pid = ? AND "
                             "root_span_id IS NULL AND origin_id IS NOT NULL)",
                             (pid,)).fetchone()[0])


def _write_new(txn: Txn, pids: list[int], keys: dict[Key, None],
               prepared: list[Prepared | None], leaves: Leaves, cells: Cells) -> None:
    """Insert a job of new rows straight from their prepared text and columns (see
    :func:`_only_new_rows`): what :func:`write_pieces` would do for them, without a row."""
    add_rows: list[Any] = []
    add_ids: list[Any] = []
    add_spans: list[Any] = []
    xacts: list[int | None] = []
    for (pid, row_id), p in zip(keys, prepared, strict=True):
        assert p is not None
        xact = txn.next_xact()
        xacts.append(xact)
        add_rows.extend((xact, pid, row_id, p.root_span_id, int(p.is_root), p.digest, p.text,
                         None, 1 if p.capped else None, p.links))
        add_ids.extend((pid, row_id, xact))
        if p.facts is not None:
            add_spans.extend((xact, pid, p.root_span_id, *p.facts))
    postings: Postings = {}
    _prepared_postings(leaves, pids, xacts, postings)
    # The cells folded ahead serve when the job is of one project (the usual job).
    one = pids[0] if pids and pids.count(pids[0]) == len(pids) else None
    _insert(txn, add_rows, add_ids, add_spans, postings,
            cells=(one, cells) if one is not None else None)


_UPSERT_ROLLUP = (
    f"INSERT INTO rollup (pid, hour, kind, grp, {', '.join(COUNTERS)}) "
    f"VALUES ({', '.join('?' * (4 + len(COUNTERS)))}) ON CONFLICT (pid, kind, hour, grp) "
    f"DO UPDATE SET {', '.join(f'{c} = {c} + excluded.{c}' for c in COUNTERS)}")
_UPSERT_LATENCY = (
    "INSERT INTO rollup_latency (pid, hour, kind, grp, bin, n) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (pid, kind, hour, grp, bin) DO UPDATE SET n = n + excluded.n")
_UPSERT_SCORES = (
    "INSERT INTO rollup_scores (pid, hour, kind, grp, name, total, n) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pid, kind, hour, grp, name) "
    "DO UPDATE SET total = total + excluded.total, n = n + excluded.n")


def removed_spans(conn: sqlite3.Connection, xacts: list[tuple[int]]) -> list[tuple[Any, ...]]:
    """``(pid, *facts)`` of the ``spans`` entries of rows ``xacts`` (about to be replaced)."""
    out: list[tuple[Any, ...]] = []
    columns = ", ".join(("pid", *FACT_COLUMNS))
    for start in range(0, len(xacts), _ID_CHUNK):
        chunk = [x for (x,) in xacts[start:start + _ID_CHUNK]]
        out.extend(conn.execute(f"SELECT {columns} FROM spans WHERE xact IN "
                                f"({','.join('?' * len(chunk))})", chunk))
    return out


def update_rollups(conn: sqlite3.Connection, added: Iterable[Sequence[Any]],
                   removed: Iterable[Sequence[Any]]) -> None:
    """Add the figures of the spans ``added`` to the rollups and take away those of the
    spans ``removed`` (each ``(pid, *facts)``, see ``store._aggregate``)."""
    for pid, cells in rollup_cells(added, removed).items():
        upsert_cells(conn, pid, cells)


def upsert_cells(conn: sqlite3.Connection, pid: int, cells: Cells) -> None:
    """Add rollup ``cells`` (changes) to project ``pid``'s rollups."""
    counts, latency, scores = rollup_rows(pid, cells)
    conn.executemany(_UPSERT_ROLLUP, counts)
    conn.executemany(_UPSERT_LATENCY, latency)
    conn.executemany(_UPSERT_SCORES, scores)


def _insert(txn: Txn, add_rows: list[Any], add_ids: list[Any], add_spans: list[Any],
            postings: Postings, removed: Sequence[Sequence[Any]] = (),
            cells: tuple[int, Cells] | None = None) -> None:
    """Insert a job's new rows (``ROW_COLUMNS`` flat), their id entries (pid, id, xact flat,
    see ``_ids``), their ``spans`` entries (``SPAN_COLUMNS`` flat), with the rollups of
    those and of the ``removed`` spans they replace (or the project and rollup ``cells``
    folded ahead for them), and its postings."""
    if add_rows:
        insert_many(txn.conn, f"INSERT INTO rows ({', '.join(ROW_COLUMNS)})", len(ROW_COLUMNS),
                    add_rows)
        insert_many(txn.conn, "INSERT INTO ids_recent (pid, id, xact)", 3, add_ids)
        txn.recent_ids += len(add_ids) // 3
    if add_spans or removed:
        width = len(SPAN_COLUMNS)
        insert_many(txn.conn, f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)})", width,
                    add_spans)
        if cells is not None and not removed:
            upsert_cells(txn.conn, *cells)
        else:
            # (pid, *facts) of each span added: SPAN_COLUMNS without xact and root_span_id.
            added = (add_spans[i + 1:i + 2] + add_spans[i + 3:i + width]
                     for i in range(0, len(add_spans), width))
            update_rollups(txn.conn, added, removed)
    if postings:
        insert_postings(txn, postings)


def write_pieces(txn: Txn, pieces: Sequence[Piece], prepared: Ready) -> None:
    """Apply ``pieces`` in order on top of what is stored (a writer job); ``prepared`` is what
    :func:`prepare` made of their rows (or :func:`prepare_rows`: then the pieces it carried
    as text have ``row`` None)."""
    conn = txn.conn
    ready, leaves, cells = prepared
    pids = [txn.pid(piece.project_id) for piece in pieces]
    keys: dict[Key, None] = {}
    for pid, piece, p in zip(pids, pieces, ready, strict=True):
        keys[(pid, piece.row["id"] if p is None else p.id)] = None
    old = _stored(conn, keys)
    if not old and _only_new_rows(conn, pids, ready, len(keys)):
        _write_new(txn, pids, keys, ready, leaves, cells)
        return
    ready = adopt(ready)

    current: dict[Key, StoredRow | None] = {k: v[1] for k, v in old.items()}
    changed: dict[Key, None] = {}
    # The piece whose prepared row a row got, if any: its leaves are in `leaves`.
    stored_as: dict[Key, int] = {}
    for i, (pid, piece, p) in enumerate(zip(pids, pieces, ready, strict=True)):
        key = (pid, piece.row["id"] if p is None else p.id)
        if p is not None:
            assert p.data is not None  # adopted
            result = apply_replace(current.get(key), p.data, p.digest, p.text, p.stamped)
            if result is not None and result.data is p.data:
                stored_as[key] = i
        elif piece.row.get("_object_delete") is True:
            current[key] = None
            changed[key] = None
            continue
        else:
            result = apply_piece(current.get(key), piece.row)
        if result is not None:
            current[key] = result
            changed[key] = None
    _link_comments(conn, old, current, changed)

    drop_rows: list[tuple[int]] = []
    drop_keys: list[Key] = []
    add_rows: list[Any] = []
    add_ids: list[Any] = []
    add_spans: list[Any] = []
    postings: Postings = {}
    xacts: list[int | None] = [None] * len(pieces)  # of the pieces stored as prepared
    for key in changed:
        pid, row_id = key
        if key in old:
            # Its postings stay: the old xact matches no row once the row is deleted.
            drop_rows.append((old[key][0],))
            drop_keys.append(key)
        stored = current[key]
        if stored is None:
            continue
        xact = txn.next_xact()
        data = stored.data
        at = stored_as.get(key)
        p = ready[at] if at is not None else None
        if at is not None and p is not None and data is p.data:
            xacts[at] = xact
            capped, links, facts = p.capped, p.links, p.facts
        else:  # merged in this job: walk it again
            row_leaves, capped = leaf_keys(data)
            links, facts = trace_links(data), span_facts(data)
            add_leaves(postings.setdefault(pid, {}), row_leaves, xact)
        add_rows.extend((xact, pid, row_id, data.get("root_span_id"), int(is_root(data)),
                         stored.base_digest, stored.text or dumps(data), comment_target(data),
                         1 if capped else None, links))
        add_ids.extend((pid, row_id, xact))
        if facts is not None:
            add_spans.extend((xact, pid, data.get("root_span_id"), *facts))
    _prepared_postings(leaves, pids, xacts, postings)
    removed: list[tuple[Any, ...]] = []
    if drop_rows:
        removed = removed_spans(conn, drop_rows)
        conn.executemany("DELETE FROM rows WHERE xact = ?", drop_rows)
        conn.executemany("DELETE FROM spans WHERE xact = ?", drop_rows)
        txn.recent_ids -= forget(conn, drop_keys)
    _insert(txn, add_rows, add_ids, add_spans, postings, removed)
