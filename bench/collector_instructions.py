"""What the collector spends per ingested row and per light fetch, in CPU instructions counted
by valgrind: immune to machine load, so two checkouts compare to a percent on a busy machine.

    python3 bench/collector_instructions.py [--rows 3000] [--fetches 220] [SRC ...]

Each ``SRC`` is a checkout (its ``src`` goes on ``PYTHONPATH``; default: this one). The
collector (``python -m spanlog.server --workers 0``: decoding, checks and the SQLite writer in
one process, which ``valgrind --tool=callgrind`` counts whole) runs on a fresh temporary
database:

- ``ingest``: the rows of ``bench/collector.py ingest`` (``generate``), 500 per request, one
  request at a time; the figure is the difference between a run of ``--rows`` rows and one
  of a third as many, per row, so start-up cancels out;
- ``fetch``: ``POST /v1/project_logs/{id}/fetch`` of the latest row on a new connection each
  (what a viewer or ``spanlog logs`` does), over a database of 2,000 rows; the difference
  between ``--fetches`` requests and a tenth as many, per request.

Before the timed requests the collector is left to finish its start-up work (it imports the
price database on a thread) until it uses no CPU. Needs ``valgrind`` (Debian package
``valgrind``); each checkout takes a few minutes. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import _callgrind
from collector import PROJECT, _cpu_seconds, _post_all, generate

HERE = os.path.dirname(os.path.abspath(__file__))


def _bodies(rows: int) -> list[bytes]:
    bodies = []
    generated = generate(rows, seed=2)
    while chunk := [{**r, "project_name": PROJECT} for r in itertools.islice(generated, 500)]:
        bodies.append(json.dumps({"rows": chunk, "api_version": 2}).encode())
    return bodies


def _counted(src: str, db: str, work: Callable[[str], None]) -> int:
    """Instructions of a collector process on ``db`` that served ``work(url)``."""
    with tempfile.TemporaryDirectory(prefix="spanlog-collector-instructions-") as tmp:
        env = dict(os.environ, PYTHONPATH=os.path.join(src, "src"))
        proc = subprocess.Popen(_callgrind.command(tmp, "-m", "spanlog.server", "--port", "0",
                                                   "--db", db, "--log-level", "warning",
                                                   "--workers", "0"),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=env)
        try:
            assert proc.stdout is not None
            url = None
            for line in proc.stdout:
                match = re.search(r"listening on (http://\S+)", line)
                if match:
                    url = match.group(1)
                    break
            if url is None:
                raise RuntimeError(f"{src}: the collector did not start")
            _settle(proc.pid)
            work(url)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(600)
        return _callgrind.total(tmp, src)


def _settle(pid: int, bound: float = 300.0) -> None:
    """Wait (bounded) until the process used under 50 ms of CPU in a second."""
    deadline = time.monotonic() + bound
    before = _cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)  # sampling interval of the process's CPU time
        now = _cpu_seconds(pid)
        if now - before < 0.05:
            return
        before = now


def _call(url: str, path: str, body: Any) -> Any:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def ingest(src: str, rows: int) -> float:
    few = max(500, rows // 3 // 500 * 500)
    counts = []
    for n in (few, rows):
        bodies = _bodies(n + 500)
        with tempfile.TemporaryDirectory(prefix="spanlog-collector-instructions-db-") as tmp:
            def work(url: str, bodies: list[bytes] = bodies) -> None:
                asyncio.run(_post_all(url, bodies[:1], 1))  # creates the project
                asyncio.run(_post_all(url, bodies[1:], 1))
            counts.append(_counted(src, os.path.join(tmp, "db.sqlite3"), work))
    return (counts[1] - counts[0]) / (rows - few)


def fetch(src: str, fetches: int, template: str) -> float:
    few = max(1, fetches // 10)
    counts = []
    for n in (few, fetches):
        with tempfile.TemporaryDirectory(prefix="spanlog-collector-instructions-db-") as tmp:
            db = os.path.join(tmp, "db.sqlite3")
            shutil.copy(template, db)

            def work(url: str, n: int = n) -> None:
                pid = _call(url, "/v1/project", {"name": PROJECT})["id"]
                for _ in range(n):
                    _call(url, f"/v1/project_logs/{pid}/fetch", {"limit": 1})
            counts.append(_counted(src, db, work))
    return (counts[1] - counts[0]) / (fetches - few)


def _template(src: str, tmp: str) -> str:
    """A database of 2,000 benchmark rows written by ``src``'s collector (not counted)."""
    db = os.path.join(tmp, f"template-{abs(hash(src))}.sqlite3")
    env = dict(os.environ, PYTHONPATH=os.path.join(src, "src"))
    proc = subprocess.Popen([sys.executable, "-m", "spanlog.server", "--port", "0", "--db", db,
                             "--log-level", "warning"], stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                asyncio.run(_post_all(match.group(1), _bodies(2000), 1))
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--fetches", type=int, default=220)
    parser.add_argument("src", nargs="*", default=[os.path.dirname(HERE)],
                        help="checkouts to compare (default: this one)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found: install it (Debian: apt-get install valgrind)")
    if args.rows < 1500 or args.fetches < 20:
        parser.error("--rows: at least 1500; --fetches: at least 20")
    print("collector instructions (callgrind, --workers 0): per ingested row, per light fetch",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="spanlog-collector-instructions-") as tmp:
        for src in args.src:
            per_row = ingest(src, args.rows)
            per_fetch = fetch(src, args.fetches, _template(src, tmp))
            print(f"  {src:30} ingest {per_row:>10,.0f} per row   fetch {per_fetch:>12,.0f} "
                  "per request", flush=True)


if __name__ == "__main__":
    main()
