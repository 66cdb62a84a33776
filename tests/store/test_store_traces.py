"""Both engines alike: filters on fields kept outside the row JSON, comments linked into
their target's trace, and per-trace score averages on root listings."""

from __future__ import annotations

from typing import Any

from spanlog.server.query import evaluate, parse
from spanlog.server.store._engine import Store
from spanlog.server.store._records import Piece, Project
from store_projects import default_org_project, ids

CREATED = "2024-01-01T00:00:00+00:00"


# -- _xact_id and project_id ------------------------------------------------------------------

async def test_filters_on_xact_id_and_project_id(store: Store) -> None:
    """_xact_id and project_id (kept outside the row JSON) filter like any other field:
    exactly what the reference evaluator selects from the rows as fetched, across pages."""
    p = await default_org_project(store)
    other = await default_org_project(store, "other")
    await store.write([Piece(p.id, {"id": f"r{i}", "created": CREATED,
                                    "metadata": {"i": i}}) for i in range(6)])
    await store.write([Piece(other.id, {"id": "elsewhere", "created": CREATED})])
    rows = (await store.fetch(p.id, limit=100)).rows
    xacts = [r["_xact_id"] for r in rows]
    filters = [
        f"_xact_id = '{xacts[2]}'", f"_xact_id != '{xacts[2]}'", f"_xact_id > '{xacts[3]}'",
        "_xact_id = '007'", "_xact_id = 'nope'", "_xact_id = '99999999999999999999'",
        f"_xact_id = '{xacts[1]}' AND metadata.i = 4", f"_xact_id = '{xacts[1]}' OR id = 'r0'",
        f"project_id = '{p.id}'", f"project_id = '{other.id}'",
        f"NOT project_id = '{other.id}' AND metadata.i >= 3", "project_id LIKE '%-%'",
        "project_id ILIKE '%-%'", "project_id IS NULL",
        "_xact_id IS NOT NULL AND metadata.i = 2",
    ]
    for text in filters:
        expected = [r["id"] for r in rows if evaluate(parse(text), r)]
        assert await ids(store, p.id, text, limit=2) == expected, text
    assert await ids(store, p.id, f"_xact_id = '{xacts[2]}'") == [rows[2]["id"]]
    assert await ids(store, p.id, f"project_id = '{p.id}'") == [r["id"] for r in rows]
    assert await ids(store, p.id, f"project_id = '{other.id}'") == []
    assert await ids(store, p.id, f"project_id = '{p.id}'", roots_only=True) == [
        r["id"] for r in rows]


# -- comments -----------------------------------------------------------------------------

def spans(trace: str = "t1", **child: Any) -> list[dict[str, Any]]:
    return [
        {"id": "root", "span_id": "s-root", "root_span_id": trace, "span_parents": None,
         "scores": {"q": 1}, "metrics": {"start": 1.0}, "created": CREATED},
        {"id": "child", "span_id": "s-child", "root_span_id": trace, "span_parents": ["s-root"],
         "scores": {"q": 0}, "metrics": {"start": 2.0}, "created": CREATED, **child},
    ]


def comment(row_id: str, target: str, **more: Any) -> dict[str, Any]:
    # Scores on a comment row must never count: they are here to prove it.
    return {"id": row_id, "origin": {"id": target}, "comment": {"text": f"on {target}"},
            "created": CREATED, "scores": {"q": 0.0}, **more}


async def check_linked(store: Store, p: Project, comment_ids: list[str]) -> None:
    """The comments hang under the child span in trace t1; no root or average changes."""
    rows = await store.trace(p.id, "t1")
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {"root", "child", *comment_ids}
    for comment_id in comment_ids:
        assert by_id[comment_id]["root_span_id"] == "t1"
        assert by_id[comment_id]["span_parents"] == ["s-child"]
    roots = (await store.fetch(p.id, roots_only=True)).rows
    assert [(r["id"], r["scores_avg"]) for r in roots] == [("root", {"q": 0.5})]


async def test_comment_after_its_target_joins_the_trace(store: Store) -> None:
    """A comment on a stored span gets its root_span_id and hangs under it, never a root."""
    p = await default_org_project(store)
    await store.write([Piece(p.id, row) for row in spans()])
    await store.write([Piece(p.id, comment("c1", "child"))])
    await check_linked(store, p, ["c1"])
    # Written again (a retried request): still in the trace.
    await store.write([Piece(p.id, comment("c1", "child"))])
    await check_linked(store, p, ["c1"])


async def test_comment_before_its_target_waits_then_joins(store: Store) -> None:
    """A comment stored first has no trace; when its target's trace arrives the comment is
    rewritten into it with a newer transaction id than the batch's own rows."""
    p = await default_org_project(store)
    await store.write([Piece(p.id, comment("c1", "child")), Piece(p.id, comment("c2", "x"))])
    [waiting] = [r for r in (await store.fetch(p.id)).rows if r["id"] == "c1"]
    assert waiting.get("root_span_id") is None and waiting.get("span_parents") is None
    # Feedback merged onto the target first gives it no trace: the comment keeps waiting.
    await store.write([Piece(p.id, {"id": "child", "_is_merge": True, "tags": ["seen"]})])
    assert (await store.trace(p.id, "t1")) == []
    await store.write([Piece(p.id, row) for row in spans()])
    await check_linked(store, p, ["c1"])
    newest = (await store.fetch(p.id)).rows
    assert [r["id"] for r in newest][:3] == ["c1", "child", "root"]
    assert int(newest[0]["_xact_id"]) > int(waiting["_xact_id"])
    [other] = [r for r in newest if r["id"] == "c2"]
    assert other.get("root_span_id") is None


async def test_comment_and_target_in_one_batch_link_in_either_order(store: Store) -> None:
    """A comment and its target written in the same batch link whichever comes first."""
    p = await default_org_project(store)
    first, second = spans()
    await store.write([Piece(p.id, comment("c1", "child")), Piece(p.id, first),
                       Piece(p.id, second), Piece(p.id, comment("c2", "child"))])
    await check_linked(store, p, ["c1", "c2"])


async def test_comments_end_the_same_on_both_engines(both: tuple[Store, Store]) -> None:
    """The same writes in both arrival orders leave identical rows on both engines."""
    results = []
    for store in both:
        p = await default_org_project(store)
        await store.write([Piece(p.id, comment("early", "child"))])
        await store.write([Piece(p.id, row) for row in spans()])
        await store.write([Piece(p.id, comment("late", "root"))])
        rows = await all_rows_of(store, p)
        results.append(rows)
    assert results[0] == results[1]
    by_id = {r["id"]: r for r in results[0]}
    assert by_id["late"]["span_parents"] == ["s-root"]
    assert by_id["early"]["span_parents"] == ["s-child"]


async def all_rows_of(store: Store, p: Project) -> list[dict[str, Any]]:
    """Every row, newest first, without the fields that differ by engine."""
    page = await store.fetch(p.id, limit=1000)
    return [{k: v for k, v in r.items() if k not in ("_xact_id", "project_id")}
            for r in page.rows]


# -- roots_only averages ------------------------------------------------------------------

async def test_roots_only_carries_each_traces_score_averages(store: Store) -> None:
    """roots_only rows carry scores_avg over their whole trace (grandchildren too), per
    trace, on every page; comments and other traces never count."""
    p = await default_org_project(store)
    await store.write([Piece(p.id, row) for row in spans()])
    await store.write([
        Piece(p.id, {"id": "grand", "span_id": "s-grand", "root_span_id": "t1",
                     "span_parents": ["s-child"], "scores": {"q": 0.5, "r": 1},
                     "created": CREATED}),
        Piece(p.id, comment("c1", "root")),
        Piece(p.id, {"id": "r2", "span_id": "s-r2", "root_span_id": "t2",
                     "span_parents": None, "scores": {"q": 0.25}, "created": CREATED}),
        Piece(p.id, {"id": "r3", "span_id": "s-r3", "root_span_id": "t3",
                     "span_parents": None, "created": CREATED}),
        Piece(p.id, {"id": "lone", "span_id": "s-lone", "span_parents": None,
                     "scores": {"z": 1}, "created": CREATED}),
    ])
    want = [("lone", {"z": 1.0}), ("r3", {}), ("r2", {"q": 0.25}),
            ("root", {"q": 0.5, "r": 1.0})]
    page = (await store.fetch(p.id, roots_only=True)).rows
    assert [(r["id"], r["scores_avg"]) for r in page] == want
    paged: list[tuple[str, dict[str, float]]] = []
    cursor = None
    for _ in range(10):
        step = await store.fetch(p.id, roots_only=True, limit=1, cursor=cursor)
        paged.extend((r["id"], r["scores_avg"]) for r in step.rows)
        cursor = step.cursor
        if cursor is None:
            break
    assert paged == want
    filtered = await store.fetch(p.id, roots_only=True, filter="scores.q > 0.3")
    assert [(r["id"], r["scores_avg"]) for r in filtered.rows] == [want[3]]
    plain = (await store.fetch(p.id)).rows
    assert plain and all("scores_avg" not in r for r in plain)


async def test_postgres_upgrade_links_comments_written_before_version_2(pg_url: str) -> None:
    """A database from schema version 1 (comments left outside their trace) gets origin_id,
    and its waiting comments join their target's trace with new ids, on start."""
    import asyncpg

    from spanlog.server.store.postgres._store import PostgresStore

    store = PostgresStore(pg_url)
    await store.start()
    try:
        p = await default_org_project(store)
        await store.write([Piece(p.id, row) for row in spans()])
        await store.write([Piece(p.id, comment("c1", "child"))])
    finally:
        await store.close()
    conn = await asyncpg.connect(pg_url)
    try:  # back to what version 1 stored: the comment outside any trace
        await conn.execute(
            "UPDATE spanlog_rows SET root_span_id = NULL, "
            "data = data - 'root_span_id' - 'span_parents' WHERE id = 'c1';"
            "ALTER TABLE spanlog_rows DROP COLUMN origin_id;"
            "DELETE FROM spanlog_schema WHERE version = 2")
        before = await conn.fetchval("SELECT max(xact) FROM spanlog_rows")
    finally:
        await conn.close()
    store = PostgresStore(pg_url)
    await store.start()
    try:
        await check_linked(store, p, ["c1"])
        newest = (await store.fetch(p.id)).rows[0]
        assert newest["id"] == "c1" and int(newest["_xact_id"]) > before
        await store.write([Piece(p.id, comment("c2", "root"))])
        assert {r["id"] for r in await store.trace(p.id, "t1")} == {"root", "child", "c1", "c2"}
    finally:
        await store.close()
