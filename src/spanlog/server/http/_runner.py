"""Running a collector: in the foreground (``spanlog serve``) or on a background thread.

:class:`BackgroundCollector` gives tests, ``spanlog demo`` and embedding applications a
collector with its own event loop on a daemon thread: ``start()`` returns once it listens,
``stop()`` returns once every connection, thread and file is closed.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from spanlog.server.http._app import create_app
from spanlog.server.http._auth import is_loopback
from spanlog.server.http._context import Settings
from spanlog.server.http._guard import KEEPALIVE_TIMEOUT, guard
from spanlog.server.store._engine import Store
from spanlog.server.store.sqlite._store import SqliteStore

DEFAULT_HOST = "127.0.0.1"
DEFAULT_DATA_DIR = "./spanlog-data"
DB_FILE = "spanlog.sqlite3"


class StartupRefused(RuntimeError):
    """The collector will not start as configured (the message says why and what to do)."""


def database_path(data_dir: str | None = None, db: str | None = None) -> str:
    """The SQLite file for ``--db`` or inside ``--data-dir`` (default ``./spanlog-data``)."""
    if db:
        return db
    return os.path.join(data_dir or DEFAULT_DATA_DIR, DB_FILE)


async def check_bind(store: Store, host: str) -> None:
    """Refuse a non-loopback bind while no key exists (anyone could write)."""
    if not is_loopback(host) and not await store.has_keys():
        raise StartupRefused(
            f"refusing to listen on {host}: no API keys exist, so anyone who can reach this "
            "address could read and write logs. Create one first with "
            "`spanlog keys create --org NAME`, or bind to 127.0.0.1.")


async def start_site(store: Store, host: str, port: int,
                     settings: Settings | None = None) -> tuple[web.AppRunner, int]:
    """Start serving ``store`` on ``host:port`` (0: any free port); return runner and port."""
    settings = settings or Settings()
    settings.open_allowed = settings.open_allowed and is_loopback(host)
    settings.listen_host = host
    app = create_app(store, settings)
    # lingering_time: after an early 413, read (and drop) the rest of the body for at most
    # a second so the client sees the answer, without inflating a gzip bomb for 10 seconds.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, lingering_time=1.0,
                           keepalive_timeout=KEEPALIVE_TIMEOUT,
                           auto_decompress=False)  # _body decodes (JSON errors, limits)
    await runner.setup()  # starts the store (the app's cleanup context)
    guard(runner, settings.max_connections)
    try:
        await check_bind(store, host)
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[-1][1])


class BackgroundCollector:
    """A collector serving a SQLite file on a daemon thread with its own event loop."""

    def __init__(self, db_path: str, *, host: str = DEFAULT_HOST, port: int = 0,
                 settings: Settings | None = None) -> None:
        self.db_path = db_path
        self.host = host
        self.port = port
        self.store = SqliteStore(db_path)
        self._settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:8700``."""
        return f"http://{self.host}:{self.port}"

    @property
    def app(self) -> web.Application:
        """The running application (for tests and embedding code)."""
        assert self._runner is not None, "the collector is not running"
        return self._runner.app

    def start(self, timeout: float = 30.0) -> BackgroundCollector:
        """Start serving; return once the port listens (raises what startup raised)."""
        self._thread = threading.Thread(target=self._main, name="spanlog-collector",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"collector did not start within {timeout}s")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error
        return self

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run coroutine function ``fn`` on the collector's loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving and release everything; safe to call twice."""
        if self._loop is None or self._thread is None:
            return
        loop, self._loop = self._loop, None
        loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"collector did not stop within {timeout}s")

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(loop))
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stopping = asyncio.Event()
        runner, self.port = await start_site(self.store, self.host, self.port, self._settings)
        self._runner = runner
        self._loop = loop
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    def __enter__(self) -> BackgroundCollector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
