"""A throwaway PostgreSQL 15 cluster: initdb in a temp dir, served on a free local port.

Used by the store tests and ``bench/collector_postgres.py``. Run as root, the server runs as
the ``postgres`` user (PostgreSQL refuses to run as root), with the temp dir chowned to it.
The server listens on 127.0.0.1 only, with its unix socket inside the temp dir, and trusts
local connections (user ``spanlog``, superuser): nothing here is meant to outlive the run.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

PG_BIN = Path(os.environ.get("SPANLOG_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "spanlog"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """One PostgreSQL server in a temp dir; :meth:`start` it, :meth:`stop` removes it all."""

    def __init__(self, *, durable: bool = False, max_file_bytes: int | None = None,
                 max_connections: int = 300) -> None:
        # durable=False turns fsync off: the tests check behaviour, not power-loss safety.
        self.durable = durable
        # max_file_bytes: no file of the server may grow past it (RLIMIT_FSIZE, which
        # PostgreSQL meets as a failed write: see test_store_disk_full.py).
        self.max_file_bytes = max_file_bytes
        self.max_connections = max_connections
        root = os.geteuid() == 0
        # As root the server runs as `postgres`, which must reach the directory: /tmp is
        # open to every user, a root-only $TMPDIR may not be.
        where = "/tmp" if root and os.path.isdir("/tmp") else None
        self.root = Path(tempfile.mkdtemp(prefix="spanlog-pg-", dir=where))
        self.data = self.root / "data"
        self.port = 0
        self._as: list[str] = []
        if root:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def url(self, database: str = "postgres") -> str:
        """The connection URL of ``database`` on this server."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60.0, limited: bool = False) -> None:
        limit = []
        if limited and self.max_file_bytes is not None:
            limit = ["prlimit", f"--fsize={self.max_file_bytes}:{self.max_file_bytes}"]
        result = subprocess.run([*self._as, *limit, *args], capture_output=True, text=True,
                                timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr}\n{tail}")

    def start(self) -> Cluster:
        """initdb, then start the server on a free port (a few tries if a port is taken)."""
        initdb = PG_BIN / "initdb"
        if not initdb.exists():
            raise RuntimeError(f"{initdb} not found: install PostgreSQL 15 (Debian package "
                               "postgresql-15; .ci/run does) or set SPANLOG_PG_BIN")
        # Under a file size limit, 1 MB WAL segments (the least) leave room below it.
        small_wal = ["--wal-segsize=1"] if self.max_file_bytes is not None else []
        self._run(str(initdb), "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync", *small_wal)
        settings = ["-c listen_addresses=127.0.0.1", f"-k {self.root}",
                    f"-c max_connections={self.max_connections}", "-c shared_buffers=256MB"]
        if not self.durable:
            settings += ["-c fsync=off", "-c full_page_writes=off"]
        last: Exception | None = None
        for _ in range(5):
            self.port = _free_port()
            try:
                self._run(str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D",
                          str(self.data), "-l", str(self.root / "server.log"),
                          "-o", " ".join([f"-p {self.port}", *settings]), limited=True)
                return self
            except RuntimeError as exc:  # most likely the port was taken in between
                last = exc
        raise RuntimeError(f"PostgreSQL did not start: {last}")

    def stop(self) -> None:
        """Stop the server (if running) and delete the temp dir."""
        try:
            if (self.data / "postmaster.pid").exists():
                # immediate: no shutdown checkpoint, the data is deleted right after.
                self._run(str(PG_BIN / "pg_ctl"), "stop", "-w", "-t", "60", "-m", "immediate",
                          "-D", str(self.data))
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def new_database(cluster: Cluster) -> str:
    """Create an empty database on ``cluster``; return its URL."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(cluster.url())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return cluster.url(name)


async def new_schema(cluster: Cluster) -> str:
    """A URL whose connections see only a fresh, empty schema (through search_path):
    much cheaper than a database, for the many tests that only need empty tables."""
    import asyncpg

    name = f"s_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(cluster.url())
    try:
        await conn.execute(f'CREATE SCHEMA "{name}"')
    finally:
        await conn.close()
    return f"{cluster.url()}?search_path={name}"
