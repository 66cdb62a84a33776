"""``spanlog export``: a project's rows for a filter and time range, as JSON Lines or CSV, to a
file or stdout, through a collector's export endpoint (docs/cli.md, docs/protocol.md "Export").

The download is copied as it arrives, so it never sits in memory; a file is written under a
temporary name and renamed once complete, so an interrupted export leaves no file that looks
whole. Long exports print a progress line on stderr every few seconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, Any

from spanlog._config import DEFAULT_API_URL
from spanlog.server.commands._api import open_api

_CHUNK = 1 << 16
# Seconds between two progress lines (none for an export that ends sooner).
PROGRESS_EVERY = 2.0


def add_export_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``export`` on the ``spanlog`` command's subparsers; return its parser.

    The parsed namespace's ``run`` attribute is the function to call with it.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "export", help="download a project's logs as JSON Lines or CSV",
        description="Download every row of a project matching a filter and time range, "
                    "most recently updated first, through a running collector.")
    parser.add_argument("--project", default="Global", help="project name (default Global)")
    parser.add_argument("--filter", default=None, help="filter, e.g. \"metadata.user_id = '42'\"")
    parser.add_argument("--since", default=None,
                        help="spans that started at or after: Unix seconds, ISO-8601, or "
                             "15m, 24h, 7d back")
    parser.add_argument("--until", default=None, help="spans that started before (same forms)")
    parser.add_argument("--roots-only", action="store_true",
                        help="one line per trace (its root span, with trace totals)")
    parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl",
                        help="jsonl (default) or csv")
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="file to write (default: stdout)")
    parser.add_argument("--url", default=None,
                        help=f"collector URL (default $SPANLOG_API_URL or {DEFAULT_API_URL})")
    parser.add_argument("--api-key", default=None, help="API key (default $SPANLOG_API_KEY)")
    parser.set_defaults(run=run)
    return parser


class RecordCounter:
    """Counts the records of a JSON Lines or CSV stream fed in chunks (a CSV line break
    inside a quoted field ends no record; the CSV header counts as none)."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self._lines = 0
        self._quoted = False

    @property
    def records(self) -> int:
        """Records (rows) seen so far."""
        return max(self._lines - 1, 0) if self.fmt == "csv" else self._lines

    def feed(self, chunk: bytes) -> None:
        """Count the record ends in ``chunk``."""
        if self.fmt == "jsonl":
            self._lines += chunk.count(b"\n")
            return
        pieces = chunk.split(b"\n")
        for piece in pieces[:-1]:
            self._quoted ^= piece.count(b'"') % 2 == 1
            if not self._quoted:
                self._lines += 1
        self._quoted ^= pieces[-1].count(b'"') % 2 == 1


def _copy(resp: Any, out: IO[bytes], counter: RecordCounter, err: IO[str]) -> int:
    started = last = time.monotonic()
    size = 0
    while True:
        chunk = resp.read1(_CHUNK)
        if not chunk:
            return size
        out.write(chunk)
        size += len(chunk)
        counter.feed(chunk)
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY:
            last = now
            print(f"spanlog export: {counter.records} rows, {size / 1e6:.1f} MB, "
                  f"{now - started:.0f}s", file=err, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``spanlog export`` command; return the process exit status."""
    err = sys.stderr
    url = args.url or os.environ.get("SPANLOG_API_URL") or DEFAULT_API_URL
    key = args.api_key or os.environ.get("SPANLOG_API_KEY")

    def fail(message: str) -> int:
        print(f"spanlog export: {message}", file=err)
        return 2

    query: dict[str, str] = {"format": args.format}
    for name in ("filter", "since", "until"):
        if getattr(args, name):
            query[name] = getattr(args, name)
    if args.roots_only:
        query["roots_only"] = "true"
    counter = RecordCounter(args.format)
    part = None if args.output is None else f"{args.output}.part"
    try:
        out = sys.stdout.buffer if part is None else open(part, "wb")
    except OSError as exc:
        return fail(f"--output {args.output}: cannot write there: {exc.strerror or exc}")
    try:
        with open_api(url, key, "GET", "/v1/project?" + urllib.parse.urlencode(
                {"project_name": args.project})) as resp:
            found = json.loads(resp.read())["objects"]
        if not found:
            return fail(f"no project named {args.project!r} at {url}")
        path = (f"/v1/project_logs/{urllib.parse.quote(found[0]['id'], safe='')}/export?"
                + urllib.parse.urlencode(query))
        with open_api(url, key, "GET", path, timeout=60) as resp:
            size = _copy(resp, out, counter, err)
        out.flush()
        if part is not None:
            out.close()
            os.replace(part, args.output)
    except RuntimeError as exc:
        return fail(f"{url}: {exc}")
    except urllib.error.URLError as exc:
        return fail(f"cannot reach the collector at {url}: {exc.reason} "
                    "(is `spanlog serve` running? set --url or SPANLOG_API_URL)")
    except (http.client.HTTPException, OSError) as exc:
        return fail(f"the export from {url} broke off: {exc!r}"
                    + ("" if part is None else f" ({args.output} not written)"))
    finally:
        if part is not None:
            out.close()
            if os.path.exists(part):
                os.remove(part)
    print(f"spanlog export: {counter.records} rows ({size / 1e6:.1f} MB) to "
          f"{args.output or 'stdout'}", file=err)
    return 0
