"""Collector benchmark on the PostgreSQL engine: ingest with one and two collectors, queries.

Reuses ``bench/collector.py`` (its row generator, HTTP load and query set), so the figures
compare with the SQLite engine's one for one. Not a pass/fail test: it prints what it measured.

    python3 bench/collector_postgres.py ingest --rows 200000 --collectors 1
    python3 bench/collector_postgres.py ingest --rows 200000 --collectors 2
    python3 bench/collector_postgres.py build --build-rows 1000000 --postgres URL
    python3 bench/collector_postgres.py query --postgres URL
    python3 bench/collector_postgres.py all        # the above on a throwaway cluster

Without ``--postgres`` it runs a throwaway PostgreSQL 15 cluster (``tests/store/pg_cluster``)
with fsync ON, as a production server would run (``--no-fsync`` to turn it off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "store"))

import collector as base  # noqa: E402  (bench/collector.py: generator, load, query set)

# -- a collector process on PostgreSQL ------------------------------------------------------

async def _serve(url: str, pool_size: int) -> None:
    from spanlog.server.http._runner import start_site
    from spanlog.server.store.postgres._store import PostgresStore

    runner, port = await start_site(PostgresStore(url, pool_size=pool_size), "127.0.0.1", 0)
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def start_collector(url: str, pool_size: int) -> tuple[subprocess.Popen[str], str]:
    """A collector process serving ``url`` (this file's ``serve`` command)."""
    return base.launch([sys.executable, __file__, "serve", "--postgres", url,
                        "--pool-size", str(pool_size)])


# -- ingest ----------------------------------------------------------------------------------

async def _post_spread(urls: list[str], bodies: list[bytes], concurrency: int) -> float:
    """Post ``bodies`` with ``concurrency`` workers per collector, round-robin."""
    share = [bodies[i::len(urls)] for i in range(len(urls))]
    started = time.perf_counter()
    await asyncio.gather(*(base._post_all(url, part, concurrency)
                           for url, part in zip(urls, share, strict=True)))
    return time.perf_counter() - started


def ingest(url: str, rows: int, batch: int, concurrency: int, collectors: int,
           pool_size: int) -> dict[str, Any]:
    """Rows/s acknowledged over HTTP by ``collectors`` processes sharing one database."""
    procs = [start_collector(url, pool_size) for _ in range(collectors)]
    try:
        bodies = []
        generated = list(base.generate(rows, seed=2))
        for i in range(0, rows, batch):
            chunk = [{**r, "project_name": base.PROJECT} for r in generated[i:i + batch]]
            bodies.append(json.dumps({"rows": chunk, "api_version": 2}).encode())
        del generated
        asyncio.run(base._post_all(procs[0][1], bodies[:1], 1))  # creates the project
        cpu_before = [base._cpu_seconds(p.pid) for p, _ in procs]
        elapsed = asyncio.run(_post_spread([u for _, u in procs], bodies[1:], concurrency))
        cpu = sum(base._cpu_seconds(p.pid) - c for (p, _), c in zip(procs, cpu_before,
                                                                     strict=True))
    finally:
        for proc, _ in procs:
            base.stop_collector(proc)
    done = rows - min(batch, rows)
    return {"collectors": collectors, "rows": done, "seconds": round(elapsed, 2),
            "rows_per_s": round(done / elapsed), "collector_cores_used": round(cpu / elapsed, 2),
            "batch": batch, "concurrency_per_collector": concurrency}


# -- build and query --------------------------------------------------------------------------

async def _build(url: str, rows: int, batch: int) -> dict[str, Any]:
    import asyncpg

    from spanlog.server.store._records import Piece
    from spanlog.server.store.postgres._store import PostgresStore

    store = PostgresStore(url, pool_size=6, writers=4)
    await store.start()
    try:
        project_id = await base.bench_project(store)
        started = time.perf_counter()
        pending: list[Piece] = []
        writes: list[asyncio.Future[None]] = []
        for row in base.generate(rows, seed=3):
            pending.append(Piece(project_id, row))
            if len(pending) >= batch:
                writes.append(asyncio.ensure_future(store.write(pending)))
                pending = []
                if len(writes) >= 8:
                    await writes.pop(0)
        if pending:
            writes.append(asyncio.ensure_future(store.write(pending)))
        await asyncio.gather(*writes)
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE spanlog_rows")
        count = await conn.fetchval("SELECT count(*) FROM spanlog_rows")
        size = await conn.fetchval("SELECT pg_total_relation_size('spanlog_rows')")
        gin = await conn.fetchval("SELECT pg_relation_size('spanlog_rows_data')")
    finally:
        await conn.close()
    return {"rows": count, "seconds": round(elapsed, 1), "rows_per_s": round(count / elapsed),
            "disk_bytes_per_row": round(size / count), "gin_bytes_per_row": round(gin / count)}


def query(url: str, repeat: int) -> dict[str, Any]:
    """p50/p90 over HTTP of bench/collector.py's query set, one collector on ``url``."""
    proc, http = start_collector(url, 10)
    try:
        return dict(asyncio.run(base._time_queries(http, repeat, proc.pid)))
    finally:
        base.stop_collector(proc)


def _fresh_database(admin_url: str, name: str) -> str:
    import asyncpg

    async def make() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(make())
    return admin_url.rsplit("/", 1)[0] + "/" + name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["ingest", "build", "query", "all", "serve"])
    parser.add_argument("--postgres", default=None, help="database URL (default: throwaway)")
    parser.add_argument("--rows", type=int, default=200_000, help="rows to ingest")
    parser.add_argument("--build-rows", type=int, default=1_000_000, help="rows to build")
    parser.add_argument("--collectors", type=int, default=1)
    parser.add_argument("--batch", type=int, default=500, help="rows per HTTP request")
    parser.add_argument("--concurrency", type=int, default=8, help="requests per collector")
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the throwaway cluster is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.what == "serve":
        asyncio.run(_serve(args.postgres, args.pool_size))
        return
    cluster = None
    url = args.postgres
    if url is None:
        from pg_cluster import Cluster

        cluster = Cluster(durable=not args.no_fsync).start()
        url = cluster.url()
    try:
        if args.what in ("ingest", "all"):
            counts = [1, 2] if args.what == "all" else [args.collectors]
            for n in counts:
                db = _fresh_database(url, f"ingest{n}") if cluster or args.what == "all" else url
                result = ingest(db, args.rows, args.batch, args.concurrency, n,
                                args.pool_size)
                print(json.dumps({"ingest": result}), flush=True)
        big = url
        if args.what == "all" or (cluster is not None and args.what == "build"):
            big = _fresh_database(url, "bench1m")
        if args.what in ("build", "all"):
            print(json.dumps({"build": asyncio.run(_build(big, args.build_rows, 2000))}),
                  flush=True)
        if args.what in ("query", "all"):
            print(json.dumps({"query": query(big, args.repeat)}), flush=True)
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
