"""Export benchmark: rows per second of ``GET /v1/project_logs/{id}/export`` over HTTP, and
the collector's heap while it runs (docs/protocol.md, "Export").

    python3 bench/export.py --db /tmp/bench.sqlite3       # a database built by bench/collector.py
    python3 bench/export.py --rows 200000                  # builds one of that size first

Builds with ``bench/collector.py``'s ``build`` (its ~1.5 KB rows, 5-span traces), starts a
collector on the database (``--workers 0``: one process) and downloads, reading as fast as it
can: every row as JSON Lines, every row as CSV, and the roots only as CSV (with trace totals).
Reports rows/s, MB/s and the highest anonymous memory of the collector seen during each
download. Not a pass/fail test: it prints what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import urllib.parse
import urllib.request
from typing import Any

from collector import PROJECT, _load, build, start_collector, stop_collector

CASES = {
    "jsonl_every_row": {"format": "jsonl"},
    "csv_every_row": {"format": "csv"},
    "csv_roots_only": {"format": "csv", "roots_only": "true"},
}


def _anon_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _project_id(url: str) -> str:
    query = urllib.parse.urlencode({"project_name": PROJECT})
    with urllib.request.urlopen(f"{url}/v1/project?{query}", timeout=30) as resp:
        return str(json.loads(resp.read())["objects"][0]["id"])


def _download(url: str, pid: int) -> dict[str, Any]:
    size = lines = 0
    peak = _anon_mib(pid)
    started = time.perf_counter()
    first = None
    with urllib.request.urlopen(url, timeout=600) as resp:
        while chunk := resp.read1(1 << 16):
            if first is None:
                first = time.perf_counter() - started
            size += len(chunk)
            lines += chunk.count(b"\n")
            if lines % 50 == 0:
                peak = max(peak, _anon_mib(pid))
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "bytes": size, "lines": lines,
            "rows_per_s": round(lines / seconds), "mb_per_s": round(size / 1e6 / seconds, 1),
            "first_byte_ms": round((first or 0) * 1000, 1),
            "collector_anon_mib_peak": round(peak, 1)}


def run(db: str) -> dict[str, Any]:
    proc, url = start_collector(db, workers=0)
    try:
        project_id = _project_id(url)
        out: dict[str, Any] = {"loadavg_before": _load(),
                               "collector_anon_mib_before": round(_anon_mib(proc.pid), 1)}
        for name, query in CASES.items():
            path = f"/v1/project_logs/{project_id}/export?{urllib.parse.urlencode(query)}"
            out[name] = _download(url + path, proc.pid)
            print(json.dumps({name: out[name]}), flush=True)
        out["loadavg_after"] = _load()
        return out
    finally:
        stop_collector(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default=None, help="a database built by bench/collector.py")
    parser.add_argument("--rows", type=int, default=200_000,
                        help="rows to build when no --db is given (default 200000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db
        if db is None:
            db = os.path.join(tmp, "bench.sqlite3")
            print(json.dumps({"build": build(db, args.rows)}), flush=True)
        print(json.dumps({"export": run(db)}))


if __name__ == "__main__":
    main()
