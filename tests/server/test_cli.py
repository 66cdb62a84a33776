"""The `spanlog serve` and `spanlog logs` commands, run as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from spanlog_server_http import call, start_serve


def logs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spanlog.cli", "logs", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_serve_prints_address_and_stops_on_sigterm(tmp_path: Path):
    """`spanlog serve` says where it listens, where the viewer is and how to log in, and
    exits 0 on SIGTERM."""
    proc, url, banner = start_serve(str(tmp_path / "s.sqlite3"))
    try:
        assert call(url, "GET", "/version")[0] == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert f"SPANLOG_API_URL={url}" in banner and "auth: open" in banner
    assert f"  viewer: {url}/\n" in banner
    assert str(tmp_path / "s.sqlite3") in banner and "stopped" in out


def test_serve_refuses_public_bind_without_keys(tmp_path: Path):
    """`spanlog serve --host 0.0.0.0` with no keys exits 2 with a message saying what to do."""
    proc = subprocess.run([sys.executable, "-m", "spanlog.cli", "serve", "--host", "0.0.0.0",
                           "--port", "0", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "refusing to listen on 0.0.0.0" in proc.stderr and "keys create" in proc.stderr


def test_logs_prints_table_json_and_filters(collector):
    """`spanlog logs` prints newest rows as a table or JSON lines, filtered and limited."""
    pid = collector.project_id("cli-logs")
    rows = [{"id": f"r{i}", "project_id": pid, "input": f"question {i}", "output": f"answer {i}",
             "span_attributes": {"name": f"step{i}", "type": "llm"},
             "metadata": {"user_id": "u1" if i % 2 else "u2"}, "scores": {"ok": 1}}
            for i in range(5)]
    assert call(collector.url, "POST", "/logs3", {"rows": rows}, token=collector.api_key)[0] == 200
    env = {"SPANLOG_API_URL": collector.url, "SPANLOG_API_KEY": collector.api_key}
    table = logs("cli-logs", "--limit", "3", env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["CREATED", "NAME", "TYPE", "SCORES"]
    assert [line.split()[2] for line in lines[1:]] == ["step4", "step3", "step2"]
    assert "question 4" in lines[1] and "ok=1" in lines[1]
    as_json = logs("cli-logs", "--json", "--filter", "metadata.user_id = 'u1'", env=env)
    assert as_json.returncode == 0, as_json.stderr
    assert [json.loads(line)["id"] for line in as_json.stdout.splitlines()] == ["r3", "r1"]


def test_logs_errors_say_what_is_wrong(collector):
    """Unknown project, bad filter, bad key and no collector each exit 2 with a message."""
    env = {"SPANLOG_API_URL": collector.url, "SPANLOG_API_KEY": collector.api_key}
    missing = logs("no-such-project", env=env)
    assert missing.returncode == 2 and "no project named 'no-such-project'" in missing.stderr
    collector.project_id("cli-errors")
    bad = logs("cli-errors", "--filter", "metadata.x ==", env=env)
    assert bad.returncode == 2 and "400: filter:" in bad.stderr
    denied = logs("cli-errors", env={**env, "SPANLOG_API_KEY": "wrong"})
    assert denied.returncode == 2 and "401: invalid API key" in denied.stderr
    down = logs("--url", "http://127.0.0.1:9", env=env)
    assert down.returncode == 2 and "cannot reach the collector" in down.stderr


def test_serve_refuses_a_database_from_a_newer_spanlog(tmp_path: Path):
    """A database whose index is newer than this spanlog: exit 2 with a message, no crash."""
    db = tmp_path / "new.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
                       "CREATE TABLE rows (xact INTEGER PRIMARY KEY);"
                       "INSERT INTO meta VALUES ('index_version', 99);")
    conn.commit()
    conn.close()
    proc = subprocess.run([sys.executable, "-m", "spanlog.cli", "serve", "--port", "0",
                           "--db", str(db)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "index version 99" in proc.stderr and "upgrade spanlog" in proc.stderr
