"""Paging through fetch with cursors while rows keep arriving (keyset on the transaction id)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from spanlog_server_http import call


def _post(collector, pid: str, rows: list[dict[str, Any]]) -> None:
    status, body = call(collector.url, "POST", "/logs3",
                        {"rows": [{"project_id": pid, **r} for r in rows]},
                        token=collector.api_key)
    assert status == 200, body


def _page(collector, pid: str, cursor: str | None, limit: int = 50,
          filter: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    body: dict[str, Any] = {"limit": limit}
    if cursor:
        body["cursor"] = cursor
    if filter:
        body["filter"] = filter
    status, page = call(collector.url, "POST", f"/v1/project_logs/{pid}/fetch", body,
                        token=collector.api_key)
    assert status == 200, page
    return page["events"], page["cursor"]


def test_pages_have_no_duplicates_while_rows_change(collector):
    """New and updated rows during paging never repeat a row; they show up on a fresh page."""
    pid = collector.project_id(f"paging-{uuid.uuid4().hex[:8]}")
    _post(collector, pid, [{"id": f"r{i:03d}", "metadata": {"i": i, "kind": "old"}}
                           for i in range(230)])
    seen: list[str] = []
    cursor = None
    written = 0
    while True:
        rows, cursor = _page(collector, pid, cursor)
        seen.extend(r["id"] for r in rows)
        # Between pages: a brand-new row, an update of a row already seen, and an update
        # of a row not seen yet (which moves it to the front: it leaves the later pages).
        _post(collector, pid, [{"id": f"new{written}", "metadata": {"kind": "new"}}])
        _post(collector, pid, [{"id": seen[0], "_is_merge": True, "output": written}])
        _post(collector, pid, [{"id": f"r{written:03d}", "_is_merge": True, "output": "moved"}])
        written += 1
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "a row appeared on two pages"
    moved = {f"r{i:03d}" for i in range(written)}
    assert {f"r{i:03d}" for i in range(230)} - moved <= set(seen)
    assert not any(s.startswith("new") for s in seen[50:]), "a new row appeared on a later page"
    fresh, _ = _page(collector, pid, None, limit=3 * written)
    assert {f"new{i}" for i in range(written)} <= {r["id"] for r in fresh}


def test_filtered_pages_follow_the_index_order(collector):
    """Paging an indexed equality filter returns each match once, newest first."""
    pid = collector.project_id(f"paging-f-{uuid.uuid4().hex[:8]}")
    _post(collector, pid, [{"id": f"r{i:03d}", "metadata": {"parity": i % 2}} for i in range(121)])
    ids: list[str] = []
    xacts: list[int] = []
    cursor = None
    while True:
        rows, cursor = _page(collector, pid, cursor, limit=20, filter="metadata.parity = 0")
        ids += [r["id"] for r in rows]
        xacts += [int(r["_xact_id"]) for r in rows]
        if cursor is None:
            break
    assert sorted(ids) == [f"r{i:03d}" for i in range(0, 121, 2)]
    assert xacts == sorted(xacts, reverse=True)


def test_concurrent_writers_and_reader(collector):
    """Pages read while several clients write never contain a duplicate, and end complete."""
    pid = collector.project_id(f"paging-c-{uuid.uuid4().hex[:8]}")
    _post(collector, pid, [{"id": f"base{i}"} for i in range(200)])
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            i = 0
            while not stop.is_set() and i < 200:
                _post(collector, pid, [{"id": f"w{n}-{i}-{j}"} for j in range(5)])
                i += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            seen: list[str] = []
            cursor = None
            while True:
                rows, cursor = _page(collector, pid, cursor, limit=37)
                seen.extend(r["id"] for r in rows)
                if cursor is None:
                    break
            assert len(seen) == len(set(seen))
            assert {f"base{i}" for i in range(200)} <= set(seen)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
