"""API keys, organizations, project scopes and open mode."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from spanlog_server_http import call

from spanlog.server.http._auth import create_key
from spanlog.server.http._runner import BackgroundCollector, StartupRefused
from spanlog.server.store.sqlite._store import SqliteStore


def _key(server: BackgroundCollector, org: str, projects: list[str] | None = None) -> str:
    _, token = server.call(lambda: create_key(server.store, org, projects=projects))
    return str(token)


def _log(server: BackgroundCollector, token: str | None, project: str, row_id: str) -> int:
    status, _ = call(server.url, "POST", "/logs3",
                     {"rows": [{"id": row_id, "project_name": project}]}, token=token)
    return status


def test_open_mode_accepts_any_token_until_a_key_exists(make_collector):
    """On loopback with no keys any token (or none) works; the first key locks it."""
    server = make_collector()
    assert _log(server, None, "Global", "a") == 200
    assert _log(server, "whatever", "Global", "b") == 200
    status, body = call(server.url, "POST", "/api/apikey/login")
    assert status == 200 and body["org_info"][0]["name"] == "default"
    token = _key(server, "default")
    status, body = call(server.url, "POST", "/logs3",
                        {"rows": [{"id": "c", "project_name": "Global"}]})
    assert status == 401 and "missing Authorization" in body["error"]
    assert _log(server, "whatever", "Global", "d") == 401
    assert _log(server, token, "Global", "e") == 200


def test_project_scoped_key_gets_403_outside_scope(make_collector):
    """A key limited to 'prod' cannot read or write 'staging' (403) and only lists 'prod'."""
    server = make_collector()
    admin = _key(server, "acme")
    prod_only = _key(server, "acme", ["prod"])
    assert _log(server, admin, "staging", "s1") == 200
    assert _log(server, prod_only, "prod", "p1") == 200
    status, body = call(server.url, "POST", "/logs3",
                        {"rows": [{"id": "p2", "project_name": "prod"},
                                  {"id": "s2", "project_name": "staging"}]}, token=prod_only)
    assert status == 403 and "'staging'" in body["error"]
    _, staging = call(server.url, "POST", "/v1/project", {"name": "staging"}, token=admin)
    for method, path, body in [
            ("POST", f"/v1/project_logs/{staging['id']}/fetch", {}),
            ("GET", f"/v1/project/{staging['id']}", None),
            ("POST", f"/v1/project_logs/{staging['id']}/insert", {"events": [{"id": "x"}]}),
            ("POST", f"/v1/project_logs/{staging['id']}/feedback",
             {"feedback": [{"id": "s1", "scores": {"a": 1}}]}),
            ("GET", f"/v1/project_logs/{staging['id']}/trace/abc", None),
            ("POST", "/logs3", {"rows": [{"id": "x", "project_id": staging["id"]}]}),
            ("POST", "/v1/project", {"name": "staging"})]:
        status, reply = call(server.url, method, path, body, token=prod_only)
        assert status == 403, (method, path, reply)
    _, listed = call(server.url, "GET", "/v1/project", token=prod_only)
    assert [p["name"] for p in listed["objects"]] == ["prod"]
    _, page = call(server.url, "POST", f"/v1/project_logs/{staging['id']}/fetch", {},
                   token=admin)
    assert [r["id"] for r in page["events"]] == ["s1"]


def test_keys_of_other_org_cannot_touch_project(make_collector):
    """An organization's projects are invisible to another organization's keys (403)."""
    server = make_collector()
    acme, other = _key(server, "acme"), _key(server, "other")
    _, project = call(server.url, "POST", "/v1/project", {"name": "Global"}, token=acme)
    status, _ = call(server.url, "POST", f"/v1/project_logs/{project['id']}/fetch", {},
                     token=other)
    assert status == 403
    _, mine = call(server.url, "POST", "/v1/project", {"name": "Global"}, token=other)
    assert mine["id"] != project["id"]
    status, body = call(server.url, "POST", "/v1/project", {"name": "x", "org_name": "acme"},
                        token=other)
    assert status == 403 and "organization 'other'" in body["error"]
    _, login = call(server.url, "POST", "/api/apikey/login", token=other)
    assert [o["name"] for o in login["org_info"]] == ["other"]


def test_revoked_key_is_401(make_collector):
    """A revoked key stops working at once with a 401 that says it was revoked."""
    server = make_collector()
    token = _key(server, "acme")
    assert _log(server, token, "Global", "a") == 200
    [key] = server.call(server.store.keys)
    server.call(lambda: server.store.revoke_key(key.id))
    status, body = call(server.url, "POST", "/api/apikey/login", token=token)
    assert status == 401 and "revoked" in body["error"]


def test_a_key_made_by_another_process_ends_open_mode_at_once(make_collector):
    """A key and organization created in the database by another store (what `spanlog keys
    create` does while a collector serves the file) take effect on the very next request:
    the collector keeps orgs and projects it has seen, never the absence of keys or orgs."""
    server = make_collector()
    assert _log(server, None, "Global", "a") == 200  # open mode: the default org is known

    async def create_elsewhere() -> str:
        store = SqliteStore(server.db_path)
        await store.start()
        try:
            return (await create_key(store, "acme"))[1]
        finally:
            await store.close()

    token = asyncio.run(create_elsewhere())
    assert _log(server, None, "Global", "b") == 401
    assert _log(server, token, "Global", "c") == 200
    _, login = call(server.url, "POST", "/api/apikey/login", token=token)
    assert [o["name"] for o in login["org_info"]] == ["acme"]


def test_non_loopback_bind_needs_a_key(tmp_path: Path):
    """Binding to a non-loopback address refuses to start without keys, starts with one."""
    db = str(tmp_path / "s.sqlite3")
    with pytest.raises(StartupRefused, match="spanlog keys create"):
        BackgroundCollector(db, host="0.0.0.0").start()

    async def add_key() -> str:
        store = SqliteStore(db)
        await store.start()
        try:
            return (await create_key(store, "acme"))[1]
        finally:
            await store.close()

    token = asyncio.run(add_key())
    server = BackgroundCollector(db, host="0.0.0.0").start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        assert call(url, "POST", "/api/apikey/login")[0] == 401
        assert call(url, "POST", "/api/apikey/login", token=token)[0] == 200
    finally:
        server.stop()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spanlog.cli", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.slow  # four `spanlog keys` processes
def test_keys_cli_create_list_revoke(tmp_path: Path, make_collector):
    """`spanlog keys create|list|revoke` manage keys in the database a collector serves."""
    db = str(tmp_path / "c.sqlite3")
    created = _cli("keys", "create", "--org", "acme", "--project", "prod", "--name", "ci",
                   "--db", db)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("sl-") and "shown only once" in created.stderr
    listed = _cli("keys", "list", "--db", db)
    assert "org=acme" in listed.stdout and "projects=prod" in listed.stdout
    assert token not in listed.stdout and "active" in listed.stdout
    key_id = listed.stdout.split()[0]
    for file in tmp_path.iterdir():  # the database and its WAL
        assert token.encode() not in file.read_bytes(), f"the token is stored in {file}"

    server = make_collector("c")
    assert server.db_path == db
    assert _log(server, token, "prod", "a") == 200
    assert _log(server, token, "staging", "b") == 403
    revoked = _cli("keys", "revoke", key_id, "--db", db)
    assert revoked.returncode == 0 and key_id in revoked.stdout
    assert _log(server, token, "prod", "c") == 401
    missing = _cli("keys", "revoke", "key_nope", "--db", db)
    assert missing.returncode == 2 and "no key with id 'key_nope'" in missing.stderr
