"""The monitor page and the summary above the logs table, in headless Chromium (issue 20)."""

from __future__ import annotations

import math
import re
import time
import urllib.parse
from datetime import datetime, timezone
from typing import Any

import pytest
from playwright.sync_api import expect
from viewer_harness import Collector, open_context
from viewer_traces import QUESTIONS, LoggedTrace, log_support_traces

import spanlog
from spanlog.server.rows._cost import format_cost

# Records every Content-Security-Policy violation of the page, from the first document on.
CSP_WATCH = ("window.__csp = []; document.addEventListener('securitypolicyviolation', "
             "(e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));")


@pytest.fixture
def support(logger: spanlog.Logger) -> list[LoggedTrace]:
    """The four support-bot traces (one failed), a minute apart, ending about now."""
    return log_support_traces(logger)


def aggregate(collector: Collector, pid: str, **body: Any) -> dict[str, Any]:
    return dict(collector.request("POST", f"/v1/project_logs/{pid}/aggregate", body))


def iso(seconds: float) -> str:
    """As the page writes a time into the URL: ISO-8601 UTC, milliseconds when not whole."""
    text = datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z").replace(".000Z", "Z")


def cost_text(summary: dict[str, Any]) -> str:
    """A summary's total cost as the page shows it (the command line's format, "≥" first
    when some LLM calls have no price)."""
    text = format_cost(summary["cost"])
    return f"≥{text}" if summary["cost"] is not None and summary["unpriced_llm_calls"] else text


def query_of(url: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlparse(url).query)


def legend(viewer: Any, chart: str) -> Any:
    return viewer.locator(f'.chart[data-chart="{chart}"] .legend li')


def test_monitor_draws_each_chart_per_split_group_without_csp_violations(
        viewer: Any, viewer_collector: Collector, project: tuple[str, str],
        support: list[LoggedTrace]) -> None:
    """Split by model, every chart is drawn on a canvas, its legend names the groups with
    their totals over the range (as the aggregate endpoint counts them), and the strict CSP
    reports nothing."""
    _, pid = project
    viewer.add_init_script(CSP_WATCH)
    viewer.goto(f"{viewer_collector.url}/projects/{pid}/monitor?since=1h&split=model")
    expected = aggregate(viewer_collector, pid, since="1h", split_by="model")
    groups = {s["group"]: s for s in expected["series"]}
    assert set(groups) == {None, "gpt-4o-mini"}
    for chart in ("traces", "errors", "latency", "llm_calls", "tokens", "cost",
                  "score-accuracy", "score-helpfulness"):
        expect(viewer.locator(f'.chart[data-chart="{chart}"] canvas').first).to_be_visible()
    # Root spans have no model: traces count in the "(no model)" group only.
    expect(legend(viewer, "traces")).to_have_text(["(no model) 4"])
    expect(legend(viewer, "llm_calls")).to_have_text(["gpt-4o-mini 4"])
    expect(viewer.get_by_role("img", name="LLM calls per 1m 00s bucket, by model")).to_be_visible()
    tokens = {g: f"{sum(s['tokens']):,}" for g, s in groups.items()}
    expect(legend(viewer, "tokens")).to_have_text(
        [f"gpt-4o-mini {tokens['gpt-4o-mini']}", f"(no model) {tokens[None]}"], ignore_case=False)
    llm_cost = sum(v for v in groups["gpt-4o-mini"]["cost"] if v is not None)
    assert llm_cost > 0
    expect(legend(viewer, "cost")).to_have_text([f"gpt-4o-mini {format_cost(llm_cost)}"])
    expect(legend(viewer, "latency")).to_have_text(
        ["(no model) p50", "(no model) p95", "(no model) p99"])
    # The failed trace: its root (no model) and its LLM call failed.
    expect(legend(viewer, "errors")).to_have_text([
        "gpt-4o-mini failed spans 1", "(no model) failed traces 1", "(no model) failed spans 1"])
    figures = viewer.locator(".monitor-page .figure")
    expect(figures.filter(has_text="Traces")).to_have_text("Traces4")
    expect(figures.filter(has_text="Error rate")).to_have_text("Error rate25%")
    expect(viewer.locator("#range")).to_have_value("1h")
    expect(viewer.locator("#monitor-split")).to_have_value("model")
    assert viewer.evaluate("window.__csp") == []


def test_csp_watch_sees_a_violation(browser: Any, viewer_collector: Collector,
                                    project: tuple[str, str]) -> None:
    """The watch the monitor test relies on does report a blocked inline style."""
    context, _ = open_context(browser, viewer_collector)
    try:
        page = context.new_page()
        page.add_init_script(CSP_WATCH)
        page.goto(f"{viewer_collector.url}/projects/{project[1]}/monitor")
        expect(page.locator(".monitor-page")).to_be_visible()
        page.evaluate("document.body.setAttribute('style', 'color: red')")
        page.wait_for_function("window.__csp.length > 0")
        assert any("style-src" in v for v in page.evaluate("window.__csp"))
    finally:
        context.close()


@pytest.mark.slow
def test_monitor_range_and_split_round_trip_through_the_url(
        viewer: Any, viewer_collector: Collector, project: tuple[str, str],
        support: list[LoggedTrace]) -> None:
    """Presets, a custom range and the split go into the URL, and the URL brings them back."""
    _, pid = project
    viewer.goto(f"{viewer_collector.url}/projects/{pid}/monitor")
    expect(viewer.locator("#range")).to_have_value("24h")
    expect(viewer.locator("#monitor-split")).to_have_value("")
    expect(legend(viewer, "traces")).to_have_text(["Traces 4"])
    viewer.select_option("#range", "7d")
    expect(viewer).to_have_url(re.compile(r"[?&]since=7d(&|$)"))
    viewer.select_option("#monitor-split", "tag")
    expect(viewer).to_have_url(re.compile(r"[?&]split=tag(&|$)"))
    expect(legend(viewer, "traces")).to_have_text(["billing 1", "prod 3", "staging 1"])
    viewer.reload()
    expect(viewer.locator("#range")).to_have_value("7d")
    expect(viewer.locator("#monitor-split")).to_have_value("tag")
    expect(legend(viewer, "traces")).to_have_text(["billing 1", "prod 3", "staging 1"])

    # A custom range from the datetime-local inputs (local time) goes into the URL as UTC.
    start = math.floor(time.time() / 3600) * 3600 - 3600
    local = lambda t: datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M")  # noqa: E731
    viewer.select_option("#range", "custom")
    viewer.fill("#range-from", local(start))
    viewer.fill("#range-to", local(start + 3 * 3600))
    viewer.get_by_role("button", name="Apply range").click()
    # (the picker writes whole minutes without seconds: 2026-12-07T16:00Z)
    minute = lambda t: iso(t).replace(":00Z", "Z")  # noqa: E731
    query = urllib.parse.urlencode({"since": minute(start), "until": minute(start + 3 * 3600)})
    expect(viewer).to_have_url(re.compile(re.escape(query.partition("&")[2])))
    assert query_of(viewer.url) == {"since": [minute(start)],
                                    "until": [minute(start + 3 * 3600)], "split": ["tag"]}
    expect(legend(viewer, "traces")).to_have_text(["billing 1", "prod 3", "staging 1"])
    viewer.reload()
    expect(viewer.locator("#range")).to_have_value("custom")
    expect(viewer.locator("#range-from")).to_have_value(local(start))
    expect(viewer.locator("#range-to")).to_have_value(local(start + 3 * 3600))
    expect(viewer.locator("#monitor-split")).to_have_value("tag")
    # The logs table link keeps the range.
    expect(viewer.get_by_role("link", name="Logs table")).to_have_attribute(
        "href", f"/projects/{pid}?{query}")


def test_click_on_a_point_opens_the_logs_table_for_that_bucket_and_group(
        viewer: Any, viewer_collector: Collector, project: tuple[str, str],
        support: list[LoggedTrace]) -> None:
    """A click on the first trace's point in the LLM-calls chart, split by model, opens the
    logs table for that minute, with the model added to the current filter."""
    _, pid = project
    first = viewer_collector.trace(pid, support[0].root_span_id)
    llm = next(s for s in first if s["span_attributes"]["name"] == "chat.completions.create")
    started = llm["metrics"]["start"]
    since = math.floor(time.time() / 60) * 60 - 3600
    until = since + 3600 + 120   # 62 buckets of a minute
    bucket = since + math.floor((started - since) / 60) * 60
    query = urllib.parse.urlencode({"since": iso(since), "until": iso(until), "split": "model",
                                    "filter": "tags includes 'prod'"})
    viewer.goto(f"{viewer_collector.url}/projects/{pid}/monitor?{query}")
    chart = viewer.locator('.chart[data-chart="llm_calls"]')
    expect(legend(viewer, "llm_calls")).to_have_text(["gpt-4o-mini 3"])  # prod: 3 of 4
    unfiltered = urllib.parse.urlencode({"since": iso(since), "until": iso(until),
                                         "split": "model"})
    expect(viewer.get_by_role("link", name="all traces")).to_have_attribute(
        "href", f"/projects/{pid}/monitor?{unfiltered}")
    over = chart.locator(".u-over").bounding_box()
    x = over["x"] + (bucket - since) / (until - since) * over["width"]
    viewer.mouse.move(x, over["y"] + over["height"] / 2)
    # The hovered bucket's value replaces the total, and uPlot marks the point itself.
    expect(legend(viewer, "llm_calls")).to_have_text(["gpt-4o-mini 1"])
    point = chart.locator(".u-cursor-pt").first.bounding_box()
    viewer.mouse.click(point["x"] + point["width"] / 2, point["y"] + point["height"] / 2)
    expect(viewer).to_have_url(re.compile(rf"/projects/{pid}\?"))
    params = query_of(viewer.url)
    assert params == {
        "filter": ["(tags includes 'prod') AND metadata.model = 'gpt-4o-mini'"],
        "since": [iso(bucket)], "until": [iso(bucket + 60)]}
    expect(viewer.locator("#filter")).to_have_value(params["filter"][0])


def test_monitor_says_when_a_range_is_empty_or_wrong(
        viewer: Any, viewer_collector: Collector, project: tuple[str, str]) -> None:
    """No traces: a sentence instead of charts. A range the collector refuses: its error."""
    _, pid = project
    viewer.goto(f"{viewer_collector.url}/projects/{pid}/monitor")
    expect(viewer.get_by_role("status")).to_have_text("No traces in this range.")
    expect(viewer.locator(".chart")).to_have_count(0)
    viewer.goto(f"{viewer_collector.url}/projects/{pid}/monitor?since=yesterday")
    expect(viewer.get_by_role("alert").filter(has_text="since:")).to_contain_text(
        "'yesterday' is no time")
    expect(viewer.locator(".chart")).to_have_count(0)


def test_summary_above_the_logs_table_follows_filter(
        viewer: Any, viewer_collector: Collector, project: tuple[str, str],
        logger: spanlog.Logger, support: list[LoggedTrace]) -> None:
    """Traces, cost ("≥" with unpriced calls, "–" with no price at all), latency p50/p99,
    error rate and score averages, for the table's filter; the monitor link keeps it."""
    _, pid = project
    # A fifth trace whose LLM call uses a model no price database knows.
    t = time.time() - 30
    root = logger.start_span("answer_question", "task", start_time=t, tags=["odd"])
    llm = root.start_span("chat.completions.create", "llm", start_time=t + 0.1,
                          metadata={"model": "no-such-model-7"},
                          metrics={"prompt_tokens": 10, "completion_tokens": 5, "tokens": 15})
    llm.end(t + 1.0)
    root.start_span("helpfulness", "score", start_time=t + 1.1,
                    scores={"helpfulness": 0.2}).end(t + 1.2)
    root.end(t + 1.84)
    assert logger.flush(10)
    everything = aggregate(viewer_collector, pid, since="0")["summary"]
    assert everything["traces"] == len(QUESTIONS) + 1
    assert everything["unpriced_llm_calls"] == 1 and everything["cost"] > 0

    def figure(label: str) -> Any:
        return viewer.locator(".logs-page .figure").filter(
            has=viewer.locator("dt", has_text=re.compile(f"^{label}$")))

    viewer.goto(f"{viewer_collector.url}/projects/{pid}")
    expect(figure("Traces").locator("dd")).to_have_text("5")
    expect(figure("Cost").locator("dd")).to_have_text(f"≥{format_cost(everything['cost'])}")
    # Every root ran 1.84 s; the endpoint's percentiles are within 12% (docs/protocol.md).
    for label, key in (("Latency p50", "latency_p50"), ("Latency p99", "latency_p99")):
        assert abs(everything[key] - 1.84) <= 0.12 * 1.84
        expect(figure(label).locator("dd")).to_have_text(f"{everything[key]:.2f}s")
    expect(figure("Error rate").locator("dd")).to_have_text("20%")
    expect(figure("accuracy").locator("dd")).to_have_text("71.7%")   # (0.9 + 0.25 + 1) / 3
    expect(figure("helpfulness").locator("dd")).to_have_text("69%")  # (1 + .5 + .75 + 1 + .2) / 5

    viewer.fill("#filter", "tags includes 'billing'")
    viewer.get_by_role("button", name="Apply").click()
    billing = aggregate(viewer_collector, pid, since="0", filter="tags includes 'billing'")
    expect(figure("Traces").locator("dd")).to_have_text("1")
    expect(figure("Cost").locator("dd")).to_have_text(cost_text(billing["summary"]))
    expect(figure("Error rate").locator("dd")).to_have_text("100%")
    expect(figure("accuracy").locator("dd")).to_have_text("25%")
    expect(figure("helpfulness").locator("dd")).to_have_text("50%")
    expect(viewer.get_by_role("link", name="Monitor")).to_have_attribute(
        "href", f"/projects/{pid}/monitor?filter=tags+includes+%27billing%27")

    viewer.fill("#filter", "tags includes 'odd'")
    viewer.get_by_role("button", name="Apply").click()
    expect(figure("Traces").locator("dd")).to_have_text("1")
    expect(figure("Cost").locator("dd")).to_have_text("–")
    expect(figure("Error rate").locator("dd")).to_have_text("0%")
    expect(figure("accuracy")).to_have_count(0)
