"""A full disk under PostgreSQL is answered as on SQLite: 507 with ``Retry-After`` for
writes, and reads go on (docs/collector.md, "What it guarantees").

The disk is filled for real, without root: the test's own PostgreSQL server runs with a
file size limit (RLIMIT_FSIZE) that is not a multiple of PostgreSQL's 8 KB pages, so
extending a table past it writes half a page, which PostgreSQL reports exactly as it reports
a full file system: SQLSTATE 53100 (disk_full), "could not extend file ... wrote only 4096
of 8192 bytes". (A limit on a page boundary gives EFBIG instead, reported as an internal
error XX000 "File too large", which is not what a full disk looks like.)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_cluster import Cluster
from pg_serve import start_serve, stop

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
from spanlog_server_http import call

# Past the 1 MB WAL segments, half a page short of a page boundary.
MAX_FILE_BYTES = 1024 * 1024 + 4096
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def small_disk() -> Iterator[Cluster]:
    """A PostgreSQL server of its own none of whose files may grow past MAX_FILE_BYTES."""
    with Cluster(max_file_bytes=MAX_FILE_BYTES) as cluster:
        yield cluster


def test_a_full_disk_is_507_and_reads_go_on(small_disk: Cluster) -> None:
    proc, base, _ = start_serve(small_disk.url())
    try:
        rows = [{"id": "a", "project_name": "p", "input": "x"}]
        assert call(base, "POST", "/logs3", {"rows": rows}, headers=JSON)[0] == 200
        # Incompressible rows of 20 KB: about 1 MB a request, so the rows' table (or its
        # TOAST table) reaches the limit within a few requests.
        status, answer = 200, None
        for n in range(8):
            big = [{"id": f"b{n}-{i}", "project_name": "p", "input": os.urandom(10_000).hex()}
                   for i in range(50)]
            status, answer = call(base, "POST", "/logs3", {"rows": big}, headers=JSON,
                                  timeout=60)
            if status != 200:
                break
        assert status == 507, (status, answer)
        assert "disk" in answer["error"] and "full" in answer["error"], answer
        pid = call(base, "POST", "/v1/project", {"name": "p"}, headers=JSON)[1]["id"]
        status, page = call(base, "POST", f"/v1/project_logs/{pid}/fetch",
                            {"filter": "id = 'a'"}, headers=JSON)
        assert status == 200 and [r["id"] for r in page["events"]] == ["a"], page
        status, page = call(base, "POST", f"/v1/project_logs/{pid}/fetch", {"limit": 1000},
                            headers=JSON)
        assert status == 200 and "a" in [r["id"] for r in page["events"]], status
    finally:
        assert stop(proc) == 0
