"""The logs table's Download control (docs/viewer.md): the table's filter and time range from
the URL, as a JSON Lines or CSV file, with an API key and on an open collector."""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from viewer_harness import Collector, open_context, watch

from spanlog.server.http._runner import BackgroundCollector

ROWS = "table.logs tbody tr[data-id]"


def _log_traces(collector: Collector, pid: str, now: float) -> None:
    rows = []
    for i in range(6):
        trace = f"{i:032x}"
        rows.append({"id": f"root{i}", "project_id": pid, "span_id": f"r{i}",
                     "root_span_id": trace, "input": f'question "{i}", with\na line break',
                     "output": "answer", "metadata": {"user": "ann" if i % 2 else "bob"},
                     "span_attributes": {"name": "answer", "type": "task"},
                     "metrics": {"start": now - 3600 * i, "end": now - 3600 * i + 1}})
        rows.append({"id": f"child{i}", "project_id": pid, "span_id": f"c{i}",
                     "root_span_id": trace, "span_parents": [f"r{i}"],
                     "span_attributes": {"name": "chat", "type": "llm"},
                     "metrics": {"start": now - 3600 * i, "prompt_tokens": 3,
                                 "completion_tokens": 4}})
    collector.request("POST", "/logs3", {"rows": rows})


def test_download_csv_of_the_filter_and_range_in_the_url(
        viewer: Any, viewer_collector: Collector, project: tuple[str, str],
        tmp_path: Path) -> None:
    """With a key: the CSV holds the traces the table's filter and range select, with totals."""
    _, pid = project
    now = time.time()
    _log_traces(viewer_collector, pid, now)
    query = urllib.parse.urlencode({"filter": "metadata.user = 'ann'",
                                    "since": str(now - 4 * 3600 - 60)})
    viewer.goto(f"{viewer_collector.url}/projects/{pid}?{query}")
    expect(viewer.locator(ROWS).first).to_be_visible()
    with viewer.expect_download() as info:
        viewer.get_by_role("button", name="CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("spanlog-viewer-")
    assert download.suggested_filename.endswith(".csv")
    target = tmp_path / "traces.csv"
    download.save_as(target)
    table = list(csv.DictReader(io.StringIO(target.read_text("utf-8"), newline="")))
    assert [r["id"] for r in table] == ["root3", "root1"]
    assert table[0]["input"] == 'question "3", with\na line break'
    assert table[0]["trace_tokens"] == "7" and table[0]["trace_spans"] == "2"


def test_download_every_span_as_jsonl(viewer: Any, viewer_collector: Collector,
                                      project: tuple[str, str], tmp_path: Path) -> None:
    _, pid = project
    _log_traces(viewer_collector, pid, time.time())
    viewer.goto(f"{viewer_collector.url}/projects/{pid}?filter="
                + urllib.parse.quote("metadata.user = 'bob' OR span_attributes.type = 'llm'"))
    expect(viewer.locator(ROWS).first).to_be_visible()
    viewer.get_by_label("every span").check()
    with viewer.expect_download() as info:
        viewer.get_by_role("button", name="JSONL").click()
    target = tmp_path / "all.jsonl"
    info.value.save_as(target)
    ids = {json.loads(line)["id"] for line in target.read_text("utf-8").splitlines()}
    assert ids == {"root0", "root2", "root4"} | {f"child{i}" for i in range(6)}


def test_a_refused_download_shows_the_error(viewer: Any, viewer_collector: Collector,
                                            project: tuple[str, str]) -> None:
    """An export the collector refuses (a key it no longer accepts) says why in the banner
    and saves no file."""
    _, pid = project
    _log_traces(viewer_collector, pid, time.time())
    viewer.goto(f"{viewer_collector.url}/projects/{pid}")
    expect(viewer.locator(ROWS).first).to_be_visible()
    viewer.evaluate("localStorage.setItem('spanlog.apiKey', 'sl-not-a-key')")
    downloads: list[Any] = []
    viewer.on("download", lambda download: downloads.append(download))
    viewer.get_by_role("button", name="CSV").click()
    expect(viewer.locator("#banner")).to_contain_text("The collector refused this API key")
    expect(viewer.get_by_role("button", name="CSV")).to_be_enabled()
    assert downloads == []


@pytest.fixture
def open_collector(tmp_path: Path) -> Iterator[Collector]:
    """A collector with no keys on loopback: open, any request accepted."""
    server = BackgroundCollector(str(tmp_path / "open.sqlite3")).start()
    try:
        yield Collector(server.url, "")
    finally:
        server.stop()


def test_download_from_an_open_collector_streams_through_the_browser(
        browser: Any, open_collector: Collector, tmp_path: Path) -> None:
    """No key: the browser downloads the endpoint's answer itself."""
    pid = open_collector.project_id("open-export")
    _log_traces(open_collector, pid, time.time())
    context, problems = open_context(browser, open_collector, with_key=False)
    try:
        page = watch(context.new_page(), problems)
        page.goto(f"{open_collector.url}/projects/{pid}")
        expect(page.locator(ROWS)).to_have_count(6)
        with page.expect_download() as info:
            page.get_by_role("button", name="JSONL").click()
        assert info.value.suggested_filename.startswith("spanlog-open-export-")
        target = tmp_path / "open.jsonl"
        info.value.save_as(target)
        rows = [json.loads(line) for line in target.read_text("utf-8").splitlines()]
        assert [r["id"] for r in rows] == [f"root{i}" for i in range(5, -1, -1)]
        problems.check()
    finally:
        context.close()
