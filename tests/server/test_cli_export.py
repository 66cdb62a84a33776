"""``spanlog export`` (docs/cli.md): a project's rows through a collector's export endpoint,
to a file or stdout, with a progress line on stderr and clear errors."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from spanlog_server_http import call

from spanlog.cli import main
from spanlog.server.commands import _export
from spanlog.server.commands._export import RecordCounter


def export(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spanlog.cli", "export", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def _fill(collector: Any, name: str, n: int) -> float:
    pid = collector.project_id(name)
    now = time.time()
    rows = [{"id": f"r{i}", "project_id": pid, "span_id": f"s{i}", "root_span_id": f"t{i}",
             "input": f'line one, "{i}"\nline two', "metadata": {"user": f"u{i % 2}"},
             "metrics": {"start": now - 60 * i}} for i in range(n)]
    status, body = call(collector.url, "POST", "/logs3", {"rows": rows},
                        token=collector.api_key)
    assert status == 200, body
    return now


@pytest.mark.slow  # `spanlog export` processes
def test_export_to_a_file_and_to_stdout(collector: Any, tmp_path: Path) -> None:
    """-o FILE holds every matching row; stdout gets the same bytes; filter, range and
    roots_only reach the collector; stderr says how many rows went where."""
    name = f"cli-export-{uuid.uuid4().hex[:6]}"
    now = _fill(collector, name, 30)
    env = {"SPANLOG_API_URL": collector.url, "SPANLOG_API_KEY": collector.api_key}
    target = tmp_path / "out.csv"
    done = export("--project", name, "--format", "csv", "-o", str(target),
                  "--filter", "metadata.user = 'u1'", "--since", "10m", env=env)
    assert done.returncode == 0, done.stderr
    table = list(csv.DictReader(io.StringIO(target.read_text("utf-8"), newline="")))
    assert [r["id"] for r in table] == ["r9", "r7", "r5", "r3", "r1"]
    assert table[0]["input"] == 'line one, "9"\nline two'
    assert "5 rows" in done.stderr and str(target) in done.stderr
    assert not (tmp_path / "out.csv.part").exists()
    out = export("--project", name, "--roots-only", "--until", str(now - 930), env=env)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(29, 15, -1)]
    assert all("trace_totals" in r for r in rows)
    assert "14 rows" in out.stderr and "stdout" in out.stderr


def test_a_long_export_prints_progress(collector: Any, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"cli-progress-{uuid.uuid4().hex[:6]}"
    _fill(collector, name, 1200)
    monkeypatch.setattr(_export, "PROGRESS_EVERY", 0.0)
    target = tmp_path / "all.jsonl"
    assert main(["export", "--project", name, "--url", collector.url, "--api-key",
                 collector.api_key, "-o", str(target)]) == 0
    progress = [line for line in capsys.readouterr().err.splitlines() if " MB, " in line]
    assert progress and progress[-1].startswith("spanlog export: ")
    assert len(target.read_bytes().splitlines()) == 1200


@pytest.mark.slow  # `spanlog export` processes
def test_export_errors_say_what_is_wrong(collector: Any, tmp_path: Path) -> None:
    env = {"SPANLOG_API_URL": collector.url, "SPANLOG_API_KEY": collector.api_key}
    missing = export("--project", "no-such-project", env=env)
    assert missing.returncode == 2 and "no project named 'no-such-project'" in missing.stderr
    name = f"cli-export-err-{uuid.uuid4().hex[:6]}"
    collector.project_id(name)
    bad = export("--project", name, "--since", "soon", "-o", str(tmp_path / "x"), env=env)
    assert bad.returncode == 2 and "400: since: 'soon' is no time" in bad.stderr
    assert not list(tmp_path.iterdir()), "a failed export leaves no file"
    denied = export("--project", name, env={**env, "SPANLOG_API_KEY": "wrong"})
    assert denied.returncode == 2 and "401:" in denied.stderr
    nowhere = export("--project", name, "-o", str(tmp_path / "no" / "dir.csv"), env=env)
    assert nowhere.returncode == 2 and "--output" in nowhere.stderr
    down = export("--url", "http://127.0.0.1:9", env=env)
    assert down.returncode == 2 and "cannot reach the collector" in down.stderr


def test_record_counter_skips_line_breaks_inside_csv_fields() -> None:
    text = b'id,input\r\n1,"a\r\nb ""c"""\r\n2,plain\r\n3,"x\ny"\r\n'
    counter = RecordCounter("csv")
    for start in range(0, len(text), 3):  # in awkward chunks
        counter.feed(text[start:start + 3])
    assert counter.records == 3
    lines = RecordCounter("jsonl")
    lines.feed(b'{"a":1}\n{"b":"\\n"}\n')
    assert lines.records == 2
