"""``GET /v1/project_logs/{id}/export``: a project's rows for a filter and time range, as
JSON Lines or CSV, streamed (docs/protocol.md, "Export").

The handler pages through :meth:`Store.fetch` (:data:`EXPORT_PAGE` rows a read, each read
within the store's per-query time budget) and writes each page as one chunk before reading
the next, so memory holds one page whatever the size of the export, and a client that reads
slowly slows the reads down instead of filling the collector's memory. A client that goes
away stops the export at its next write or read.

Errors found before the first byte (a bad filter, a missing project) are the API's usual
JSON errors. Once the response has started its status cannot change: a read that fails
then (a query past its time budget, a shutdown) aborts the connection without the last
chunk, so the client sees an incomplete download, never a short file that looks whole.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
import time
import urllib.parse
from typing import Any

from aiohttp import web

from spanlog.server.http._context import STORE, request_access, request_project
from spanlog.server.http._reads import client_gone, fetch_args, unless_gone
from spanlog.server.rows._json import dumps_internal
from spanlog.server.store._errors import BadRequest
from spanlog.server.store._records import Page

log = logging.getLogger("spanlog.server")

# Rows per store read: big enough that a read's fixed cost (and a roots page's totals) is
# spread thin, small enough that one page of large spans stays a few MB.
EXPORT_PAGE = 500

FORMATS = {"jsonl": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}

# CSV columns: (header, path in the row). Scalars are written as they are, objects and
# arrays as compact JSON text, a missing or null value as an empty cell.
CSV_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("id", ("id",)), ("created", ("created",)), ("span_id", ("span_id",)),
    ("root_span_id", ("root_span_id",)), ("span_parents", ("span_parents",)),
    ("name", ("span_attributes", "name")), ("type", ("span_attributes", "type")),
    ("start", ("metrics", "start")), ("end", ("metrics", "end")),
    ("input", ("input",)), ("output", ("output",)), ("expected", ("expected",)),
    ("error", ("error",)), ("tags", ("tags",)), ("scores", ("scores",)),
    ("metadata", ("metadata",)), ("metrics", ("metrics",)), ("comment", ("comment",)),
    ("_xact_id", ("_xact_id",)),
)
# With roots_only: each trace's score averages (JSON) and its totals, one column each.
ROOT_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("scores_avg", ("scores_avg",)),
    *((f"trace_{name}", ("trace_totals", name)) for name in (
        "spans", "llm_calls", "prompt_tokens", "completion_tokens", "tokens",
        "estimated_cost", "unpriced_llm_calls", "errors", "duration")),
)


def _cell(row: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = row
    for key in path:  # decoded JSON: objects are dicts (no Mapping check, which is slow)
        if type(value) is not dict:
            return ""
        value = value.get(key)
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is dict or type(value) is list:
        # Compact JSON; a cell need not match json.dumps' text byte for byte.
        return dumps_internal(value)
    return value


def csv_columns(roots_only: bool) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The CSV columns of an export, in order."""
    return CSV_COLUMNS + ROOT_COLUMNS if roots_only else CSV_COLUMNS


def csv_chunk(rows: list[dict[str, Any]], columns: tuple[tuple[str, tuple[str, ...]], ...],
              header: bool) -> bytes:
    """``rows`` as CSV lines (RFC 4180: CRLF, fields with quotes, commas or newlines quoted,
    quotes doubled), with the header line first when ``header``."""
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow([name for name, _ in columns])
    for row in rows:
        writer.writerow([_cell(row, path) for _, path in columns])
    return out.getvalue().encode("utf-8")


def _chunk(page: Page, fmt: str, columns: tuple[tuple[str, tuple[str, ...]], ...],
           header: bool) -> bytes:
    if fmt == "jsonl":
        lines = page.lines()
        return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
    return csv_chunk(page.rows, columns, header)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def attachment(project_name: str, fmt: str, now: float | None = None) -> str:
    """The ``Content-Disposition`` of an export: ``spanlog-<project>-<UTC time>.<format>``
    (an ASCII name, and the project's own name in ``filename*``)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    plain = _UNSAFE.sub("_", project_name).strip("._") or "project"
    full = f"spanlog-{project_name}-{stamp}.{fmt}"
    return (f'attachment; filename="spanlog-{plain}-{stamp}.{fmt}"; '
            f"filename*=UTF-8''{urllib.parse.quote(full, safe='')}")


async def export(request: web.Request) -> web.StreamResponse:
    """``GET /v1/project_logs/{id}/export``: every row matching ``filter``, ``since``,
    ``until`` and ``roots_only``, most recently updated first, as JSON Lines or CSV."""
    access = await request_access(request)
    project = await request_project(request, access, request.match_info["project_id"])
    source: dict[str, Any] = dict(request.query)
    fmt = source.pop("format", "jsonl")
    if fmt not in FORMATS:
        raise BadRequest(f"format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    for name in ("limit", "cursor"):
        if name in source:
            raise BadRequest(f"{name}: an export has no {name}; it streams every matching "
                             "row (narrow it with filter, since and until)")
    args = fetch_args(source)
    args["limit"] = EXPORT_PAGE
    store = request.app[STORE]
    columns = csv_columns(args["roots_only"])
    # The first page before the response starts: its errors are ordinary JSON errors.
    page = await unless_gone(request, store.fetch(project.id, **args))
    response = web.StreamResponse(headers={
        "Content-Type": FORMATS[fmt], "Cache-Control": "no-store",
        "Content-Disposition": attachment(project.name, fmt),
        "X-Content-Type-Options": "nosniff"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    header = True
    try:
        while True:
            # Encoding a page is CPU work: on a thread, never on the event loop.
            chunk = await asyncio.to_thread(_chunk, page, fmt, columns, header)
            header = False
            if chunk:
                await response.write(chunk)
            if page.cursor is None:
                break
            args["cursor"] = page.cursor
            page = await unless_gone(request, store.fetch(project.id, **args))
    except ConnectionResetError:
        return response  # the client went away (aiohttp raises a subclass of it)
    except Exception as exc:
        if not client_gone(request):
            log.warning("spanlog: export of project %s stopped: %s", project.id, exc)
        # No last chunk: the client sees a broken download, not a complete-looking file.
        if request.transport is not None:
            request.transport.abort()
        response.force_close()
        return response
    await response.write_eof()
    return response


def setup_export(app: web.Application) -> None:
    """Add the export endpoint to the collector's ``app``."""
    app.router.add_get("/v1/project_logs/{project_id}/export", export)
