"""The logs table's trace totals (duration, LLM calls, tokens, cost, errors), in headless
Chromium against a collector filled by the SDK (issue 20)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from viewer_harness import Collector
from viewer_traces import logger_for

import spanlog

ROWS = "table.logs tbody tr[data-id]"
UNKNOWN_MODEL = "acme-internal-7b"  # no price database knows it


@pytest.fixture
def logger(viewer_collector: Collector, project: tuple[str, str]) -> Iterator[spanlog.Logger]:
    """An SDK logger for the test's project, closed afterwards."""
    logger = logger_for(viewer_collector.url, viewer_collector.api_key, project[0])
    try:
        yield logger
    finally:
        logger.close(10)


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
