"""`spanlog demo`, the README's first command, run as a user runs it."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # `spanlog demo` processes


class _Output:
    """The demo's stdout, read line by line on a thread (select() on a buffered text pipe
    misses lines already buffered), waited on with deadlines."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.text = ""
        self._lines: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout or ():
            self._lines.put(line)

    def until(self, marker: str, timeout: float) -> str:
        """Everything printed so far, once a line contains ``marker``."""
        deadline = time.monotonic() + timeout
        while marker not in self.text:
            try:
                self.text += self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"demo did not print {marker!r} in {timeout}s "
                                     f"(exit status {self.proc.poll()}):\n{self.text}") from None
        return self.text


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_demo_stores_example_traces_serves_them_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """The demo logs its example through the SDK, prints where to look (the demo project's
    logs in the viewer, a CLI line), and stops on SIGINT."""
    data_dir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spanlog.cli", "demo", "--port", "0", "--data-dir",
         str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = _Output(proc)
    try:
        out = output.until("Ctrl-C to stop", timeout=60)
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
        assert (data_dir / "spanlog.sqlite3").exists()  # what `spanlog serve --data-dir` opens
        # The viewer line opens the demo project's logs table (app.js: /projects/<id>).
        viewer = re.search(r"viewer: +(\S+)", out).group(1)  # type: ignore[union-attr]
        assert viewer == f"{url}/projects/{project['id']}", out
        with urllib.request.urlopen(viewer, timeout=10) as page:
            assert page.headers["Content-Type"].startswith("text/html")
            assert b'src="/static/app.js"' in page.read()
        # The CLI line the demo prints works as printed.
        cli = re.search(r"CLI: +spanlog (logs .*)", out).group(1)  # type: ignore[union-attr]
        shown = subprocess.run([sys.executable, "-m", "spanlog.cli", *shlex.split(cli)],
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "handle_request" in shown.stdout, shown.stdout
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, out
        output.until("spanlog demo stopped", timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        output.thread.join(timeout=10)  # EOF once the process is gone
        assert proc.stdout is not None
        proc.stdout.close()


def test_demo_refuses_a_database_that_already_exists(tmp_path: Path) -> None:
    """The demo never writes its example into an existing database."""
    (tmp_path / "spanlog.sqlite3").write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-m", "spanlog.cli", "demo", "--port", "0", "--data-dir",
         str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "already exists" in proc.stdout + proc.stderr
