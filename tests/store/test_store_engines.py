"""The store interface, run against both engines: every operation gives the same result."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from spanlog.server.query import evaluate, parse
from spanlog.server.store._engine import Store
from spanlog.server.store._errors import BadRequest, NotFound
from spanlog.server.store._records import DEFAULT_ORG, ApiKey, Piece
from spanlog.server.store._scores import with_score_averages
from spanlog.server.store.sqlite import _ids as _sqlite_ids
from spanlog.server.store.sqlite._store import SqliteStore
from sqlite_id_index import id_index_problems
from store_projects import default_org_project

CREATED = "2024-01-01T00:00:00+00:00"


async def all_rows(store: Store, project_id: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every row through the cursor, page by page."""
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        page = await store.fetch(project_id, limit=kwargs.pop("limit", 1000), cursor=cursor,
                                 **kwargs)
        rows.extend(page.rows)
        cursor = page.cursor
        if cursor is None:
            return rows
    raise AssertionError("fetch never ran out of pages")


def span(row_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": row_id, "span_id": f"s-{row_id}", "root_span_id": fields.pop("root", "t1"),
            "span_parents": fields.pop("parents", None), "created": CREATED, **fields}


# -- organizations, projects, keys ------------------------------------------------------------

async def test_default_org_exists_and_orgs_are_get_or_create(store: Store) -> None:
    """start() creates the default org; org(create=True) is idempotent; lookups by id work."""
    default = await store.org(DEFAULT_ORG)
    assert default is not None and default.name == DEFAULT_ORG
    assert await store.org("acme") is None
    acme = await store.org("acme", create=True)
    assert acme is not None and acme.name == "acme"
    assert await store.org("acme", create=True) == acme
    assert await store.org_by_id(acme.id) == acme
    assert await store.org_by_id("nope") is None


async def test_projects_are_scoped_to_their_org_and_listed_oldest_first(store: Store) -> None:
    """Same name in two orgs is two projects; projects() lists one org's, oldest first."""
    default = await store.org(DEFAULT_ORG)
    other = await store.org("other", create=True)
    assert default is not None and other is not None
    assert await store.project(default.id, "b") is None
    b = await store.project(default.id, "b", create=True)
    a = await store.project(default.id, "a", create=True)
    b_other = await store.project(other.id, "b", create=True)
    assert b is not None and a is not None and b_other is not None
    assert b.id != b_other.id and b_other.org_id == other.id
    assert await store.project(default.id, "b", create=True) == b
    assert [p.name for p in await store.projects(default.id)] == ["b", "a"]
    assert [p.id for p in await store.projects(other.id)] == [b_other.id]
    assert await store.project_by_id(a.id) == a
    assert await store.project_by_id("missing") is None
    assert a.to_json() == {"id": a.id, "name": "a", "org_id": default.id, "created": a.created}


async def test_keys_round_trip_with_scope_and_revocation(store: Store) -> None:
    """Keys keep their org, project scope and revocation; has_keys stays true once made."""
    org = await store.org("keys-org", create=True)
    assert org is not None
    assert not await store.has_keys()
    scoped = ApiKey("key_1", "ci", org.id, org.name, ("p1", "p2"), "2024-01-01T00:00:01")
    wide = ApiKey("key_2", "", org.id, org.name, None, "2024-01-01T00:00:02")
    await store.add_key(scoped, "hash-1")
    await store.add_key(wide, "hash-2")
    assert await store.has_keys()
    assert await store.key_by_hash("hash-1") == scoped
    assert await store.key_by_hash("hash-3") is None
    assert [k.id for k in await store.keys()] == ["key_1", "key_2"]
    revoked = await store.revoke_key("key_1")
    assert revoked.revoked is not None and revoked.projects == ("p1", "p2")
    again = await store.revoke_key("key_1")
    assert again.revoked == revoked.revoked, "revoking twice keeps the first time"
    found = await store.key_by_hash("hash-1")
    assert found is not None and found.revoked == revoked.revoked
    with pytest.raises(NotFound):
        await store.revoke_key("key_404")
    assert await store.has_keys()


# -- writing and merging ---------------------------------------------------------------------

async def test_rows_carry_xact_project_and_log_id_newest_first(store: Store) -> None:
    """Each changed row gets its own larger _xact_id; fetch lists newest first."""
    p = await default_org_project(store)
    await store.write([Piece(p.id, span("a")), Piece(p.id, span("b"))])
    await store.write([Piece(p.id, span("c"))])
    rows = (await store.fetch(p.id)).rows
    assert [r["id"] for r in rows] == ["c", "b", "a"]
    xacts = [int(r["_xact_id"]) for r in rows]
    assert xacts == sorted(xacts, reverse=True) and len(set(xacts)) == 3
    assert all(r["project_id"] == p.id and r["log_id"] == "g" for r in rows)
    assert rows[0] == {**span("c"), "_xact_id": rows[0]["_xact_id"], "project_id": p.id,
                       "log_id": "g"}
    assert await store.latest_xact(p.id) == rows[0]["_xact_id"]


async def test_merge_rules_match_the_protocol(store: Store) -> None:
    """Merges deep-merge, union tags, keep first identity fields; replaces replace."""
    p = await default_org_project(store)
    await store.write([Piece(p.id, span("a", metadata={"x": 1, "o": {"k": 1}}, tags=["t1"]))])
    await store.write([Piece(p.id, {"id": "a", "_is_merge": True, "span_id": "other",
                                    "metadata": {"y": 2, "o": {"j": 2}}, "tags": ["t2", "t1"],
                                    "output": "done", "created": "2030-01-01"})])
    row = (await store.fetch(p.id)).rows[0]
    assert row["metadata"] == {"x": 1, "y": 2, "o": {"k": 1, "j": 2}}
    assert row["tags"] == ["t1", "t2"] and row["output"] == "done"
    assert row["span_id"] == "s-a" and row["created"] == CREATED
    await store.write([Piece(p.id, span("a", input="fresh"))])
    row = (await store.fetch(p.id)).rows[0]
    assert "output" not in row and row["input"] == "fresh" and "metadata" not in row


async def test_feedback_that_overtakes_its_span_goes_on_top(store: Store) -> None:
    """A merge stored before its span's replace piece survives it (merge_under)."""
    p = await default_org_project(store)
    await store.write([Piece(p.id, {"id": "a", "_is_merge": True, "scores": {"q": 1},
                                    "tags": ["fb"]})])
    await store.write([Piece(p.id, span("a", scores={"r": 0.5}, tags=["own"], output="o"))])
    row = (await store.fetch(p.id)).rows[0]
    assert row["scores"] == {"q": 1, "r": 0.5} and row["output"] == "o"
    assert sorted(row["tags"]) == ["fb", "own"] and row["created"] == CREATED


async def test_retried_batches_leave_the_store_as_if_sent_once(store: Store) -> None:
    """A replace batch sent twice changes nothing the second time, not even _xact_id."""
    p = await default_org_project(store)
    batch = [Piece(p.id, span("a", output=1)), Piece(p.id, span("b", output=2))]
    await store.write(batch)
    first = (await store.fetch(p.id)).rows
    await store.write(batch)
    assert (await store.fetch(p.id)).rows == first


async def test_batches_are_all_or_nothing(store: Store) -> None:
    """A batch naming an unknown project stores none of its rows."""
    p = await default_org_project(store)
    with pytest.raises(NotFound):
        await store.write([Piece(p.id, span("a")), Piece("no-such-project", span("b"))])
    assert (await store.fetch(p.id)).rows == []
    assert await store.latest_xact(p.id) is None


async def test_object_delete_removes_the_row(store: Store) -> None:
    """A piece with _object_delete: true deletes the row; a later piece recreates it."""
    p = await default_org_project(store)
    await store.write([Piece(p.id, span("a")), Piece(p.id, span("b"))])
    await store.write([Piece(p.id, {"id": "a", "_object_delete": True})])
    assert [r["id"] for r in (await store.fetch(p.id)).rows] == ["b"]
    await store.write([Piece(p.id, span("a", output="back"))])
    assert [r["id"] for r in (await store.fetch(p.id)).rows] == ["a", "b"]


async def test_projects_do_not_see_each_others_rows(store: Store) -> None:
    """Rows with the same id in two projects are two rows."""
    p1, p2 = await default_org_project(store, "one"), await default_org_project(store, "two")
    await store.write([Piece(p1.id, span("a", output=1)), Piece(p2.id, span("a", output=2))])
    assert [r["output"] for r in (await store.fetch(p1.id)).rows] == [1]
    assert [r["output"] for r in (await store.fetch(p2.id)).rows] == [2]


# -- reading ---------------------------------------------------------------------------------

async def test_cursor_pages_cover_every_row_once(store: Store) -> None:
    """Pages of 7 through 30 rows give every row once, newest first, then no cursor."""
    p = await default_org_project(store)
    await store.write([Piece(p.id, span(f"r{i:02d}")) for i in range(30)])
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.fetch(p.id, limit=7, cursor=cursor)
        seen.extend(r["id"] for r in page.rows)
        if page.cursor is None:
            break
        cursor = page.cursor
    assert seen == [f"r{i:02d}" for i in reversed(range(30))]


async def test_bad_fetch_arguments_are_clear_errors(store: Store) -> None:
    """Bad limit, cursor and filter are BadRequest naming the argument; unknown project 404."""
    p = await default_org_project(store)
    for kwargs, word in [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
                         ({"cursor": "abc"}, "cursor"), ({"cursor": "-3"}, "cursor"),
                         ({"filter": "metadata.x = "}, "position"),
                         ({"filter": "bogus = 1"}, "unknown field")]:
        with pytest.raises(BadRequest, match=word):
            await store.fetch(p.id, **kwargs)
    with pytest.raises(NotFound):
        await store.fetch("no-such-project")


async def test_roots_only_lists_root_spans(store: Store) -> None:
    """roots_only keeps rows without span_parents."""
    p = await default_org_project(store)
    await store.write([Piece(p.id, span("root")),
                       Piece(p.id, span("child", parents=["s-root"])),
                       Piece(p.id, span("other-root", root="t2"))])
    page = await store.fetch(p.id, roots_only=True)
    assert [r["id"] for r in page.rows] == ["other-root", "root"]
    filtered = await store.fetch(p.id, roots_only=True, filter="root_span_id = 't1'")
    assert [r["id"] for r in filtered.rows] == ["root"]


async def test_trace_is_in_start_order_with_score_averages(store: Store) -> None:
    """trace() returns one trace by start time; averages cover each span's subtree."""
    p = await default_org_project(store)
    await store.write([
        Piece(p.id, span("root", metrics={"start": 1.0}, scores={"q": 1})),
        Piece(p.id, span("late", parents=["s-root"], metrics={"start": 3.0},
                         scores={"q": 0})),
        Piece(p.id, span("early", parents=["s-root"], metrics={"start": 2.0},
                         scores={"q": 0.5, "r": 1})),
        Piece(p.id, span("elsewhere", root="t2"))])
    rows = await store.trace(p.id, "t1")
    assert [r["id"] for r in rows] == ["root", "early", "late"]
    averaged = {r["id"]: r["scores_avg"] for r in with_score_averages(rows)}
    assert averaged["root"] == {"q": 0.5, "r": 1.0}
    assert averaged["late"] == {"q": 0.0}
    assert await store.trace(p.id, "nope") == []


DATASET: list[dict[str, Any]] = [
    span("u1", metadata={"user_id": "1234", "n": 5, "deep": {"k": "v"}}, tags=["prod"],
         scores={"accuracy": 0.9}, input="Please refund my order", span_attributes={
             "name": "chat", "type": "llm"}),
    span("u2", metadata={"user_id": "5678", "n": 5.0}, tags=["staging", "prod"],
         scores={"accuracy": 0.2}, input={"messages": ["REFUND now"]},
         span_attributes={"name": "tool", "type": "tool"}),
    span("u3", metadata={"user_id": 1234, "n": -1}, tags=[], error="boom",
         scores={"accuracy": None}),
    span("u4", metadata={"user_id": ["1234"], "flag": True}, output=[1, 2, 3]),
    span("u5", metadata={"flag": 1, "big": 2**64 + 1, "tiny": 1e-05}, input="Straße"),
]
# Filter -> the ids it selects from DATASET (what _filter.evaluate says, written out).
FILTERS = {
    "metadata.user_id = '1234'": ["u1"], "metadata.user_id = 1234": ["u3"],
    "metadata.user_id != '1234'": ["u2", "u3", "u4"],
    "NOT metadata.user_id = '1234'": ["u2", "u3", "u4", "u5"],
    "metadata.n = 5": ["u1", "u2"], "metadata.n > 0": ["u1", "u2"],
    "metadata.n <= 5": ["u1", "u2", "u3"], "metadata.deep.k = 'v'": ["u1"],
    "tags includes 'prod'": ["u1", "u2"], "tags NOT INCLUDES 'prod'": ["u3"],
    "scores.accuracy > 0.5": ["u1"], "scores.accuracy IS NULL": ["u3", "u4", "u5"],
    "error IS NOT NULL": ["u3"], "input ILIKE '%refund%'": ["u1", "u2"],
    "input LIKE '%refund%'": ["u1"], "span_attributes.type = 'llm'": ["u1"],
    "metadata.flag = true": ["u4"], "metadata.flag = 1": ["u5"],
    "metadata.big > 1e19": ["u5"], "metadata.tiny LIKE '1e-05'": ["u5"],
    "input ILIKE 'STRASSE'": [], "input ILIKE 'STRAßE'": ["u5"],
    "output includes 2": ["u4"], "metadata.user_id includes '1234'": ["u4"],
    "id = 'u3'": ["u3"], "root_span_id = 't1' AND metadata.n = 5": ["u1", "u2"],
    "(metadata.n = 5 OR metadata.flag = true) AND NOT tags includes 'staging'": ["u1", "u4"],
    "metadata.user_id >= '2'": ["u2"], "input IS NULL": ["u3", "u4"],
}


@pytest.mark.parametrize("text", FILTERS)
async def test_filters_select_what_evaluate_selects(store: Store, text: str) -> None:
    """Each filter returns exactly the rows _filter.evaluate accepts, newest first."""
    p = await default_org_project(store)
    await store.write([Piece(p.id, row) for row in DATASET])
    stored = (await store.fetch(p.id)).rows
    expr = parse(text)
    want = [r["id"] for r in stored
            if evaluate(expr, {k: v for k, v in r.items()
                               if k not in ("_xact_id", "project_id", "log_id")})]
    got = [r["id"] for r in (await store.fetch(p.id, filter=text)).rows]
    assert got == want
    assert sorted(got) == FILTERS[text]


# -- the same operations on both engines, compared result for result ---------------------------

def _random_piece(rand: random.Random, ids: list[str]) -> dict[str, Any]:
    row_id = rand.choice(ids)
    roll = rand.random()
    fields: dict[str, Any] = {"id": row_id, "created": CREATED}
    if roll < 0.1:
        return {"id": row_id, "_object_delete": True}
    if roll < 0.5:
        fields.update({"span_id": f"s-{row_id}", "root_span_id": rand.choice(["t1", "t2"]),
                       "span_parents": rand.choice([None, ["s-a"]])})
    else:
        fields["_is_merge"] = True
    for name, values in [("metadata", [{"env": "prod"}, {"env": "dev", "n": 3},
                                       {"n": rand.randrange(5)}, {"o": {"k": "v"}}]),
                         ("tags", [["a"], ["b", "a"], []]),
                         ("scores", [{"q": 0.5}, {"q": None}, {"r": 1}]),
                         ("output", ["refund", {"x": 1}, None, 7])]:
        if rand.random() < 0.5:
            fields[name] = rand.choice(values)
    return fields


@pytest.mark.parametrize("settle_after", [None, 2])
async def test_random_operations_give_identical_results_on_both_engines(
        both: tuple[Store, Store], settle_after: int | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same 60 random batches leave both engines with identical pages, cursors,
    _xact_ids, filters, traces and latest_xact after every batch; and SQLite's id index
    whole, also when (``settle_after``) its ids keep moving between its two tables."""
    if settle_after is not None:
        monkeypatch.setattr(_sqlite_ids, "SETTLE_AFTER", settle_after)
        monkeypatch.setattr(_sqlite_ids, "MAX_SETTLE", 3)
    sqlite, postgres = both
    assert isinstance(sqlite, SqliteStore)
    rand = random.Random(7)
    ids = [f"r{i}" for i in range(12)]
    projects = [(await default_org_project(sqlite, "p")).id,
                (await default_org_project(postgres, "p")).id]
    filters = [None, "metadata.env = 'prod'", "tags includes 'a'", "metadata.n > 1",
               "output ILIKE '%REF%'", "scores.q IS NOT NULL", "NOT metadata.env = 'dev'",
               "id = 'r3'", "id = 'r5' AND metadata.env = 'prod'"]

    def same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
        strip = [{k: v for k, v in r.items() if k != "project_id"} for r in a]
        assert strip == [{k: v for k, v in r.items() if k != "project_id"} for r in b]

    for step in range(60):
        batch = [_random_piece(rand, ids) for _ in range(rand.randrange(1, 6))]
        for s, pid in zip((sqlite, postgres), projects, strict=True):
            await s.write([Piece(pid, dict(row)) for row in batch])
        for text in filters:
            pages = [await s.fetch(pid, filter=text, limit=3)
                     for s, pid in zip((sqlite, postgres), projects, strict=True)]
            same(pages[0].rows, pages[1].rows)
            assert pages[0].cursor == pages[1].cursor, (step, text)
        assert await sqlite.latest_xact(projects[0]) == await postgres.latest_xact(projects[1])
        for root in ("t1", "t2"):
            same(await sqlite.trace(projects[0], root), await postgres.trace(projects[1], root))
        same(await all_rows(sqlite, projects[0], limit=4),
             await all_rows(postgres, projects[1], limit=4))
        assert not id_index_problems(sqlite.path), step
    assert len(await all_rows(postgres, projects[1])) > 3


async def test_project_and_key_operations_match_across_engines(
        both: tuple[Store, Store]) -> None:
    """The same org/project/key calls answer the same on both engines (ids aside)."""
    answers = []
    for s in both:
        org = await s.org("o", create=True)
        assert org is not None
        for name in ["x", "y", "x"]:
            await s.project(org.id, name, create=True)
        await s.add_key(ApiKey("k1", "n", org.id, "o", ("x",), "t1"), "h1")
        await s.add_key(ApiKey("k0", "n", org.id, "o", None, "t0"), "h0")
        await s.revoke_key("k1")
        answers.append((
            [p.name for p in await s.projects(org.id)],
            [(k.id, k.projects, k.revoked is not None) for k in await s.keys()],
            await s.has_keys(), (await s.key_by_hash("h0")) is not None,
            await s.project(org.id, "zz"), await s.org("none")))
    assert answers[0] == answers[1]


async def test_ids_are_arbitrary_strings(store: Store) -> None:
    """Row ids with quotes, unicode and SQL-looking text round-trip and filter by id."""
    p = await default_org_project(store)
    odd = ["it's", 'say "hi"', "é😀", "a'); DROP TABLE x; --", "%_\\", str(uuid.uuid4())]
    await store.write([Piece(p.id, span(i)) for i in odd])
    assert sorted(r["id"] for r in (await store.fetch(p.id)).rows) == sorted(odd)
    for i in odd:
        quoted = "'" + i.replace("'", "''") + "'"
        assert [r["id"] for r in (await store.fetch(p.id, filter=f"id = {quoted}")).rows] == [i]


async def test_equality_pages_reach_old_matches_past_the_newest_rows(store: Store) -> None:
    """A value only in old rows (beyond the newest few hundred) and one spread across both
    are paged completely, newest first, with no row twice."""
    p = await default_org_project(store)
    rows = []
    for i in range(1500):
        meta: dict[str, Any] = {"i": i, "mod": i % 3}
        if i % 97 == 0 and i < 700:
            meta["rare"] = "yes"
        if i % 40 == 0:
            meta["spread"] = "yes"
        rows.append(span(f"r{i:04d}", metadata=meta, root=f"t{i}",
                         tags=["odd"] if i % 2 else ["even"]))
    for start in range(0, 1500, 500):
        await store.write([Piece(p.id, r) for r in rows[start:start + 500]])
    for text, want in [
            ("metadata.rare = 'yes'", [i for i in range(700) if i % 97 == 0]),
            ("metadata.spread = 'yes'", [i for i in range(1500) if i % 40 == 0]),
            ("metadata.spread = 'yes' AND tags includes 'even' AND metadata.mod = 1",
             [i for i in range(1500) if i % 40 == 0 and i % 3 == 1]),
            ("metadata.rare = 'nope'", [])]:
        for limit in (1, 4, 50):
            got = [r["id"] for r in await all_rows(store, p.id, filter=text, limit=limit)]
            assert got == [f"r{i:04d}" for i in reversed(want)], (text, limit)
