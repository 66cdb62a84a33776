"""The summary above the logs table, in headless Chromium (issue 20)."""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from playwright.sync_api import expect
from viewer_harness import Collector
from viewer_traces import QUESTIONS, LoggedTrace, log_support_traces, logger_for

import spanlog
from spanlog.server.rows._cost import format_cost


@pytest.fixture
def logger(viewer_collector: Collector, project: tuple[str, str]) -> Iterator[spanlog.Logger]:
    """An SDK logger for the test's project, closed afterwards."""
    logger = logger_for(viewer_collector.url, viewer_collector.api_key, project[0])
    try:
        yield logger
    finally:
        logger.close(10)


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
    return f"≥ {text}" if summary["cost"] is not None and summary["unpriced_llm_calls"] else text


def query_of(url: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlparse(url).query)


def legend(viewer: Any, chart: str) -> Any:
    return viewer.locator(f'.chart[data-chart="{chart}"] .legend li')


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
    expect(figure("Cost").locator("dd")).to_have_text(f"≥ {format_cost(everything['cost'])}")
    expect(figure("Latency p50").locator("dd")).to_have_text("1.84s")
    expect(figure("Latency p99").locator("dd")).to_have_text("1.84s")
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
