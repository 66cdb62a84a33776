"""The ``spanlog`` command: ``serve``, ``logs``, ``keys create|list|revoke``, ``migrate`` and
``demo``.

``serve`` and ``keys`` work on the collector's database: SQLite (``--data-dir`` or ``--db``)
or PostgreSQL (``--postgres URL``, the default when ``$SPANLOG_POSTGRES_URL`` is set and
neither SQLite flag is given); ``migrate`` copies a SQLite database into PostgreSQL;
``logs`` reads through a running collector's HTTP API (``--url``/``SPANLOG_API_URL`` and
``--api-key``/``SPANLOG_API_KEY``), so it works against a remote collector too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from spanlog._config import DEFAULT_API_URL, DEFAULT_PORT

if TYPE_CHECKING:
    from spanlog.server.store._engine import Store

_SERVER_EXTRA = "python3 -m pip install -e '.[server]'"


def _add_database_args(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", default=None,
                       help="directory holding the collector's database (default ./spanlog-data)")
    where.add_argument("--db", default=None, metavar="PATH",
                       help="SQLite database file to use instead of --data-dir")
    where.add_argument("--postgres", default=None, metavar="URL",
                       help="PostgreSQL database, e.g. postgresql://user:pass@host:5432/spanlog "
                            "(default $SPANLOG_POSTGRES_URL when neither --db nor --data-dir "
                            "is given)")
    parser.add_argument("--postgres-pool-size", type=int, default=None, metavar="N",
                        help="most connections to PostgreSQL this process opens "
                             "(default $SPANLOG_POSTGRES_POOL_SIZE or 10)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spanlog", description="Log LLM-application traces into a collector you run.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the collector")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; any other address "
                            "needs an API key to exist first)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help=f"port (default {DEFAULT_PORT}; 0: any free)")
    _add_database_args(serve)
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"], help="default info")
    serve.add_argument("--public-url", default=None,
                       help="base URL clients reach this collector at, when behind a proxy")
    serve.add_argument("--max-body-bytes", type=int, default=None,
                       help="largest request body accepted, after decompression "
                            "(default 32 MiB)")
    serve.add_argument("--query-timeout", type=float, default=None, metavar="SECONDS",
                       help="how long one fetch or trace read may run before it is stopped "
                            "(default 10)")
    serve.add_argument("--workers", type=int, default=None, metavar="N",
                       help="processes that decode and prepare ingested rows beside the "
                            "serving one (SQLite only; default: one per CPU core, 0 on one "
                            "core; 0: the serving process does it)")

    logs = commands.add_parser("logs", help="print a project's latest logs")
    logs.add_argument("project", nargs="?", default="Global", help="project name (default Global)")
    logs.add_argument("--filter", default=None, help="filter, e.g. \"metadata.user_id = '42'\"")
    logs.add_argument("--limit", type=int, default=20, help="rows to print (default 20)")
    logs.add_argument("--roots-only", action="store_true",
                      help="one row per trace (its root span) with the trace's totals and "
                           "score averages")
    logs.add_argument("--since", default=None, metavar="TIME",
                      help="only spans started at or after TIME: Unix seconds, ISO-8601 "
                           "(2026-01-31T12:00:00Z), or 15m, 24h, 7d back from now")
    logs.add_argument("--until", default=None, metavar="TIME",
                      help="only spans started before TIME (same forms as --since)")
    logs.add_argument("--json", action="store_true", help="one JSON row per line")
    logs.add_argument("--url", default=None,
                      help=f"collector URL (default $SPANLOG_API_URL or {DEFAULT_API_URL})")
    logs.add_argument("--api-key", default=None, help="API key (default $SPANLOG_API_KEY)")

    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key and print its secret once")
    create.add_argument("--org", required=True, help="organization the key belongs to "
                                                     "(created if missing)")
    create.add_argument("--project", action="append", default=None, dest="projects",
                        metavar="NAME", help="limit the key to this project (repeatable)")
    create.add_argument("--name", default="", help="a label to recognise the key by")
    _add_database_args(create)
    listing = key_commands.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_database_args(listing)
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id", help="the key's id, as `keys list` shows it (key_...)")
    _add_database_args(revoke)

    from spanlog.server.commands._export import add_export_command
    from spanlog.server.commands._migrate import add_migrate_command

    add_migrate_command(commands)
    add_export_command(commands)

    demo = commands.add_parser("demo", help="start a collector with example traces in it")
    demo.add_argument("--port", type=int, default=DEFAULT_PORT,
                      help=f"port (default {DEFAULT_PORT}; 0: any free)")
    demo.add_argument("--data-dir", default=None,
                      help="directory for the demo's new database, kept afterwards "
                           "(default: a fresh temporary directory)")
    return parser


def _fail(message: str) -> int:
    print(f"spanlog: {message}", file=sys.stderr)
    return 2


# -- database --------------------------------------------------------------------------

def _postgres_url(args: argparse.Namespace) -> str | None:
    """The PostgreSQL URL to use: ``--postgres``, else ``$SPANLOG_POSTGRES_URL`` unless a
    SQLite location was given explicitly."""
    if args.postgres:
        return str(args.postgres)
    if args.db is None and args.data_dir is None:
        return os.environ.get("SPANLOG_POSTGRES_URL", "").strip() or None
    return None


def _open_store(args: argparse.Namespace) -> tuple[Store, str]:
    """The (not yet started) store the flags name, and how to show it in messages.

    Raises ValueError for a malformed PostgreSQL URL or pool size.
    """
    url = _postgres_url(args)
    if url is None:
        if args.postgres_pool_size is not None:
            raise ValueError("--postgres-pool-size applies only with --postgres "
                             "(or $SPANLOG_POSTGRES_URL)")
        from spanlog.server.http._runner import database_path
        from spanlog.server.store.sqlite._store import SqliteStore

        path = database_path(args.data_dir, args.db)
        return SqliteStore(path), os.path.abspath(path)
    from spanlog.server.store.postgres._store import PostgresStore, redact

    return PostgresStore(url, pool_size=args.postgres_pool_size), redact(url)


# -- serve -----------------------------------------------------------------------------

async def _serve(args: argparse.Namespace) -> int:
    from spanlog.server.http._auth import is_loopback
    from spanlog.server.http._context import Settings
    from spanlog.server.http._runner import StartupRefused, start_site
    from spanlog.server.http._tuning import tune_process
    from spanlog.server.http._workers import worker_count
    from spanlog.server.store._errors import StoreCorrupt
    from spanlog.server.store.postgres._store import PostgresUnavailable
    from spanlog.server.store.sqlite._upgrade import SchemaTooNew

    try:
        store, where = _open_store(args)
    except ValueError as exc:
        return _fail(str(exc))
    settings = Settings(public_url=args.public_url)
    if args.max_body_bytes is not None:
        settings.max_body_bytes = args.max_body_bytes
    if args.query_timeout is not None:
        if not args.query_timeout > 0:
            return _fail(f"--query-timeout: must be a number of seconds > 0, got "
                         f"{args.query_timeout}")
        settings.query_timeout = args.query_timeout
    try:
        settings.ingest_workers = worker_count(args.workers, store.prepare_rows,
                                               "--workers")
    except ValueError as exc:
        return _fail(str(exc))
    try:
        runner, port = await start_site(store, args.host, args.port, settings)
    except (StartupRefused, SchemaTooNew, PostgresUnavailable, StoreCorrupt) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = args.public_url or f"http://{host}:{port}"
    keyed = await store.has_keys() or not is_loopback(args.host)
    tune_process()
    print(f"spanlog collector listening on {url}", flush=True)
    print(f"  database: {where}")
    if settings.ingest_workers:
        print(f"  ingest workers: {settings.ingest_workers} processes (--workers)")
    print(f"  viewer: {url}/")
    if keyed:
        print("  auth: API key required (create one with `spanlog keys create --org NAME`)")
        print(f"  log into it: SPANLOG_API_URL={url} SPANLOG_API_KEY=<your key>")
    else:
        print("  auth: open (loopback, no keys yet): any API key is accepted")
        print(f"  log into it: SPANLOG_API_URL={url}")
    print("  Ctrl-C to stop", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    print("spanlog collector stopped", flush=True)
    return 0


# -- keys ------------------------------------------------------------------------------

async def _keys(args: argparse.Namespace) -> int:
    from spanlog.server.http._auth import create_key
    from spanlog.server.store._errors import NotFound
    from spanlog.server.store.postgres._store import PostgresUnavailable
    from spanlog.server.store.sqlite._upgrade import SchemaTooNew

    try:
        store, _ = _open_store(args)
        await store.start()
    except (ValueError, PostgresUnavailable, SchemaTooNew) as exc:
        return _fail(str(exc))
    try:
        if args.keys_command == "create":
            key, token = await create_key(store, args.org, projects=args.projects,
                                          name=args.name)
            scope = ", ".join(key.projects) if key.projects else "all projects"
            print(token)
            print(f"created {key.id} for organization {key.org_name!r} ({scope}); "
                  "the secret above is shown only once", file=sys.stderr)
        elif args.keys_command == "list":
            for key in await store.keys():
                if args.json:
                    print(json.dumps({"id": key.id, "name": key.name, "org": key.org_name,
                                      "projects": list(key.projects) if key.projects else None,
                                      "created": key.created, "revoked": key.revoked}))
                else:
                    state = f"revoked {key.revoked}" if key.revoked else "active"
                    scope = ",".join(key.projects) if key.projects else "*"
                    print(f"{key.id}  org={key.org_name}  projects={scope}  "
                          f"name={key.name or '-'}  created={key.created}  {state}")
        else:
            try:
                key = await store.revoke_key(args.key_id)
            except NotFound as exc:
                return _fail(str(exc))
            print(f"revoked {key.id} (organization {key.org_name!r})")
    finally:
        await store.close()
    return 0


# -- logs ------------------------------------------------------------------------------

def _call(url: str, key: str | None, method: str, path: str, body: Any = None) -> Any:
    from spanlog.server.commands._api import open_api

    with open_api(url, key, method, path, body) as resp:
        return json.loads(resp.read())


def _logs(args: argparse.Namespace) -> int:
    from spanlog.server.commands._logs_table import format_table

    url = args.url or os.environ.get("SPANLOG_API_URL") or DEFAULT_API_URL
    key = args.api_key or os.environ.get("SPANLOG_API_KEY")
    if args.limit < 1:
        return _fail("--limit must be at least 1")
    try:
        query = urllib.parse.urlencode({"project_name": args.project})
        found = _call(url, key, "GET", f"/v1/project?{query}")["objects"]
        if not found:
            return _fail(f"no project named {args.project!r} at {url}")
        body: dict[str, Any] = {"limit": min(args.limit, 1000), "roots_only": args.roots_only}
        for field in ("filter", "since", "until"):
            if getattr(args, field):
                body[field] = getattr(args, field)
        rows: list[dict[str, Any]] = []
        while len(rows) < args.limit:
            page = _call(url, key, "POST", f"/v1/project_logs/{found[0]['id']}/fetch", body)
            rows.extend(page["events"])
            if not page.get("cursor"):
                break
            body["cursor"] = page["cursor"]
    except RuntimeError as exc:
        return _fail(f"{url}: {exc}")
    except urllib.error.URLError as exc:
        return _fail(f"cannot reach the collector at {url}: {exc.reason} "
                     "(is `spanlog serve` running? set --url or SPANLOG_API_URL)")
    rows = rows[:args.limit]
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        print(format_table(rows, traces=args.roots_only))
    return 0


# -- main ------------------------------------------------------------------------------

def _demo(args: argparse.Namespace) -> int:
    from ._demo import main as run_demo  # loaded when used: it starts a collector

    return run_demo(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``spanlog`` command line; return the process exit status."""
    args = _parser().parse_args(argv)
    if args.command in ("serve", "keys"):
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            return _fail(f"the collector needs aiohttp: {_SERVER_EXTRA}")
    if args.command == "serve":
        logging.basicConfig(level=args.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return asyncio.run(_serve(args))
    if args.command == "keys":
        return asyncio.run(_keys(args))
    if args.command == "logs":
        return _logs(args)
    if args.command in ("migrate", "export"):
        result: int = args.run(args)
        return result
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
