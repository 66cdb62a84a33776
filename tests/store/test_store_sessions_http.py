"""Sessions and project settings over HTTP, on both engines (docs/protocol.md, "Sessions",
"Project settings"), and an export from PostgreSQL as from SQLite."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pg_cluster import new_schema
from test_store_sessions import turn

from spanlog.server.http._auth import create_key
from spanlog.server.http._runner import start_site
from spanlog.server.store._engine import Store
from spanlog.server.store._records import DEFAULT_ORG
from spanlog.server.store.postgres._store import PostgresStore
from spanlog.server.store.sqlite._store import SqliteStore


class Api:
    """A collector on a local port over a store of one engine, called with a key."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session = session
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.url + path, json=body,
                                        headers=self.headers) as resp:
            return resp.status, await resp.json()

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = await self.call(method, path, body)
        assert status == 200, answer
        return answer


@pytest.fixture(params=["sqlite", "postgres"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    if request.param == "sqlite":
        store: Store = SqliteStore(str(tmp_path / "http.sqlite3"))
    else:
        store = PostgresStore(await new_schema(request.getfixturevalue("pg_cluster")))
    runner, port = await start_site(store, "127.0.0.1", 0)
    try:
        _, token = await create_key(store, DEFAULT_ORG, name="tests")
        async with aiohttp.ClientSession() as session:
            yield Api(session, f"http://127.0.0.1:{port}", token)
    finally:
        await runner.cleanup()


async def _project(api: Api, name: str, rows: list[dict[str, Any]]) -> str:
    pid: str = (await api.ok("POST", "/v1/project", {"name": name}))["id"]
    for row in rows:
        row["project_id"] = pid
    await api.ok("POST", "/logs3", {"rows": rows})
    return pid


async def test_sessions_list_and_one_session_as_a_conversation(api: Api) -> None:
    pid = await _project(api, "chat", [
        *turn("t3", 300.0, "alpha", tokens=7), *turn("t1", 100.0, "alpha", tokens=5),
        *turn("t2", 200.0, "beta"), *turn("t4", 50.0, "odd id/with 'quote'")])
    listing = await api.ok("GET", f"/v1/project_logs/{pid}/sessions")
    assert listing["key"] == "metadata.session_id" and listing["cursor"] is None
    assert [s["session_id"] for s in listing["sessions"]] == [
        "alpha", "beta", "odd id/with 'quote'"]
    assert listing["sessions"][0]["totals"]["tokens"] == 12
    page = await api.ok("GET", f"/v1/project_logs/{pid}/sessions?limit=1")
    assert [s["session_id"] for s in page["sessions"]] == ["alpha"]
    rest = await api.ok("GET", f"/v1/project_logs/{pid}/sessions?limit=5&cursor="
                        + urllib.parse.quote(page["cursor"]))
    assert [s["session_id"] for s in rest["sessions"]] == ["beta", "odd id/with 'quote'"]
    one = await api.ok("GET", f"/v1/project_logs/{pid}/sessions/alpha")
    assert one["session"] == listing["sessions"][0] and one["truncated"] is False
    assert [t["id"] for t in one["traces"]] == ["t1-root", "t3-root"]  # start order
    assert [t["input"] for t in one["traces"]] == ["q t1", "q t3"]
    assert [t["trace_totals"]["tokens"] for t in one["traces"]] == [5, 7]
    odd = urllib.parse.quote("odd id/with 'quote'", safe="")
    assert [t["id"] for t in (await api.ok(
        "GET", f"/v1/project_logs/{pid}/sessions/{odd}"))["traces"]] == ["t4-root"]
    status, answer = await api.call("GET", f"/v1/project_logs/{pid}/sessions/zeta")
    assert status == 404 and "no session 'zeta'" in answer["error"], answer


async def test_the_session_key_is_a_project_setting(api: Api) -> None:
    pid = await _project(api, "keyed", [*turn("k1", 10.0, "c-1", key="conversation"),
                                        *turn("k2", 20.0, "s-1")])
    base = f"/v1/project/{pid}/settings"
    assert await api.ok("GET", base) == {"session_key": "metadata.session_id"}
    assert await api.ok("PATCH", base, {"session_key": "metadata.conversation"}) == {
        "session_key": "metadata.conversation"}
    listing = await api.ok("GET", f"/v1/project_logs/{pid}/sessions")
    assert listing["key"] == "metadata.conversation"
    assert [s["session_id"] for s in listing["sessions"]] == ["c-1"]
    one = await api.ok("GET", f"/v1/project_logs/{pid}/sessions/c-1")
    assert [t["id"] for t in one["traces"]] == ["k1-root"]
    assert await api.ok("PATCH", base, {"session_key": None}) == {
        "session_key": "metadata.session_id"}
    for body, message in [({"session_key": "output.x"}, "must be a path into metadata"),
                          ({"theme": "dark"}, "settings.theme: no such setting"),
                          ([1], "body: must be a JSON object")]:
        status, answer = await api.call("PATCH", base, body)
        assert status == 400 and message in answer["error"], answer


@pytest.mark.parametrize(("query", "message"), [
    ("limit=0", "limit: must be an integer from 1 to 200"),
    ("limit=x", "limit: must be an integer"),
    ("cursor=abc", "cursor: not a cursor"),
    ("since=later", "since: 'later' is no time"),
])
async def test_bad_session_listings_say_what_is_wrong(api: Api, query: str,
                                                      message: str) -> None:
    pid = await _project(api, "bad", [])
    status, answer = await api.call("GET", f"/v1/project_logs/{pid}/sessions?{query}")
    assert status == 400 and answer["error"].startswith(message), answer


async def test_sessions_and_settings_need_a_key(api: Api) -> None:
    pid = await _project(api, "locked", [])
    for path in (f"/v1/project_logs/{pid}/sessions", f"/v1/project_logs/{pid}/sessions/x",
                 f"/v1/project/{pid}/settings"):
        async with api.session.get(api.url + path) as resp:
            assert resp.status == 401, path


async def test_export_reads_the_same_rows_on_both_engines(api: Api) -> None:
    pid = await _project(api, "export", [r for i in range(3) for r in turn(f"e{i}", float(i), "s")])
    async with api.session.get(f"{api.url}/v1/project_logs/{pid}/export?roots_only=true",
                               headers=api.headers) as resp:
        assert resp.status == 200
        lines = (await resp.text()).splitlines()
    assert len(lines) == 3 and all('"trace_totals"' in line for line in lines)
