"""An export's memory does not grow with its size (docs/protocol.md, "Export"): the anonymous
memory (heap) of a collector process exporting 50,000 rows (about 100 MB of output) stays far
below the size of what it sends.

Anonymous memory, sampled from /proc while the download runs, rather than VmHWM: the SQLite
engine maps the database file (``PRAGMA mmap_size``, one mapping per reader connection), so
reading every row raises the file-backed part of the resident set by the size of the file,
in pages the kernel can drop at will; that says nothing about the export's own memory. (A
file bigger than the mapping is read through SQLite's page cache instead, which is heap but
bounded by ``PRAGMA cache_size`` per reader connection, whatever the export's size; 50,000
rows of ~2 KB stay inside the mapping.)"""

from __future__ import annotations

import asyncio
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from spanlog_server_http import call, start_serve

from spanlog.server.store._records import Piece
from spanlog.server.store.sqlite._store import SqliteStore
from store_projects import default_org_project

ROWS = 50_000


async def _fill(db: str) -> str:
    store = SqliteStore(db)
    await store.start()
    try:
        project = await default_org_project(store, "big")
        for start in range(0, ROWS, 5000):
            await store.write([Piece(project.id, {
                "id": f"r{i}", "span_id": f"s{i}", "root_span_id": f"t{i // 5}",
                "span_parents": None if i % 5 == 0 else [f"s{i - i % 5}"],
                "input": f"question {i} " + "x" * 1800, "output": {"text": "y" * 100},
                "metadata": {"user": f"u{i % 97}"}, "metrics": {"start": 1e9 + i}})
                for i in range(start, start + 5000)])
        return project.id
    finally:
        await store.close()


def _anon_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc")


def _drain(url: str, pid: int) -> tuple[int, int, int]:
    """Read a download to its end in small pieces; its size in bytes and lines, and the
    highest anonymous memory of process ``pid`` seen meanwhile (KiB)."""
    size = lines = peak = 0
    with urllib.request.urlopen(url, timeout=120) as resp:
        while chunk := resp.read1(1 << 16):
            size += len(chunk)
            lines += chunk.count(b"\n")
            peak = max(peak, _anon_kib(pid))
    return size, lines, peak


@pytest.mark.slow
@pytest.mark.parametrize("query", [{"format": "jsonl"}, {"format": "csv"},
                                   {"format": "csv", "roots_only": "true"}])
def test_exporting_many_rows_keeps_memory_flat(tmp_path: Path, query: dict[str, str]) -> None:
    db = str(tmp_path / "big.sqlite3")
    project_id = asyncio.run(_fill(db))
    proc, url, _ = start_serve(db, "--workers", "0")
    try:
        # Warm up (imports, caches, the reader threads) with a small read, then measure.
        status, page = call(url, "GET", f"/v1/project_logs/{project_id}/fetch?limit=500")
        assert status == 200 and len(page["events"]) == 500
        before = _anon_kib(proc.pid)
        size, lines, peak = _drain(f"{url}/v1/project_logs/{project_id}/export?"
                                   + urllib.parse.urlencode(query), proc.pid)
        grown = peak - before
        expected = ROWS // 5 if query.get("roots_only") else ROWS
        assert lines >= expected, (lines, expected)
        assert size > 90e6 / (5 if query.get("roots_only") else 1), size
        # One page of 500 rows of ~2 KB, decoded, encoded and buffered, is a few MB (and the
        # allocator keeps some); a third of the output would already mean rows pile up.
        assert grown < 32 * 1024, f"heap grew {grown // 1024} MiB for {size // 2**20} MiB"
    finally:
        proc.terminate()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
