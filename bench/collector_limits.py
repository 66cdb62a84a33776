"""Collector benchmark: what one hostile read costs everyone else.

Two cases, each against ``spanlog serve`` in a subprocess, over HTTP, on a fresh database:

- ``filter``: 3,000 rows of ~7 KB; the time of four fetches with a slow LIKE filter (the
  100-condition one that the pattern limits now refuse, or, with ``--within-limits``, the
  costliest filter the limits allow) sent at once, and the worst ``GET /ping`` and ingest
  latency while they run;
- ``dag``: a 10,000-span trace whose spans have two parents each; the time of
  ``GET .../trace/{root}`` and the worst ``GET /version`` latency meanwhile.

Not a pass/fail test: it prints what it measured. Run it against another checkout by
pointing PYTHONPATH at that checkout's ``src``.

    python3 bench/collector_limits.py filter
    python3 bench/collector_limits.py filter --within-limits
    python3 bench/collector_limits.py dag
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from collector import start_collector, stop_collector

WILD = " OR ".join(["input ILIKE '%a%a%a%a%a%z'"] * 100)
WITHIN_LIMITS = " OR ".join(["input ILIKE '%a%a%z'"] * 8)


def _call(url: str, method: str, path: str, body: Any = None,
          timeout: float = 600) -> tuple[int, Any, float]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method)
    began = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read()), time.monotonic() - began
    except urllib.error.HTTPError as exc:
        text = exc.read()
        exc.close()
        return exc.code, json.loads(text), time.monotonic() - began
    except OSError as exc:
        return 0, str(exc), time.monotonic() - began


def _worst_while(url: str, threads: list[threading.Thread], probes: list[tuple[str, str, Any]]
                 ) -> dict[str, float]:
    """Start ``threads``; until they end, call each probe in turn; the worst latency of each."""
    for thread in threads:
        thread.start()
    worst = {path: 0.0 for _, path, _ in probes}
    while any(thread.is_alive() for thread in threads):
        for method, path, body in probes:
            _, _, took = _call(url, method, path, body, timeout=120)
            worst[path] = max(worst[path], round(took, 3))
        time.sleep(0.05)
    return worst


def bench_filter(within_limits: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_collector(os.path.join(tmp, "limits.sqlite3"), workers=0)
        try:
            _, project, _ = _call(url, "POST", "/v1/project", {"name": "slow"})
            _, other, _ = _call(url, "POST", "/v1/project", {"name": "other"})
            for start in range(0, 3_000, 500):
                _call(url, "POST", "/logs3", {"rows": [
                    {"id": f"r{i}", "project_id": project["id"], "input": "a" * 7_000}
                    for i in range(start, start + 500)]})
            text = WITHIN_LIMITS if within_limits else WILD
            answers: list[tuple[int, Any, float]] = []
            threads = [threading.Thread(target=lambda: answers.append(_call(
                url, "POST", f"/v1/project_logs/{project['id']}/fetch", {"filter": text})))
                for _ in range(4)]
            worst = _worst_while(url, threads, [
                ("GET", "/ping", None),
                ("POST", "/logs3", {"rows": [{"id": "x", "project_id": other["id"]}]})])
            return {"case": "filter", "within_limits": within_limits,
                    "fetch_status": sorted({a[0] for a in answers}),
                    "fetch_seconds_max": round(max(a[2] for a in answers), 2),
                    "error": next((a[1]["error"] for a in answers
                                   if isinstance(a[1], dict) and "error" in a[1]), None),
                    "worst_ping_seconds": worst["/ping"],
                    "worst_ingest_seconds": worst["/logs3"]}
        finally:
            stop_collector(proc)


def bench_dag(spans: int) -> dict[str, Any]:
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_collector(os.path.join(tmp, "dag.sqlite3"), workers=0)
        try:
            _, project, _ = _call(url, "POST", "/v1/project", {"name": "dag"})
            root = uuid.uuid4().hex
            rows = [{"id": f"d{i}", "span_id": f"{i:016x}", "root_span_id": root,
                     "project_id": project["id"],
                     "span_parents": None if i == 0 else [f"{i - 1:016x}"] if i == 1
                     else [f"{i - 1:016x}", f"{i - 2:016x}"],
                     "scores": {"q": rng.random()}} for i in range(spans)]
            for start in range(0, spans, 2_000):
                _call(url, "POST", "/logs3", {"rows": rows[start:start + 2_000]})
            answers: list[tuple[int, Any, float]] = []
            reader = threading.Thread(target=lambda: answers.append(_call(
                url, "GET", f"/v1/project_logs/{project['id']}/trace/{root}")))
            worst = _worst_while(url, [reader], [("GET", "/version", None)])
            status, _, took = answers[0]
            return {"case": "dag", "spans": spans, "trace_status": status,
                    "trace_seconds": round(took, 2), "worst_version_seconds": worst["/version"]}
        finally:
            stop_collector(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["filter", "dag"])
    parser.add_argument("--within-limits", action="store_true")
    parser.add_argument("--spans", type=int, default=10_000)
    args = parser.parse_args()
    if args.what == "filter":
        print(json.dumps(bench_filter(args.within_limits)))
    else:
        print(json.dumps(bench_dag(args.spans)))


if __name__ == "__main__":
    main()
