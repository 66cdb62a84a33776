"""The SQLite store itself: fields outside the JSON, rows past the leaf cap, query counts,
and upgrading a database written with the first index layout."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from spanlog.server.query import evaluate, parse
from spanlog.server.rows._leaves import MAX_LEAVES_PER_ROW
from spanlog.server.store._records import Piece, Project
from spanlog.server.store.sqlite import _ids as _sqlite_ids
from spanlog.server.store.sqlite._query import build_query, fetch_page
from spanlog.server.store.sqlite._schema import EPOCH_BITS, INDEX_VERSION, connect
from spanlog.server.store.sqlite._store import SqliteStore
from sqlite_id_index import id_index_problems
from store_projects import default_org_project

CREATED = "2024-01-01T00:00:00+00:00"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A started SQLite store on a fresh file."""
    s = SqliteStore(str(tmp_path / "s.sqlite3"))
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def _ids(store: SqliteStore, project: Project, text: str, **kw: Any) -> list[str]:
    rows: list[str] = []
    cursor = None
    while True:
        page = await store.fetch(project.id, filter=text, cursor=cursor, **kw)
        rows.extend(r["id"] for r in page.rows)
        if page.cursor is None:
            return rows
        cursor = page.cursor


async def test_filters_on_xact_id_and_project_id(store: SqliteStore) -> None:
    """_xact_id and project_id (kept outside the row JSON) filter like any other field:
    exactly what the reference evaluator selects from the rows as fetched."""
    project = await default_org_project(store, "p")
    other = await default_org_project(store, "other")
    await store.write([Piece(project.id, {"id": f"r{i}", "created": CREATED,
                                          "metadata": {"i": i}}) for i in range(6)])
    await store.write([Piece(other.id, {"id": "elsewhere", "created": CREATED})])
    rows = (await store.fetch(project.id, limit=100)).rows
    xacts = [r["_xact_id"] for r in rows]
    filters = [
        f"_xact_id = '{xacts[2]}'", f"_xact_id != '{xacts[2]}'", f"_xact_id > '{xacts[3]}'",
        "_xact_id = '007'", "_xact_id = 'nope'", "_xact_id = '99999999999999999999'",
        f"_xact_id = '{xacts[1]}' AND metadata.i = 4", f"_xact_id = '{xacts[1]}' OR id = 'r0'",
        f"project_id = '{project.id}'", f"project_id = '{other.id}'",
        f"NOT project_id = '{other.id}' AND metadata.i >= 3", "project_id LIKE '%-%'",
        "project_id IS NULL", "_xact_id IS NOT NULL AND metadata.i = 2",
    ]
    for text in filters:
        expected = [r["id"] for r in rows if evaluate(parse(text), r)]
        assert await _ids(store, project, text, limit=2) == expected, text
    assert await _ids(store, project, f"_xact_id = '{xacts[2]}'") == [rows[2]["id"]]
    assert await _ids(store, project, f"project_id = '{project.id}'") == [r["id"] for r in rows]


def _wide(row_id: str, **more: Any) -> dict[str, Any]:
    """A row with more leaves than the index keeps: metadata first, then tags."""
    metadata = {f"k{i}": i for i in range(MAX_LEAVES_PER_ROW + 10)}
    return {"id": row_id, "created": CREATED, "metadata": metadata,
            "tags": ["past-the-cap"], **more}


async def test_equality_past_the_leaf_cap_still_finds_the_row(store: SqliteStore) -> None:
    """Leaves past MAX_LEAVES_PER_ROW are not indexed, yet equality and INCLUDES filters on
    them find the row, in xact order among indexed matches, across cursor pages."""
    project = await default_org_project(store, "p")
    last = MAX_LEAVES_PER_ROW + 5
    await store.write([Piece(project.id, {"id": "n1", "created": CREATED,
                                          "metadata": {f"k{last}": last, "k1": 1}})])
    await store.write([Piece(project.id, _wide("wide"))])
    await store.write([Piece(project.id, {"id": "n2", "created": CREATED,
                                          "metadata": {f"k{last}": last}})])
    assert await _ids(store, project, f"metadata.k{last} = {last}") == ["n2", "wide", "n1"]
    assert await _ids(store, project, f"metadata.k{last} = {last}", limit=1) == \
        ["n2", "wide", "n1"]
    assert await _ids(store, project, f"metadata.k1 = 1 AND metadata.k{last} = {last}") == \
        ["wide", "n1"]
    assert await _ids(store, project, "tags includes 'past-the-cap'") == ["wide"]
    assert await _ids(store, project, f"metadata.k{last} = 0") == []
    assert await _ids(store, project, "tags includes 'past-the-cap'", roots_only=True) == \
        ["wide"]
    # Written again small, the row is fully indexed and no longer a candidate by default.
    await store.write([Piece(project.id, {"id": "wide", "created": CREATED,
                                          "metadata": {"k1": 1}})])
    assert await _ids(store, project, f"metadata.k{last} = {last}") == ["n2", "n1"]
    conn = connect(store.path, readonly=True)
    try:
        pid = conn.execute("SELECT pid FROM projects WHERE id = ?", (project.id,)).fetchone()[0]
        sql, _ = build_query(conn, pid=pid, filter_text="metadata.k1 = 1", limit=50,
                             before=None, roots_only=False)
        assert "UNION" not in sql  # no capped rows left: the plain index plan
    finally:
        conn.close()


async def test_roots_only_averages_take_one_query_per_page(store: SqliteStore) -> None:
    """The scores_avg of a roots_only page come from one read of its traces: the page
    issues as many statements for 20 roots as for 2."""
    project = await default_org_project(store, "p")
    pieces = []
    for t in range(20):
        pieces.append(Piece(project.id, {"id": f"t{t}", "span_id": f"s{t}",
                                         "root_span_id": f"trace{t}", "created": CREATED}))
        pieces.append(Piece(project.id, {"id": f"t{t}c", "span_id": f"s{t}c",
                                         "root_span_id": f"trace{t}", "created": CREATED,
                                         "span_parents": [f"s{t}"], "scores": {"q": t / 20}}))
    await store.write(pieces)
    conn = connect(store.path, readonly=True)
    try:
        pid = conn.execute("SELECT pid FROM projects WHERE id = ?", (project.id,)).fetchone()[0]
        counts = []
        for limit in (2, 20):
            statements: list[str] = []
            conn.set_trace_callback(statements.append)
            page = fetch_page(conn, pid=pid, project_id=project.id, filter_text=None,
                              limit=limit, cursor=None, roots_only=True)
            conn.set_trace_callback(None)
            assert len(page.rows) == limit
            assert page.rows[0]["scores_avg"] == {"q": 19 / 20}
            assert sum("IN (" in s and "links" in s for s in statements) == 1
            counts.append(len(statements))
        assert counts[0] == counts[1]
    finally:
        conn.close()


async def test_a_root_without_root_span_id_averages_its_own_scores(store: SqliteStore) -> None:
    """A root span logged without root_span_id is a trace of one for roots_only averages."""
    project = await default_org_project(store, "p")
    await store.write([Piece(project.id, {"id": "lone", "span_id": "s", "created": CREATED,
                                          "scores": {"q": 0.25, "r": None}})])
    [row] = (await store.fetch(project.id, roots_only=True)).rows
    assert row["id"] == "lone" and row["scores_avg"] == {"q": 0.25}


# The first index layout (before `fields`, `origin_id` and `capped`), as spanlog wrote it.
_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
CREATE TABLE projects (
    pid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, org_id TEXT NOT NULL,
    name TEXT NOT NULL, created TEXT NOT NULL, UNIQUE (org_id, name));
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL, org_id TEXT NOT NULL,
    projects TEXT, created TEXT NOT NULL, revoked TEXT);
CREATE TABLE rows (
    xact INTEGER PRIMARY KEY, pid INTEGER NOT NULL, id TEXT NOT NULL, root_span_id TEXT,
    is_root INTEGER NOT NULL, base TEXT, data TEXT NOT NULL);
CREATE UNIQUE INDEX rows_by_id ON rows (pid, id);
CREATE INDEX rows_by_project ON rows (pid);
CREATE INDEX rows_by_root ON rows (pid, is_root);
CREATE INDEX rows_by_trace ON rows (pid, root_span_id);
CREATE TABLE terms (
    pid INTEGER NOT NULL, path INTEGER NOT NULL, value NOT NULL, xact INTEGER NOT NULL,
    PRIMARY KEY (pid, path, value, xact)) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('last_xact', 3);
INSERT INTO meta (key, value) VALUES ('schema_version', 1);
INSERT INTO orgs VALUES ('o1', 'default', '2024-01-01');
INSERT INTO projects VALUES (1, 'p1', 'o1', 'Global', '2024-01-01');
"""


async def test_a_first_layout_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """A database from the first index layout opens with its rows and xacts intact, a
    rebuilt index that answers filters, and its waiting comments placed in their traces."""
    path = tmp_path / "v1.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(_V1_SCHEMA)
    rows = [
        (1, "span", "t1", 1, {"id": "span", "span_id": "s1", "root_span_id": "t1",
                              "metadata": {"user": "ann"}, "tags": ["prod"]}),
        (2, "note", None, 0, {"id": "note", "origin": {"id": "span"},
                              "comment": {"text": "good"}}),
        (3, "wide", "wide", 1, {"id": "wide", "span_id": "wide", "root_span_id": "wide",
                                "metadata": {f"k{i}": i
                                             for i in range(MAX_LEAVES_PER_ROW + 3)}}),
    ]
    conn.executemany("INSERT INTO rows VALUES (?, 1, ?, ?, ?, NULL, ?)",
                     [(x, i, r, root, json.dumps(d)) for x, i, r, root, d in rows])
    conn.commit()
    conn.close()
    store = SqliteStore(str(path))
    await store.start()
    try:
        assert await _ids(store, Project("p1", "Global", "o1", ""), "metadata.user = 'ann'") \
            == ["span"]
        last = MAX_LEAVES_PER_ROW + 2
        assert await _ids(store, Project("p1", "Global", "o1", ""),
                          f"metadata.k{last} = {last}") == ["wide"]
        trace = await store.trace("p1", "t1")
        assert [(r["id"], r["_xact_id"]) for r in trace] == [("span", "1"), ("note", "2")]
        assert trace[1]["span_parents"] == ["s1"]
        await store.write([Piece("p1", {"id": "new", "created": CREATED, "tags": ["prod"]})])
        page = await store.fetch("p1", filter="tags includes 'prod'")
        assert [(r["id"], r["_xact_id"]) for r in page.rows] == [("new", "4"), ("span", "1")]
    finally:
        await store.close()
    check = sqlite3.connect(path)
    try:
        assert check.execute("SELECT value FROM meta WHERE key = 'index_version'").fetchone() \
            == (INDEX_VERSION,)
    finally:
        check.close()


async def test_postings_page_newest_first_across_and_within_transactions(
        store: SqliteStore) -> None:
    """Rows sharing a value within one write and across writes come back newest first, page
    by page from any cursor; a rewritten row appears once, at its new place."""
    project = await default_org_project(store, "postings")
    written: list[str] = []
    for batch in range(4):
        pieces = [Piece(project.id, {"id": f"r{batch}-{i}", "created": CREATED,
                                     "metadata": {"env": "a" if i % 3 else "b", "n": i},
                                     "tags": ["t", "t"]})
                  for i in range(25)]
        await store.write(pieces)
        written.extend(p.row["id"] for p in pieces)
    # A merge rewrites r1-4 (env a -> b) and r2-5 (env stays a): both move to the newest xact.
    await store.write([Piece(project.id, {"id": "r1-4", "_is_merge": True,
                                          "metadata": {"env": "b"}}),
                       Piece(project.id, {"id": "r2-5", "_is_merge": True,
                                          "metadata": {"tag": "x"}})])
    order = [i for i in reversed(written) if i not in ("r1-4", "r2-5")]
    order = ["r2-5", "r1-4", *order]
    env_a = [i for i in order if i != "r1-4" and int(i.split("-")[1]) % 3]
    assert await _ids(store, project, "metadata.env = 'a'") == env_a
    for limit in (1, 7, 25, 26):
        assert await _ids(store, project, "metadata.env = 'a'", limit=limit) == env_a
        assert await _ids(store, project, "tags includes 't'", limit=limit) == order
    assert "r1-4" in await _ids(store, project, "metadata.env = 'b'")


async def test_postings_pages_across_epochs(store: SqliteStore) -> None:
    """Postings of one value spread over several epochs (some empty in between, a job
    straddling a boundary, a row rewritten from an old epoch into the newest) page newest
    first from every cursor, exactly as the reference evaluator selects."""
    project = await default_org_project(store, "epochs")
    path = store.path
    for epoch in (1, 2, 5, 6):
        # Jump the transaction counter to just below the epoch's start: the next rows take
        # xacts on both sides of the boundary.
        conn = sqlite3.connect(path)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'last_xact'",
                     ((epoch << EPOCH_BITS) - 3,))
        conn.commit()
        conn.close()
        for half in range(2):
            await store.write([Piece(project.id, {
                "id": f"e{epoch}-{half}-{i}", "created": CREATED, "tags": ["t"],
                "metadata": {"user": "ann" if i % 3 == 0 else f"u{epoch}{half}{i}",
                             "env": "prod" if i % 2 else "dev"}}) for i in range(4)])
    await store.write([Piece(project.id, {"id": "e1-0-0", "_is_merge": True,
                                          "metadata": {"env": "prod"}})])
    check = sqlite3.connect(path)
    try:
        epochs = [e for (e,) in check.execute("SELECT epoch FROM epochs ORDER BY epoch")]
    finally:
        check.close()
    assert epochs == [0, 1, 2, 4, 5, 6]
    rows = (await store.fetch(project.id, limit=100)).rows
    assert len(rows) == 32 and rows[0]["id"] == "e1-0-0"
    for text in ("metadata.user = 'ann'", "metadata.env = 'prod'", "tags includes 't'",
                 "metadata.user = 'ann' AND metadata.env = 'prod'", "metadata.user = 'u611'",
                 "metadata.env = 'dev' AND tags includes 't'"):
        expected = [r["id"] for r in rows if evaluate(parse(text), r)]
        assert expected, text
        for limit in (1, 2, 3, 100):
            assert await _ids(store, project, text, limit=limit) == expected, (text, limit)


# What each older index layout had instead of the current one's (besides `rows_by_id`, which
# every one of them had in place of the two id tables).
_NEW_INDEX = "DROP TABLE postings; DROP TABLE epochs;"
_OLD_LAYOUTS = {
    2: _NEW_INDEX + """CREATE TABLE terms (
              field INTEGER NOT NULL, value NOT NULL, xact INTEGER NOT NULL,
              PRIMARY KEY (field, value, xact)) WITHOUT ROWID;""",
    3: _NEW_INDEX + """CREATE TABLE postings (
              field INTEGER NOT NULL, value NOT NULL, first INTEGER NOT NULL,
              n INTEGER NOT NULL, xacts TEXT NOT NULL, PRIMARY KEY (field, value, first))
              WITHOUT ROWID;""",
    4: "",
}


@pytest.mark.parametrize("version", sorted(_OLD_LAYOUTS))
async def test_an_older_layout_database_is_upgraded_in_place(
        tmp_path: Path, version: int, caplog: pytest.LogCaptureFixture) -> None:
    """A database with version 2's per-row ``terms``, version 3's postings without epochs,
    or version 4's one index on row ids, opens with its postings and its id index rebuilt."""
    path = str(tmp_path / f"v{version}.sqlite3")
    store = SqliteStore(path)
    await store.start()
    try:
        project = await default_org_project(store, "old")
        await store.write([Piece(project.id, {"id": f"r{i}", "created": CREATED,
                                              "metadata": {"user": f"u{i % 3}"}})
                           for i in range(10)])
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    conn.executescript(f"""
        DROP TABLE ids_recent;
        DROP TABLE ids_settled;
        DELETE FROM meta WHERE key = 'ids_recent';
        CREATE UNIQUE INDEX rows_by_id ON rows (pid, id);
        {_OLD_LAYOUTS[version]}
        UPDATE meta SET value = {version} WHERE key = 'index_version';
    """)
    conn.close()
    store = SqliteStore(path)
    with caplog.at_level(logging.INFO, logger="spanlog.server"):
        await store.start()
    try:
        # Version 4's postings are kept: only its id index is rebuilt.
        rebuilt = [r.message for r in caplog.records if "rebuil" in r.message]
        assert len(rebuilt) == (1 if version == 4 else 3), rebuilt
        assert await _ids(store, project, "metadata.user = 'u1'") == ["r7", "r4", "r1"]
        assert await _ids(store, project, "id = 'r4'") == ["r4"]
        await store.write([Piece(project.id, {"id": "r4", "_is_merge": True,
                                              "metadata": {"user": "u9"}})])
        assert await _ids(store, project, "metadata.user = 'u1'") == ["r7", "r1"]
        assert await _ids(store, project, "id = 'r4' AND metadata.user = 'u9'") == ["r4"]
    finally:
        await store.close()
    assert not id_index_problems(path)
    check = sqlite3.connect(path)
    try:
        tables = {r[0] for r in check.execute("SELECT name FROM sqlite_master")}
        assert "terms" not in tables and "postings" in tables and "epochs" in tables
        assert "rows_by_id" not in tables
        # The upgrade settled all ten ids; the rewrite since moved r4's to ids_recent.
        assert check.execute("SELECT count(*) FROM ids_settled").fetchone() == (9,)
        assert check.execute("SELECT id FROM ids_recent").fetchall() == [("r4",)]
        assert "epoch" in {r[1] for r in check.execute("PRAGMA table_info(postings)")}
        assert check.execute("SELECT value FROM meta WHERE key = 'index_version'").fetchone() \
            == (INDEX_VERSION,)
    finally:
        check.close()


async def test_traces_and_their_filter_across_rewrites(store: SqliteStore) -> None:
    """A trace read, a root_span_id filter and root averages see rows rewritten in later
    transactions once, and two long root_span_ids sharing a long prefix stay two traces."""
    project = await default_org_project(store, "p")
    long_a, long_b = "r" * 300 + "a", "r" * 300 + "b"

    def span(row_id: str, root: str, **extra: Any) -> Piece:
        return Piece(project.id, {"id": row_id, "span_id": row_id, "root_span_id": root,
                                  "created": CREATED, **extra})

    await store.write([span("a0", "ta"), span("a1", "ta", span_parents=["a0"]),
                       span("m", "ta"), span("l1", long_a), span("l2", long_b)])
    await store.write([Piece(project.id, {"id": "a1", "_is_merge": True, "scores": {"s": 1}})])
    await store.write([span("m", "ta", output="again")])  # replaced: a new xact
    await store.write([Piece(project.id, {"id": "a1", "_is_merge": True, "tags": ["x"]})])

    assert sorted(r["id"] for r in await store.trace(project.id, "ta")) == ["a0", "a1", "m"]
    assert [r["id"] for r in await store.trace(project.id, long_a)] == ["l1"]
    assert [r["id"] for r in await store.trace(project.id, long_b)] == ["l2"]
    assert await store.trace(project.id, "none") == []
    assert await _ids(store, project, "root_span_id = 'ta'") == ["a1", "m", "a0"]
    assert await _ids(store, project, f"root_span_id = '{long_b}'") == ["l2"]
    assert await _ids(store, project, "root_span_id = 'ta'", limit=1) == ["a1", "m", "a0"]
    roots = (await store.fetch(project.id, roots_only=True)).rows
    averages = {r["id"]: r["scores_avg"] for r in roots}
    assert averages["a0"] == {"s": 1}


async def test_two_collectors_share_the_id_index_as_ids_settle(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stores writing to one file in turn (as two collector processes do), while ids move
    from ``ids_recent`` to ``ids_settled`` in every transaction: merges, deletes and comments
    find their rows in either table, each row is found by its id, and the index stays whole
    (each writer sweeps from its own place)."""
    monkeypatch.setattr(_sqlite_ids, "SETTLE_AFTER", 5)
    monkeypatch.setattr(_sqlite_ids, "MAX_SETTLE", 1000)
    path = str(tmp_path / "shared.sqlite3")
    stores = [SqliteStore(path), SqliteStore(path)]
    for s in stores:
        await s.start()
    try:
        project = await default_org_project(stores[0], "shared")
        expected: dict[str, dict[str, Any]] = {}
        for step in range(12):
            pieces = [Piece(project.id, {"id": f"r{step}-{i}", "span_id": f"s{step}-{i}",
                                         "root_span_id": f"t{step}", "created": CREATED,
                                         "metadata": {"n": i}}) for i in range(4)]
            pieces += [Piece(project.id, {"id": f"r{old}-0", "_is_merge": True,
                                          "metadata": {"seen": step}}) for old in range(step)]
            for i in range(4):
                expected[f"r{step}-{i}"] = {"n": i}
            for old in range(step):
                expected[f"r{old}-0"]["seen"] = step
            if step >= 3:
                pieces.append(Piece(project.id, {"id": f"r{step - 3}-3", "_object_delete": True}))
                del expected[f"r{step - 3}-3"]
            if step >= 1:
                pieces.append(Piece(project.id, {"id": f"c{step}", "created": CREATED,
                                                 "origin": {"id": f"r{step - 1}-1"},
                                                 "comment": {"text": "seen"}}))
                expected[f"c{step}"] = {}
            # ...and one that waits for a row of the next step (placed in its trace then).
            pieces.append(Piece(project.id, {"id": f"w{step}", "created": CREATED,
                                             "origin": {"id": f"r{step + 1}-2"},
                                             "comment": {"text": "early"}}))
            expected[f"w{step}"] = {}
            await stores[step % 2].write(pieces)
            assert not id_index_problems(path), step
        check = sqlite3.connect(path)
        try:
            recent, settled = (check.execute(f"SELECT count(*) FROM ids_{t}").fetchone()[0]
                               for t in ("recent", "settled"))
        finally:
            check.close()
        # Every transaction leaves 5 ids in ids_recent: what a step refers to has settled.
        assert recent == 5 and settled == len(expected) - 5
        for row_id, metadata in expected.items():
            [row] = (await stores[0].fetch(project.id, filter=f"id = '{row_id}'")).rows
            assert row.get("metadata", {}) == metadata, row_id
        assert len(await _ids(stores[1], project, "created IS NOT NULL")) == len(expected)
        traces = [{r["id"] for r in await stores[1].trace(project.id, f"t{step}")}
                  for step in range(12)]
        # Trace t(k) holds the comment on its row logged a step later, and the one logged a
        # step earlier that waited for it.
        for step in range(12):
            assert step == 11 or f"c{step + 1}" in traces[step], step
            assert step == 0 or f"w{step - 1}" in traces[step], step
    finally:
        for s in stores:
            await s.close()
