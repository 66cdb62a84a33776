"""Both engines alike: project settings (stored, merged, reset) and sessions (traces grouped
by the session key on their root spans, latest first, paged, with totals; docs/protocol.md,
"Sessions")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engines import make_store
from older_database import as_older

from spanlog.server.store._engine import Store
from spanlog.server.store._errors import BadRequest, NotFound
from spanlog.server.store._records import Piece
from spanlog.server.store._sessions import SessionQuery, parse_cursor
from spanlog.server.store._settings import check_settings, session_path, with_defaults
from store_projects import default_org_project

SESSION = ("metadata", "session_id")


def turn(trace: str, start: float, session: Any, *, key: str = "session_id",
         tokens: int = 10, error: bool = False) -> list[dict[str, Any]]:
    """One chat turn: a root holding the session id and an LLM call below it."""
    return [
        {"id": f"{trace}-root", "span_id": f"{trace}-r", "root_span_id": trace,
         "span_attributes": {"name": "turn", "type": "task"}, "input": f"q {trace}",
         "output": f"a {trace}", "metadata": {key: session},
         "metrics": {"start": start, "end": start + 2}},
        {"id": f"{trace}-llm", "span_id": f"{trace}-l", "root_span_id": trace,
         "span_parents": [f"{trace}-r"], "span_attributes": {"name": "chat", "type": "llm"},
         # A child with another session id does not make its trace part of that session.
         "metadata": {key: "not-this-one"},
         "metrics": {"start": start + 0.5, "end": start + 1.5, "tokens": tokens},
         **({"error": "boom"} if error else {})},
    ]


async def _log(store: Store, project_id: str, rows: list[dict[str, Any]]) -> None:
    await store.write([Piece(project_id, row) for row in rows])


async def test_settings_are_stored_per_project_and_reset_with_null(store: Store) -> None:
    a = await default_org_project(store, "settings-a")
    b = await default_org_project(store, "settings-b")
    assert await store.project_settings(a.id) == {}
    assert with_defaults({}) == {"session_key": "metadata.session_id"}
    changed = await store.change_project_settings(
        a.id, check_settings({"session_key": " metadata.conversation.id "}))
    assert changed == {"session_key": "metadata.conversation.id"}
    assert await store.project_settings(a.id) == changed
    assert await store.project_settings(b.id) == {}
    assert await store.change_project_settings(a.id, check_settings(
        {"session_key": None})) == {}
    assert await store.project_settings(a.id) == {}
    with pytest.raises(NotFound):
        await store.project_settings("no-such-project")


@pytest.mark.parametrize(("value", "message"), [
    ({"session_key": "input.x"}, "session_key: 'input.x' must be a path into metadata"),
    ({"session_key": "metadata"}, "must be a path into metadata"),
    ({"session_key": "metadata.a[0]"}, "each part must be an object key"),
    ({"session_key": "metadata.a = 'x'"}, "is no field path"),
    ({"session_key": 5}, "session_key: must be a path"),
    ({"colour": "blue"}, "settings.colour: no such setting"),
    ({}, "settings: must be a non-empty object"),
])
def test_bad_settings_say_what_is_wrong(value: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message.replace("[", r"\[").replace("(", r"\(")):
        check_settings(value)


def test_session_keys_are_paths_into_metadata() -> None:
    assert session_path("metadata.session_id") == SESSION
    assert session_path('metadata."chat id".v2') == ("metadata", "chat id", "v2")


async def test_sessions_group_traces_latest_first_with_totals(store: Store) -> None:
    p = await default_org_project(store, "sessions")
    await _log(store, p.id, [
        *turn("t1", 100.0, "alpha", tokens=5),
        *turn("t2", 200.0, "beta"),
        *turn("t3", 300.0, "alpha", tokens=7, error=True),
        *turn("t4", 400.0, "gamma"),
        *turn("t5", 150.0, 42),        # not a string: in no session
        *turn("t6", 160.0, None),
        {"id": "lonely", "span_id": "x", "root_span_id": "t7", "metrics": {"start": 500.0}},
    ])
    sessions, cursor = await store.sessions(p.id, SessionQuery(SESSION))
    assert cursor is None
    assert [s["session_id"] for s in sessions] == ["gamma", "alpha", "beta"]
    alpha = sessions[1]
    assert (alpha["traces"], alpha["first_start"], alpha["last_start"]) == (2, 100.0, 300.0)
    totals = alpha["totals"]
    assert (totals["spans"], totals["llm_calls"], totals["tokens"], totals["errors"]) == \
        (4, 2, 12, 1)
    assert totals["duration"] == 202.0  # first start to last end
    one, _ = await store.sessions(p.id, SessionQuery(SESSION, session_id="alpha"))
    assert one == [alpha]
    assert (await store.sessions(p.id, SessionQuery(SESSION, session_id="zeta")))[0] == []
    known, _ = await store.sessions(p.id, SessionQuery(SESSION, session_id="alpha",
                                                       traces=("t1", "t3")))
    assert known == [alpha]
    part, _ = await store.sessions(p.id, SessionQuery(SESSION, traces=("t3", "t4")))
    assert [(s["session_id"], s["traces"], s["totals"]["tokens"]) for s in part] == [
        ("gamma", 1, 10), ("alpha", 1, 7)]
    ranged, _ = await store.sessions(p.id, SessionQuery(SESSION, since=250.0, until=450.0))
    assert [(s["session_id"], s["traces"]) for s in ranged] == [("gamma", 1), ("alpha", 1)]


async def test_sessions_page_with_a_cursor_and_ties(store: Store) -> None:
    """Pages follow each other without gaps or repeats, sessions with the same latest start
    included (ordered by session id, byte order, descending)."""
    p = await default_org_project(store, "session-pages")
    rows: list[dict[str, Any]] = []
    for i in range(7):
        rows += turn(f"p{i}", 1000.0 + (i // 2), f"s-{i}")  # pairs share a start
    await _log(store, p.id, rows)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page, cursor = await store.sessions(
            p.id, SessionQuery(SESSION, limit=2, after=parse_cursor(cursor)))
        seen += [s["session_id"] for s in page]
        if cursor is None:
            break
    assert seen == ["s-6", "s-5", "s-4", "s-3", "s-2", "s-1", "s-0"]


async def test_a_nested_session_key(store: Store) -> None:
    p = await default_org_project(store, "session-nested")
    await _log(store, p.id, [
        {"id": "n1", "span_id": "a", "root_span_id": "n1t", "metrics": {"start": 1.0},
         "metadata": {"chat": {"id": "c1"}}},
        {"id": "n2", "span_id": "b", "root_span_id": "n2t", "metrics": {"start": 2.0},
         "metadata": {"chat": {"id": "c1"}, "session_id": "other"}}])
    sessions, _ = await store.sessions(p.id, SessionQuery(("metadata", "chat", "id")))
    assert [(s["session_id"], s["traces"]) for s in sessions] == [("c1", 2)]


@pytest.mark.parametrize("cursor", ["nope", "[1]", '["a", "b"]', "[1, 2]", "[NaN, \"x\"]"])
def test_bad_session_cursors(cursor: str) -> None:
    with pytest.raises(BadRequest, match="cursor: not a cursor this collector returned"):
        parse_cursor(cursor)


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_an_older_database_gets_the_settings_table(engine: str, tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    """A database from before project settings (SQLite: no table; PostgreSQL: schema
    version 3) takes settings once a collector has opened it."""
    store = await make_store(engine, request, tmp_path, "old")
    p = await default_org_project(store, "old")
    store = await as_older(store, sqlite="DROP TABLE project_settings",
                           postgres="DROP TABLE spanlog_project_settings; "
                                    "DELETE FROM spanlog_schema WHERE version = 4")
    await store.start()
    try:
        assert await store.change_project_settings(
            p.id, {"session_key": "metadata.chat"}) == {"session_key": "metadata.chat"}
    finally:
        await store.close()
