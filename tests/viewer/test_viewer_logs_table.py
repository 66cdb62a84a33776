"""The logs table's trace totals (duration, LLM calls, tokens, cost, errors) and its time
range, in headless Chromium against a collector filled by the SDK (issue 20)."""

from __future__ import annotations

import re
import time
import urllib.parse
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect
from viewer_harness import Collector, open_context, watch

import spanlog

ROWS = "table.logs tbody tr[data-id]"
UNKNOWN_MODEL = "acme-internal-7b"  # no price database knows it


def log_trace(logger: spanlog.Logger, name: str, start: float,
              llm_calls: list[dict[str, Any]] = (), failures: int = 0) -> str:
    """A root span ``name`` at ``start`` with one LLM span per entry of ``llm_calls`` (its
    metrics; the model is unknown) and ``failures`` failing tool spans; its root_span_id."""
    root = logger.start_span(name, "task", start_time=start, input=f"{name}?")
    for i, metrics in enumerate(llm_calls):
        llm = root.start_span("chat", "llm", start_time=start + 0.1 + i,
                              metadata={"model": UNKNOWN_MODEL, "provider": "acme"})
        llm.log(output="ok", metrics=metrics)
        llm.end(start + 0.9 + i)
    for i in range(failures):
        tool = root.start_span("lookup", "tool", start_time=start + 0.2 + i)
        tool.log(error=f"KeyError: 'item {i}'")
        tool.end(start + 0.3 + i)
    root.log(output=f"{name}!")
    root.end(start + 2.5)
    return root.root_span_id


def row_of(page: Any, root_span_id: str) -> Any:
    return page.locator(f"{ROWS}[data-root-span-id='{root_span_id}']")


def test_totals_columns_cost_and_error_marker(viewer: Any, viewer_collector: Collector,
                                              project: tuple[str, str],
                                              logger: spanlog.Logger) -> None:
    """Each row shows its trace's totals: duration, LLM calls, tokens, cost ("–" unknown,
    "≥" a lower bound) and a red badge counting the failed spans."""
    _, pid = project
    now = time.time() - 60
    unknown = log_trace(logger, "unknown_model", now, [{"prompt_tokens": 100,
                                                        "completion_tokens": 20}])
    partly = log_trace(logger, "partly_priced", now + 10,
                       [{"tokens": 300, "estimated_cost": 0.0123}, {"tokens": 50}], failures=2)
    priced = log_trace(logger, "priced", now + 20,
                       [{"tokens": 1000, "estimated_cost": 1.5},
                        {"tokens": 200, "estimated_cost": 0.25}], failures=1)
    plain = log_trace(logger, "no_llm", now + 30)
    assert logger.flush(10)
    totals = {r["root_span_id"]: r["trace_totals"] for r in viewer_collector.request(
        "POST", f"/v1/project_logs/{pid}/fetch", {"roots_only": True})["events"]}
    assert totals[unknown]["estimated_cost"] is None
    assert totals[partly]["unpriced_llm_calls"] == 1

    viewer.goto(f"{viewer_collector.url}/projects/{pid}")
    expect(viewer.locator(ROWS)).to_have_count(4)
    row = row_of(viewer, unknown)
    expect(row.locator(".col-duration")).to_have_text("2.50s")
    expect(row.locator(".col-llm-calls")).to_have_text("1")
    expect(row.locator(".col-tokens")).to_have_text("120")  # prompt + completion
    expect(row.locator(".col-cost")).to_have_text("–")
    expect(row.locator(".col-cost span")).to_have_attribute(
        "title", "cost unknown: no price for 1 LLM call")
    expect(row.locator(".err-mark")).to_have_count(0)

    row = row_of(viewer, partly)
    expect(row.locator(".col-llm-calls")).to_have_text("2")
    expect(row.locator(".col-tokens")).to_have_text("350")
    expect(row.locator(".col-cost")).to_have_text("≥$0.0123")
    expect(row.locator(".err-mark")).to_have_text("2 errors")
    expect(row).to_have_attribute("aria-label", re.compile(r"^partly_priced, .*, 2 errors$"))

    row = row_of(viewer, priced)
    expect(row.locator(".col-tokens")).to_have_text("1,200")
    expect(row.locator(".col-cost")).to_have_text("$1.75")
    expect(row.locator(".err-mark")).to_have_text("1 error")

    row = row_of(viewer, plain)
    expect(row.locator(".col-llm-calls")).to_have_text("")
    expect(row.locator(".col-tokens")).to_have_text("")
    expect(row.locator(".col-cost")).to_have_text("–")


@pytest.fixture
def spread(logger: spanlog.Logger) -> dict[str, str]:
    """Traces started 10 days, 3 days, 3 hours and 10 minutes ago, logged in that order (so
    listed the other way round): name -> root id."""
    now = time.time()
    ages = {"weeks_ago": 10 * 86400, "days_ago": 3 * 86400, "hours_ago": 3 * 3600,
            "minutes_ago": 600}
    ids = {name: log_trace(logger, name, now - age) for name, age in ages.items()}
    assert logger.flush(10)
    return ids


def names(page: Any) -> Any:
    return page.locator(f"{ROWS} .col-name a")


def test_range_presets_narrow_the_table_and_stay_in_the_url(
        viewer: Any, viewer_collector: Collector, project: tuple[str, str],
        spread: dict[str, str]) -> None:
    """Last hour / 24 hours / 7 days / all time fetch only traces started in that window, as
    a relative since= in the URL that a reload keeps."""
    _, pid = project
    viewer.goto(f"{viewer_collector.url}/projects/{pid}")
    expect(names(viewer)).to_have_text(["minutes_ago", "hours_ago", "days_ago", "weeks_ago"])
    select = viewer.get_by_label("Time range")
    select.select_option(label="Last hour")
    expect(names(viewer)).to_have_text(["minutes_ago"])
    expect(viewer).to_have_url(re.compile(r"\?since=1h$"))
    viewer.reload()
    expect(select).to_have_value("1h")
    expect(names(viewer)).to_have_text(["minutes_ago"])
    select.select_option(label="Last 24 hours")
    expect(names(viewer)).to_have_text(["minutes_ago", "hours_ago"])
    select.select_option(label="Last 7 days")
    expect(names(viewer)).to_have_text(["minutes_ago", "hours_ago", "days_ago"])
    expect(viewer).to_have_url(re.compile(r"\?since=7d$"))
    # A custom range starts from the preset's window: From is 7 days back, in local time.
    select.select_option(label="Custom range…")
    week_ago = datetime.fromtimestamp(time.time() - 7 * 86400)
    expect(viewer.get_by_label("From")).to_have_value(
        re.compile(f"^{week_ago:%Y-%m-%dT%H}:\\d\\d$"))
    expect(viewer.get_by_label("From")).to_be_focused()
    expect(names(viewer)).to_have_count(3)  # nothing applied yet
    select.select_option(label="Last 7 days")

    # With a filter, both apply and both stay in the URL.
    box = viewer.locator("#filter")
    box.fill("input = 'hours_ago?'")
    box.press("Enter")
    expect(names(viewer)).to_have_text(["hours_ago"])
    select.select_option(label="Last hour")
    expect(viewer.locator("table.logs tbody")).to_contain_text(
        "No traces match this filter in this time range.")
    select.select_option(label="All time")
    expect(names(viewer)).to_have_text(["hours_ago"])
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(viewer.url).query) == {
        "filter": ["input = 'hours_ago?'"]}


def test_custom_range_round_trips_through_the_url_in_local_time(
        browser: Any, viewer_collector: Collector, project: tuple[str, str],
        spread: dict[str, str]) -> None:
    """A custom From/To (typed in the browser's local time) fetches that window, is kept in
    the URL as UTC, and comes back into the inputs on reload; To before From is refused."""
    _, pid = project
    zone = "America/New_York"  # not UTC, so a local/UTC mix-up would show
    context, problems = open_context(browser, viewer_collector, timezone_id=zone)
    try:
        page = watch(context.new_page(), problems)
        page.goto(f"{viewer_collector.url}/projects/{pid}")
        expect(names(page)).to_have_count(4)
        page.get_by_label("Time range").select_option(label="Custom range…")
        start = datetime.fromtimestamp(time.time() - 4 * 86400, timezone.utc).replace(
            second=0, microsecond=0)
        end = datetime.fromtimestamp(time.time() - 86400, timezone.utc).replace(
            second=0, microsecond=0)
        local = ZoneInfo(zone)
        page.get_by_label("From").fill(start.astimezone(local).strftime("%Y-%m-%dT%H:%M"))
        page.get_by_label("To").fill(end.astimezone(local).strftime("%Y-%m-%dT%H:%M"))
        page.get_by_role("button", name="Apply range").click()
        expect(names(page)).to_have_text(["days_ago"])
        expect(page).to_have_url(re.compile(r"since=.*until="))
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
        assert query == {"since": [start.strftime("%Y-%m-%dT%H:%MZ")],
                         "until": [end.strftime("%Y-%m-%dT%H:%MZ")]}

        page.reload()
        expect(page.get_by_label("Time range")).to_have_value("custom")
        expect(page.get_by_label("From")).to_have_value(
            start.astimezone(local).strftime("%Y-%m-%dT%H:%M"))
        expect(names(page)).to_have_text(["days_ago"])

        # To before From: said under the range, nothing fetched, the URL unchanged.
        shown = page.url
        page.get_by_label("From").fill(end.astimezone(local).strftime("%Y-%m-%dT%H:%M"))
        page.get_by_label("To").fill(start.astimezone(local).strftime("%Y-%m-%dT%H:%M"))
        page.get_by_role("button", name="Apply range").click()
        error = page.locator("#range-error")
        expect(error).to_have_text("“To” must be after “From”.")
        expect(page.get_by_label("To")).to_have_attribute("aria-invalid", "true")
        assert page.url == shown
        expect(names(page)).to_have_text(["days_ago"])

        # A time the collector cannot read (a hand-edited link): its 400, under the range.
        status, message = viewer_collector.error_of(
            "POST", f"/v1/project_logs/{pid}/fetch", {"roots_only": True, "since": "yesterday"})
        assert status == 400
        page.goto(f"{viewer_collector.url}/projects/{pid}?since=yesterday")
        expect(error).to_have_text(message)
        expect(page.get_by_label("From")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#filter-error")).to_be_hidden()
        expect(names(page)).to_have_count(0)
        problems.check()
    finally:
        context.close()


def test_live_view_under_a_preset_keeps_its_window(
        viewer: Any, viewer_collector: Collector, project: tuple[str, str],
        logger: spanlog.Logger) -> None:
    """Under "Last hour", a trace that starts now arrives live; one logged now that started
    two hours ago stays out of the table."""
    _, pid = project
    viewer.goto(f"{viewer_collector.url}/projects/{pid}?since=1h")
    expect(viewer.locator("table.logs tbody")).to_contain_text("No traces in this time range.")
    expect(viewer.locator("#live")).to_be_visible()
    log_trace(logger, "late_report", time.time() - 2 * 3600)
    log_trace(logger, "fresh", time.time())
    assert logger.flush(10)
    expect(names(viewer)).to_have_text(["fresh"])
    assert len(viewer_collector.fetch(pid, filter="input = 'late_report?'")) == 1
