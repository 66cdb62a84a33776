"""The `spanlog` command on PostgreSQL: serve, keys and migrate as subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pg_cluster import Cluster, new_database
from pg_serve import start_serve, stop

import spanlog


def _spanlog(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spanlog.cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def _post(base: str, path: str, body: Any, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def _with_password(url: str) -> str:
    # The throwaway cluster trusts local connections, so any password gets in: this only
    # checks the password never reaches the output.
    return url.replace("spanlog@", "spanlog:s3cret-pw@", 1)


async def test_serve_postgres_takes_sdk_rows_and_keys_create_locks_it(pg_cluster: Cluster):
    """`serve --postgres` prints the redacted URL and stores an SDK's rows; a key made by
    `keys create --postgres` then works on it and keyless calls are refused."""
    url = _with_password(await new_database(pg_cluster))
    proc, base, banner = start_serve(url, "--postgres-pool-size", "4")
    try:
        assert "database: postgresql://spanlog:***@127.0.0.1:" in banner, banner
        assert "s3cret-pw" not in banner and "auth: open" in banner
        logger = spanlog.init_logger(project="cli-pg", api_url=base, api_key="any",
                                     async_flush=False, set_current=False)
        try:
            with logger.start_span(name="root", type="task") as span:
                span.log(input="hello", output="world", scores={"ok": 1})
            assert logger.flush(timeout=30)
        finally:
            logger.close(timeout=30)
        status, project = _post(base, "/v1/project", {"name": "cli-pg"})
        assert status == 200, project
        status, page = _post(base, f"/v1/project_logs/{project['id']}/fetch", {})
        assert status == 200, page
        assert [(r["input"], r["output"], r["scores"]) for r in page["events"]] == [
            ("hello", "world", {"ok": 1})]

        created = _spanlog("keys", "create", "--org", "acme", "--postgres", url)
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        assert token and "created key_" in created.stderr
        listed = _spanlog("keys", "list", "--json", env={"SPANLOG_POSTGRES_URL": url})
        assert listed.returncode == 0, listed.stderr
        assert [json.loads(line)["org"] for line in listed.stdout.splitlines()] == ["acme"]
        assert _post(base, "/v1/project", {"name": "x"})[0] == 401
        assert _post(base, "/v1/project", {"name": "x"}, token=token)[0] == 200
    finally:
        assert stop(proc) == 0


def test_bad_postgres_url_fails_with_a_clear_message():
    """A malformed or unreachable PostgreSQL URL (flag or $SPANLOG_POSTGRES_URL) exits 2
    saying what is wrong, without printing the password."""
    wrong = _spanlog("serve", "--port", "0", "--postgres", "mysql://root@db/x")
    assert wrong.returncode == 2 and "must look like postgresql://" in wrong.stderr
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = f"postgresql://spanlog:s3cret-pw@127.0.0.1:{port}/nowhere"
    served = _spanlog("serve", "--port", "0", "--postgres", down)
    assert served.returncode == 2, served.stderr
    assert "cannot connect to PostgreSQL at postgresql://spanlog:***@" in served.stderr
    assert "s3cret-pw" not in served.stderr + served.stdout
    keys = _spanlog("keys", "list", env={"SPANLOG_POSTGRES_URL": down})
    assert keys.returncode == 2 and "cannot connect to PostgreSQL" in keys.stderr
    pool = _spanlog("keys", "list", "--postgres", down, "--postgres-pool-size", "1")
    assert pool.returncode == 2 and "pool_size: must be an integer >= 2" in pool.stderr


async def test_migrate_is_a_spanlog_command(pg_cluster: Cluster, tmp_path: Path):
    """`spanlog migrate` copies a SQLite collector's keys into PostgreSQL, where
    `keys list --postgres` finds them."""
    db = str(tmp_path / "source.sqlite3")
    made = _spanlog("keys", "create", "--org", "moved", "--name", "old", "--db", db)
    assert made.returncode == 0, made.stderr
    url = await new_database(pg_cluster)
    moved = _spanlog("migrate", "--from", f"sqlite:{db}", "--to", f"postgres:{url}")
    assert moved.returncode == 0, moved.stderr
    assert "verified" in moved.stderr
    listed = _spanlog("keys", "list", "--json", "--postgres", url)
    assert listed.returncode == 0, listed.stderr
    assert [(k["org"], k["name"]) for k in map(json.loads, listed.stdout.splitlines())] == [
        ("moved", "old")]
