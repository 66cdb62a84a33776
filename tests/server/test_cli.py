"""The `spanlog serve` and `spanlog logs` commands, run as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from spanlog_server_http import call, start_serve

pytestmark = pytest.mark.slow  # a `spanlog` process or more per test


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


def _span(pid: str, trace: str, n: int, parent: int | None, start: float, **fields: Any
          ) -> dict[str, Any]:
    """A span row of trace ``trace`` (one hex digit), span ``n``, under span ``parent``."""
    metrics = {"start": start, "end": start + 1, **fields.pop("metrics", {})}
    return {"id": f"{trace}-{n}", "project_id": pid, "span_id": f"{trace}{n:015x}",
            "root_span_id": trace * 32,
            "span_parents": None if parent is None else [f"{trace}{parent:015x}"],
            "metrics": metrics, **fields}


def test_logs_roots_only_prints_trace_totals_and_averages(collector):
    """`spanlog logs --roots-only` prints each trace's duration, LLM calls, tokens, cost and
    errors, and its score averages rather than the root's own scores; --json keeps the API's
    fields."""
    pid = collector.project_id("cli-totals")
    now = time.time() - 60
    rows = [
        _span(pid, "a", 1, None, now, input="plan a trip", output="done",
              span_attributes={"name": "plan_trip", "type": "task"}, scores={"accuracy": 0.5},
              metrics={"end": now + 2.5}),
        _span(pid, "a", 2, 1, now + 0.1, span_attributes={"name": "chat", "type": "llm"},
              metadata={"model": "acme-internal-7b"},
              metrics={"tokens": 300, "estimated_cost": 0.0123}),
        _span(pid, "a", 3, 1, now + 0.2, span_attributes={"name": "chat", "type": "llm"},
              metadata={"model": "acme-internal-7b"}, metrics={"tokens": 50}),
        _span(pid, "a", 4, 1, now + 0.3, span_attributes={"name": "lookup", "type": "tool"},
              error="KeyError: 'x'"),
        _span(pid, "a", 5, 1, now + 0.4, span_attributes={"name": "grade", "type": "score"},
              scores={"accuracy": 1.0}),
        _span(pid, "b", 1, None, now + 10, input="hello",
              span_attributes={"name": "greet", "type": "task"}),
    ]
    assert call(collector.url, "POST", "/logs3", {"rows": rows}, token=collector.api_key)[0] == 200
    env = {"SPANLOG_API_URL": collector.url, "SPANLOG_API_KEY": collector.api_key,
           "COLUMNS": "200"}
    table = logs("cli-totals", "--roots-only", env=env)
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split()[:9] == ["CREATED", "NAME", "DURATION", "LLM", "TOKENS", "COST",
                                  "ERRORS", "SCORES", "(AVG)"]
    assert [line.split()[2:] for line in lines] == [
        ["greet", "1.00s", "0", "0", "–", "0", "hello"],
        ["plan_trip", "2.50s", "2", "350", "≥$0.0123", "1", "accuracy=0.75", "plan", "a",
         "trip", "done"]]
    as_json = logs("cli-totals", "--roots-only", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    trip = json.loads(as_json.stdout.splitlines()[1])
    assert trip["scores"] == {"accuracy": 0.5} and trip["scores_avg"] == {"accuracy": 0.75}
    assert trip["trace_totals"]["unpriced_llm_calls"] == 1


def test_logs_since_and_until_limit_by_start_time(collector):
    """--since and --until keep the spans started in [since, until), in any form the API
    takes; a time it cannot read exits 2 naming the flag's field."""
    pid = collector.project_id("cli-range")
    now = time.time()
    rows = [_span(pid, "c", 1, None, now - 3 * 3600, input="hours ago"),
            _span(pid, "d", 1, None, now - 600, input="minutes ago")]
    assert call(collector.url, "POST", "/logs3", {"rows": rows}, token=collector.api_key)[0] == 200
    env = {"SPANLOG_API_URL": collector.url, "SPANLOG_API_KEY": collector.api_key}

    def inputs(*args: str) -> list[str]:
        shown = logs("cli-range", "--json", *args, env=env)
        assert shown.returncode == 0, shown.stderr
        return [json.loads(line)["input"] for line in shown.stdout.splitlines()]

    assert inputs() == ["minutes ago", "hours ago"]
    assert inputs("--since", "1h") == ["minutes ago"]
    iso = datetime.fromtimestamp(now - 3600, timezone.utc).isoformat()
    assert inputs("--since", str(now - 4 * 3600), "--until", iso) == ["hours ago"]
    bad = logs("cli-range", "--since", "yesterday", env=env)
    assert bad.returncode == 2 and "400: since: 'yesterday' is no time" in bad.stderr
