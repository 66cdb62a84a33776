"""A collector killed with SIGKILL mid-ingest restarts with every acknowledged row."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from spanlog_server_http import call, start_serve

from spanlog.server.http._runner import BackgroundCollector


@pytest.mark.slow
def test_sigkill_during_ingest_keeps_acknowledged_rows(tmp_path: Path):
    """Every row acknowledged before SIGKILL is there after a restart; the file is intact."""
    db = str(tmp_path / "crash.sqlite3")
    proc, url, _ = start_serve(db)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        batch = 0
        while not stop.is_set():
            ids = [f"c{n}-b{batch}-r{i}" for i in range(50)]
            rows = [{"id": i, "project_name": "Global", "input": "x" * 500,
                     "metadata": {"client": n, "batch": batch, "k": i}, "tags": ["t"]}
                    for i in ids]
            try:
                status, _ = call(url, "POST", "/logs3", {"rows": rows}, timeout=5)
            except OSError:
                return  # the collector is gone: this batch was never acknowledged
            if status == 200:
                with lock:
                    acked.extend(ids)
            batch += 1

    clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    try:
        for t in clients:
            t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= 4000:
                    break
            time.sleep(0.01)  # polling the acknowledged count, bounded by the deadline
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        stop.set()
        for t in clients:
            t.join(30)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 4000

    server = BackgroundCollector(db).start()
    try:
        _, project = call(server.url, "POST", "/v1/project", {"name": "Global"})
        stored: set[str] = set()
        cursor = None
        while True:
            body = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            _, page = call(server.url, "POST", f"/v1/project_logs/{project['id']}/fetch", body)
            stored.update(r["id"] for r in page["events"])
            cursor = page["cursor"]
            if not cursor:
                break
        missing = set(acked) - stored
        assert not missing, f"{len(missing)} acknowledged rows lost, e.g. {sorted(missing)[:5]}"
        _, one = call(server.url, "POST", f"/v1/project_logs/{project['id']}/fetch",
                      {"filter": f"metadata.k = '{acked[0]}'"})
        assert [r["id"] for r in one["events"]] == [acked[0]]
    finally:
        server.stop()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
