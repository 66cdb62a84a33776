"""`spanlog demo`, the README's first command, run as a user runs it."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """Read the demo's stdout until a line contains ``marker``; fail after ``timeout``."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while marker not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"demo did not print {marker!r} in {timeout}s:\n{seen}")
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"demo exited ({proc.wait(5)}) before {marker!r}:\n{seen}")
            seen += line
    return seen


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_demo_stores_example_traces_serves_them_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """The demo logs its example through the SDK, prints where to look, and stops on SIGINT."""
    data_dir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spanlog.cli", "demo", "--port", "0", "--data-dir",
         str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        out = _read_until(proc, "Ctrl-C to stop", timeout=60)
        assert "3 traces of project 'demo'" in out, out
        assert "accuracy=0.75" in out, out  # two reviewers' scores averaged on the trace
        url = re.search(r"collector at (http://127\.0\.0\.1:\d+)", out).group(1)  # type: ignore[union-attr]
        project = _post(f"{url}/v1/project", {"name": "demo"})
        rows = _post(f"{url}/v1/project_logs/{project['id']}/fetch", {"limit": 1000})["events"]
        names = {r["span_attributes"]["name"] for r in rows if "span_attributes" in r}
        assert {"request", "handle_request", "retrieve", "chat.completions.create"} <= names
        comments = [r["comment"]["text"] for r in rows if "comment" in r]
        assert sorted(comments) == ["Exactly what I needed", "Weekends are not covered"]
        assert any(r.get("error") for r in rows)  # the failing request is recorded
        assert (data_dir / "spanlog.sqlite").exists()
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out + rest
        assert "spanlog demo stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def test_demo_refuses_a_database_that_already_exists(tmp_path: Path) -> None:
    """The demo never writes its example into an existing database."""
    (tmp_path / "spanlog.sqlite").write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-m", "spanlog.cli", "demo", "--port", "0", "--data-dir",
         str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "already exists" in proc.stdout + proc.stderr
