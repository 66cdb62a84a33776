"""Collector benchmark: HTTP ingest rate, query latency at 1,000,000 rows, bytes per row.

Issue 2's goals, on the project's 2-core machines: sustained HTTP ingest >= 10,000 rows/s
with ~1.5 KB rows (every metadata leaf indexed); with 1,000,000 rows stored, p50 < 5 ms for
the latest-50 page, an equality filter on a rare value, one on a common value, and reading
a 50-span trace. Not a pass/fail test: it prints what it measured.

    python3 bench/collector.py ingest --rows 200000      # HTTP, collector in a subprocess
    python3 bench/collector.py build --rows 1000000 --db /tmp/bench.sqlite3
    python3 bench/collector.py query --db /tmp/bench.sqlite3
    python3 bench/collector.py all                       # the three above, default sizes
    python3 bench/collector.py writer --rows 200000      # the SQLite writer thread alone

``build`` fills a database through the store (not HTTP) to save time; ``query`` then starts a
collector on it and times each query over HTTP (what a user sees) with keep-alive.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

PROJECT = "bench"
SPANS_PER_TRACE = 5
USERS = 200_000  # user ids: a given one appears in a handful of rows (the "rare" value)
RARE_FILTER = "metadata.user_id = 'user-000042'"
COMMON_FILTER = "metadata.env = 'production'"  # about 90% of rows

_WORDS = ("the order refund shipping account password invoice delivery late damaged "
          "replace cancel subscription upgrade plan billing card charge twice address "
          "change email login error page checkout discount code warranty return label "
          "tracking number customer support agent policy days within eligible").split()


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(_WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def _user(rng: random.Random) -> str:
    return f"user-{rng.randrange(USERS):06d}"


def trace_rows(rng: random.Random, start: float) -> list[dict[str, Any]]:
    """One realistic trace: request handler, retrieval, LLM call, tool call, score span."""
    root_span_id = uuid.UUID(int=rng.getrandbits(128)).hex
    span_ids = [f"{rng.getrandbits(64):016x}" for _ in range(SPANS_PER_TRACE)]
    # Every 40,000th trace belongs to the user the "rare value" query looks for.
    user = "user-000042" if rng.random() < 1 / 40_000 else _user(rng)
    env = "production" if rng.random() < 0.9 else "staging"
    base_meta = {"user_id": user, "env": env, "session_id": f"sess-{rng.getrandbits(40):010x}",
                 "region": rng.choice(["us-east-1", "eu-west-1", "ap-south-1"]),
                 "app_version": f"2.{rng.randrange(20)}.{rng.randrange(10)}",
                 "customer_tier": rng.choice(["free", "free", "free", "pro", "enterprise"])}
    question = _text(rng, 480)
    shapes = [("handle_request", "task"), ("retrieve", "tool"), ("chat.completions", "llm"),
              ("lookup_order", "tool"), ("helpfulness", "score")]
    rows = []
    for i, (name, kind) in enumerate(shapes):
        t0 = start + i * 0.05
        metadata = dict(base_meta)
        metadata.update({"step": i, "model": "gpt-4o-mini" if kind == "llm" else None,
                         "feature_flags": {"rerank": rng.random() < 0.5,
                                           "cache": rng.random() < 0.3},
                         "request_id": f"req-{rng.getrandbits(48):012x}"})
        if metadata["model"] is None:
            del metadata["model"]
        row: dict[str, Any] = {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "span_id": span_ids[i], "root_span_id": root_span_id,
            "span_parents": None if i == 0 else [span_ids[0]],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0)) + ".000000+00:00",
            "span_attributes": {"name": name, "type": kind},
            "input": {"messages": [
                {"role": "system", "content": "You are a helpful support assistant."},
                {"role": "user", "content": question}]} if kind == "llm" else
            {"query": question[:200]},
            "output": _text(rng, 480 if kind == "llm" else 220),
            "metadata": metadata,
            "metrics": {"start": t0, "end": t0 + rng.uniform(0.01, 0.9)},
            "context": {"caller_filename": "app/handlers.py", "caller_functionname": name,
                        "caller_lineno": 40 + i},
            "tags": ["prod"] if env == "production" else ["staging"],
        }
        if kind == "llm":
            prompt = rng.randrange(200, 900)
            completion = rng.randrange(20, 300)
            row["metrics"].update({"prompt_tokens": prompt, "completion_tokens": completion,
                                   "tokens": prompt + completion,
                                   "time_to_first_token": rng.uniform(0.1, 0.6)})
        if kind == "score":
            row["scores"] = {"helpfulness": rng.choice([0, 0.5, 1]),
                             "groundedness": round(rng.random(), 2)}
        rows.append(row)
    return rows


def generate(n: int, seed: int = 1, days: float | None = None) -> Iterator[dict[str, Any]]:
    """``n`` rows of realistic traces, deterministic for a seed: a trace every 0.05 s from a
    day ago, or spread evenly over the last ``days``."""
    rng = random.Random(seed)
    step = 0.01 if days is None else days * 86_400 / n
    start = time.time() - (86_400 if days is None else days * 86_400)
    made = 0
    while made < n:
        for row in trace_rows(rng, start + made * step):
            if made >= n:
                return
            yield row
            made += 1


# -- ingest over HTTP --------------------------------------------------------------------

def start_collector(db: str, workers: int | None = None) -> tuple[subprocess.Popen[str], str]:
    """``spanlog serve`` on a free port (a separate process, as in production); ``workers``:
    its ``--workers`` (None: its default)."""
    extra = [] if workers is None else ["--workers", str(workers)]
    return launch([sys.executable, "-m", "spanlog.server", "--port", "0", "--db", db,
                   "--log-level", "warning", *extra])


def launch(command: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start a collector process; return it and the URL it prints once listening."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return proc, match.group(1)
    raise RuntimeError("collector did not start")


def stop_collector(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


def _load() -> str:
    """The machine's load averages (1, 5, 15 minutes): other processes share its cores."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads (Linux /proc)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(pid: int) -> float:
    """:func:`_cpu_seconds` of ``pid`` and every live descendant (its ingest workers)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parents[int(name)] = int(_stat(int(name))[1])
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
    tree, grew = {pid}, True
    while grew:
        children = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    total = 0.0
    for member in tree:
        try:
            total += _cpu_seconds(member)
        except OSError:
            continue
    return total


async def _post_all(url: str, bodies: list[bytes], concurrency: int,
                    done_at: list[float] | None = None, path: str = "/logs3",
                    headers: dict[str, str] | None = None) -> float:
    """Post ``bodies`` to ``path`` with ``concurrency`` requests in flight; return the
    seconds taken. ``done_at`` gets the time (since the start) at which each acknowledgement
    arrived."""
    import aiohttp

    queue = list(reversed(bodies))
    async with aiohttp.ClientSession() as session:
        async def worker() -> None:
            while queue:
                body = queue.pop()
                async with session.post(url + path, data=body, headers=headers) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"{resp.status}: {await resp.text()}")
                    await resp.read()
                if done_at is not None:
                    done_at.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def _rate_by_tenth(done_at: list[float], rows_per_body: int) -> list[int]:
    """Rows/s over each tenth of the run's requests, in order: how ingest held up as the
    database grew."""
    rates: list[int] = []
    start, before = 0, 0.0
    for k in range(1, 11):
        end = round(len(done_at) * k / 10)
        if end > start:
            at = done_at[end - 1]
            rates.append(round((end - start) * rows_per_body / max(at - before, 1e-9)))
            start, before = end, at
    return rates


def ingest(rows: int, batch: int, concurrency: int,
           workers: int | None = None) -> dict[str, Any]:
    """Rows/s acknowledged by a collector over HTTP (bodies are encoded before timing)."""
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "ingest.sqlite3")
        proc, url = start_collector(db, workers)
        try:
            # Encoded a request at a time: memory holds the bodies, not millions of dicts.
            bodies = []
            generated = generate(rows, seed=2)
            while chunk := [{**r, "project_name": PROJECT}
                            for r in itertools.islice(generated, batch)]:
                bodies.append(json.dumps({"rows": chunk, "api_version": 2}).encode())
            row_bytes = sum(len(b) for b in bodies) / rows
            # Warm up: first request creates the project.
            asyncio.run(_post_all(url, bodies[:1], 1))
            cpu_before = _tree_cpu_seconds(proc.pid)
            client_before = _cpu_seconds(os.getpid())
            load_before = _load()
            done_at: list[float] = []
            elapsed = asyncio.run(_post_all(url, bodies[1:], concurrency, done_at))
            server_cpu = _tree_cpu_seconds(proc.pid) - cpu_before
            client_cpu = _cpu_seconds(os.getpid()) - client_before
            load_after = _load()
        finally:
            stop_collector(proc)
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
    done = rows - min(batch, rows)
    return {"rows": done, "seconds": round(elapsed, 2), "rows_per_s": round(done / elapsed),
            "workers": "default" if workers is None else workers,
            # Cores the collector (and its ingest workers) kept busy: below 2 means it was not
            # CPU-bound on 2 cores.
            "server_cores_used": round(server_cpu / elapsed, 2),
            # The benchmark's own client shares the 2 cores (sending pre-encoded bodies).
            "client_cores_used": round(client_cpu / elapsed, 2),
            # CPU the collector spent per row: comparable across runs on a busy machine,
            # where rows/s mostly says how much CPU the other processes left over.
            "server_cpu_us_per_row": round(server_cpu / done * 1e6),
            "rows_per_s_by_tenth": _rate_by_tenth(done_at, batch),
            "avg_row_bytes": round(row_bytes), "batch": batch, "concurrency": concurrency,
            "disk_bytes_per_row": round(size / rows),
            "loadavg_before": load_before, "loadavg_after": load_after}


# -- the writer alone ---------------------------------------------------------------------

async def bench_project(store: Any) -> str:
    """The id of the benchmark's project in a started store (created if new)."""
    from spanlog.server.store._records import DEFAULT_ORG

    org = await store.org(DEFAULT_ORG)
    assert org is not None
    project = await store.project(org.id, PROJECT, create=True)
    assert project is not None
    return str(project.id)


async def _writer_only(db: str, rows: int, batch: int) -> dict[str, Any]:
    from functools import partial

    from spanlog.server.http._tuning import tune_process
    from spanlog.server.store._records import Piece
    from spanlog.server.store.sqlite._pieces import prepare, write_pieces
    from spanlog.server.store.sqlite._store import SqliteStore

    store = SqliteStore(db)
    await store.start()
    try:
        project_id = await bench_project(store)
        generated = list(generate(rows, seed=2))
        batches = []
        for i in range(0, rows, batch):
            pieces = [Piece(project_id, r) for r in generated[i:i + batch]]
            # what the event loop (or an ingest worker) does before handing a batch over
            batches.append((pieces, prepare(pieces)))
        del generated
        tune_process()  # as in `spanlog serve`
        cpu = os.times()
        started = time.perf_counter()
        for pieces, prepared in batches:
            await store._write(partial(write_pieces, pieces=pieces, prepared=prepared),
                               size=len(pieces))
        elapsed = time.perf_counter() - started
        used = sum(os.times()[:2]) - sum(cpu[:2])
    finally:
        await store.close()
    return {"rows": rows, "rows_per_s": round(rows / elapsed),
            "cpu_us_per_row": round(used / rows * 1e6), "batch": batch, "load": _load()}


def writer_only(rows: int, batch: int) -> dict[str, Any]:
    """Rows/s of the SQLite writer thread alone: rows made and prepared before timing, then
    written in ``batch``-row transactions one after the other (no HTTP, no JSON decoding)."""
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_writer_only(os.path.join(tmp, "writer.sqlite3"), rows, batch))


# -- build and query ---------------------------------------------------------------------

async def _build(db: str, rows: int, batch: int) -> float:
    from spanlog.server.store._records import Piece
    from spanlog.server.store.sqlite._store import SqliteStore

    store = SqliteStore(db)
    await store.start()
    try:
        project_id = await bench_project(store)
        started = time.perf_counter()
        pending: list[Piece] = []
        writes: list[asyncio.Task[None]] = []
        # Over a week: what the monitor query (a week in hourly buckets) reads.
        for row in generate(rows, seed=3, days=7):
            pending.append(Piece(project_id, row))
            if len(pending) >= batch:
                writes.append(asyncio.ensure_future(store.write(pending)))
                pending = []
                if len(writes) >= 4:  # keep the writer busy while the next batch is made
                    await writes.pop(0)
        if pending:
            writes.append(asyncio.ensure_future(store.write(pending)))
        await asyncio.gather(*writes)
        return time.perf_counter() - started
    finally:
        await store.close()


def build(db: str, rows: int, batch: int = 2000) -> dict[str, Any]:
    """Fill ``db`` with ``rows`` rows through the store; report rate and bytes per row."""
    elapsed = asyncio.run(_build(db, rows, batch))
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count = conn.execute("SELECT count(*) FROM rows").fetchone()[0]
        # Index terms (leaves) per row, and the postings entries that hold them.
        terms, postings = conn.execute("SELECT total(n), count(*) FROM postings").fetchone()
    finally:
        conn.close()
    size = sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))
    return {"rows": count, "seconds": round(elapsed, 1), "rows_per_s": round(count / elapsed),
            "index_terms_per_row": round(terms / count, 1),
            "postings_per_row": round(postings / count, 2),
            "disk_bytes_per_row": round(size / count), "loadavg_after": _load()}


async def _time_queries(url: str, repeat: int, pid: int) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async def call(method: str, path: str, body: Any = None) -> Any:
            async with session.request(method, url + path, json=body) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"{resp.status}: {await resp.text()}")
                return await resp.json()

        project = await call("POST", "/v1/project", {"name": PROJECT})
        base = f"/v1/project_logs/{project['id']}"
        latest = await call("POST", base + "/fetch", {"limit": 50})
        # An old row (the oldest of a rare value's matches), found by its id.
        rare = await call("POST", base + "/fetch", {"limit": 50, "filter": RARE_FILTER})
        old_id = rare["events"][-1]["id"]
        # A trace of 50 spans: the benchmark data has 5-span traces, so log one of 50.
        root = uuid.uuid4().hex
        spans = [{"id": f"t50-{root}-{i}", "project_id": project["id"], "root_span_id": root,
                  "span_id": f"{i:016x}", "span_parents": None if i == 0 else [f"{0:016x}"],
                  "input": _text(random.Random(i), 600), "scores": {"s": (i % 3) / 2}}
                 for i in range(50)]
        await call("POST", "/logs3", {"rows": spans})
        cases = {
            "latest_50": ("POST", base + "/fetch", {"limit": 50}),
            "rare_equality_50": ("POST", base + "/fetch", {"limit": 50, "filter": RARE_FILTER}),
            "common_equality_50": ("POST", base + "/fetch",
                                   {"limit": 50, "filter": COMMON_FILTER}),
            "trace_50_spans": ("GET", f"{base}/trace/{root}", None),
            "latest_50_page_2": ("POST", base + "/fetch",
                                 {"limit": 50, "cursor": latest["cursor"]}),
            # Informational: inequality filters scan newest first and stop at the page size.
            "inequality_scan_50": ("POST", base + "/fetch",
                                   {"limit": 50, "filter": "metrics.tokens > 1000"}),
            # A page of 50 traces with their averages and totals.
            "roots_only_50": ("POST", base + "/fetch", {"limit": 50, "roots_only": True}),
            # The monitor page: a week in hourly buckets, split by model.
            "monitor_week_hourly_by_model": (
                "POST", base + "/aggregate",
                {"since": "7d", "bucket": 3600, "split_by": "model"}),
            # The summary beside the logs table: the last 24 hours, with a filter.
            "summary_day_filtered": ("POST", base + "/aggregate",
                                     {"since": "24h", "filter": COMMON_FILTER}),
            "one_id": ("POST", base + "/fetch", {"limit": 50, "filter": f"id = '{old_id}'"}),
        }
        out: dict[str, Any] = {"loadavg_before": _load()}
        for name, (method, path, body) in cases.items():
            reply = await call(method, path, body)
            found = len(reply.get("events", reply.get("spans", reply.get("buckets", []))))
            assert found, f"{name} found nothing: the benchmark would time an empty answer"
            if body and body.get("roots_only"):
                assert all("scores_avg" in r and "trace_totals" in r for r in reply["events"]), \
                    "roots without averages or totals"
            times = []
            cpu_before = _tree_cpu_seconds(pid)
            for _ in range(repeat):
                t0 = time.perf_counter()
                await call(method, path, body)
                times.append((time.perf_counter() - t0) * 1000)
            cpu = _tree_cpu_seconds(pid) - cpu_before
            times.sort()
            # The collector's CPU per query: comparable across runs on a busy machine, where
            # the latencies mostly say how much CPU the other processes left over.
            out[name] = {"rows": found, "p50_ms": round(statistics.median(times), 2),
                         "p90_ms": round(times[int(len(times) * 0.9)], 2),
                         "server_cpu_ms": round(cpu / repeat * 1000, 2)}
        out["loadavg_after"] = _load()
        return out


def query(db: str, repeat: int = 200) -> dict[str, Any]:
    """p50/p90 over HTTP of the four issue-2 queries against an existing database."""
    proc, url = start_collector(db)
    try:
        return asyncio.run(_time_queries(url, repeat, proc.pid))
    finally:
        stop_collector(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["ingest", "build", "query", "all", "writer"])
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--db", default=None, help="database for build/query")
    parser.add_argument("--batch", type=int, default=500,
                        help="rows per HTTP request (writer: rows per transaction)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--workers", type=int, default=None,
                        help="ingest: the collector's --workers (default: its own default)")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.what == "writer":
        print(json.dumps({"writer": writer_only(args.rows or 200_000, args.batch)}))
        return
    if args.what in ("ingest", "all"):
        results["ingest"] = ingest(args.rows or 200_000, args.batch, args.concurrency,
                                   args.workers)
        print(json.dumps({"ingest": results["ingest"]}), flush=True)
    db = args.db
    cleanup = None
    if args.what == "all" and db is None:
        cleanup = tempfile.TemporaryDirectory()
        db = os.path.join(cleanup.name, "bench.sqlite3")
    try:
        if args.what in ("build", "all"):
            assert db, "--db is required"
            results["build"] = build(db, args.rows or 1_000_000)
            print(json.dumps({"build": results["build"]}), flush=True)
        if args.what in ("query", "all"):
            assert db, "--db is required"
            results["query"] = query(db, args.repeat)
            print(json.dumps({"query": results["query"]}), flush=True)
    finally:
        if cleanup is not None:
            cleanup.cleanup()


if __name__ == "__main__":
    main()
