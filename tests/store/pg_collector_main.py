"""A collector process on PostgreSQL, for the multi-collector tests.

``python pg_collector_main.py URL`` serves on a free port of 127.0.0.1, prints the port on
the first line of stdout, and stops on SIGTERM/SIGINT or when stdin closes (the test died).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from spanlog.server._postgres import PostgresStore
from spanlog.server._runner import start_site


async def main(url: str) -> None:
    runner, port = await start_site(PostgresStore(url, pool_size=8), "127.0.0.1", 0)
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1() or stop.set())
    try:
        await stop.wait()
    finally:
        loop.remove_reader(sys.stdin.fileno())
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
