"""The unmodified braintrust SDK (0.48.1) logs into a spanlog collector (PROTOCOL.md).

The SDK runs in a subprocess: its background thread, HTTP sessions and exit-time flush
then live and end with that process, exactly as in a user's program.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from spanlog_server_http import call

from spanlog.server.http._context import Settings

SCENARIO = Path(__file__).with_name("braintrust_scenario.py")


def run_scenario(collector, project: str, mode: str) -> dict[str, Any]:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
           "BRAINTRUST_DISABLE_ATEXIT_FLUSH": "" if mode == "atexit" else "1"}
    env.pop("BRAINTRUST_API_URL", None)
    env.pop("BRAINTRUST_ORG_NAME", None)
    proc = subprocess.run([sys.executable, str(SCENARIO), collector.url, collector.api_key,
                           project, mode], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    # The SDK reports failed requests on stderr instead of raising: there must be none.
    assert "log request failed" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def logged(collector) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Run the scenario once with an explicit flush; return project, its output, the rows."""
    project = f"bt-{uuid.uuid4().hex[:8]}"
    info = run_scenario(collector, project, "flush")
    # 3 spans of handle(), manual + child, the comment row, async_handler.
    rows = collector.wait_for_rows(7, project)
    return project, info, rows


def by_name(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [row] = [r for r in rows if (r.get("span_attributes") or {}).get("name") == name]
    return row


def test_traced_functions_make_a_nested_trace(logged):
    """@traced spans nest: one root, children point to their parents, one root_span_id."""
    _, info, rows = logged
    root, ans, ret = (by_name(rows, n) for n in ("handle_request", "answer", "retrieve"))
    assert root["output"] == info["output"]
    assert root["input"] == {"query": "refunds", "user_id": "user-1234"}
    assert not root.get("span_parents")
    assert ans["span_parents"] == [root["span_id"]] == ret["span_parents"]
    assert ans["root_span_id"] == ret["root_span_id"] == root["root_span_id"]
    assert ans["span_attributes"]["type"] == "llm"
    assert ans["metrics"]["prompt_tokens"] == 12 and ans["scores"] == {"relevance": 0.75}
    assert ret["metadata"] == {"retriever": "bm25", "k": 2}
    assert root["tags"] == ["prod"] and root["metadata"] == {"user_id": "user-1234"}
    for row in (root, ans, ret):
        assert row["metrics"]["end"] >= row["metrics"]["start"]


def test_feedback_merges_into_span_and_adds_comment(logged):
    """log_feedback merges scores/expected into the span and logs the comment as its own row."""
    _, info, rows = logged
    manual = by_name(rows, "manual")
    assert manual["id"] == info["root_id"]
    assert manual["scores"] == {"thumbs_up": 0.0}
    assert manual["expected"] == "corrected"
    assert manual["output"] == "hello"
    assert manual["_audit_source"] == "app"
    [comment] = [r for r in rows if r.get("comment")]
    assert comment["comment"] == {"text": "wrong tone"} and comment["origin"]["id"] == manual["id"]


def test_subfield_filter_finds_sdk_rows(collector, logged):
    """Rows the SDK sent are searchable by metadata subfields and tags."""
    project, _, _ = logged
    [row] = collector.fetch(project, "metadata.user_id = 'user-5678'")
    assert row["span_attributes"]["name"] == "manual"
    assert row["metadata"]["nested"] == {"env": "staging"}
    assert [r["span_attributes"]["name"] for r in collector.fetch(project, "tags includes 'prod'")
            ] == ["handle_request"]
    assert len(collector.fetch(project, "span_attributes.type = 'llm'")) == 1


def test_trace_endpoint_averages_child_scores(collector, logged):
    """The trace of the manual span shows the child's score averaged into the parent."""
    project, info, _ = logged
    spans = collector.trace(project, info["root_span_id"])
    manual = by_name(spans, "manual")
    child = by_name(spans, "child")
    assert child["scores_avg"] == {"correct": 1.0}
    assert manual["scores_avg"] == {"correct": 1.0, "thumbs_up": 0.0}


def test_async_traced_function_is_logged(logged):
    """An async @traced function is logged as its own root span."""
    _, _, rows = logged
    assert by_name(rows, "async_handler")["output"] == "ASYNC"


def test_exit_time_flush_delivers_everything(collector):
    """Without an explicit flush the SDK's exit-time flush delivers every row."""
    project = f"bt-exit-{uuid.uuid4().hex[:8]}"
    run_scenario(collector, project, "atexit")
    rows = collector.wait_for_rows(7, project)
    assert {(r.get("span_attributes") or {}).get("name") for r in rows} >= {
        "handle_request", "answer", "retrieve", "manual", "child", "async_handler"}


def test_row_over_request_limit_goes_through_overflow_upload(make_collector):
    """A span bigger than logs3_payload_max_bytes arrives through the SDK's overflow upload."""
    server = make_collector(settings=Settings(max_body_bytes=100_000))

    class Handle:
        url = server.url
        api_key = "any-key-open-mode"

    info = run_scenario(Handle, "big-rows", "big")
    _, project = call(server.url, "POST", "/v1/project", {"name": "big-rows"})
    _, page = call(server.url, "POST", f"/v1/project_logs/{project['id']}/fetch", {})
    [row] = page["events"]
    assert row["id"] == info["id"] and len(row["input"]) == 300_000 and row["output"] == "ok"


def test_exported_span_and_logger_by_project_id(collector):
    """A span continued from another's export() joins its trace under it; a logger given
    the project's id logs into that project."""
    project = f"bt-resume-{uuid.uuid4().hex[:8]}"
    info = run_scenario(collector, project, "resume")
    rows = collector.wait_for_rows(3, project)
    resumed = by_name(rows, "resumed")
    assert resumed["root_span_id"] == info["root_span_id"]
    assert resumed["span_parents"] == [info["span_id"]] and resumed["output"] == "resumed"
    assert by_name(rows, "by_id")["id"] == info["by_id"]


@pytest.mark.parametrize(("mode", "feature", "path"), [
    ("experiment", "experiments", "/v1/experiment"),
    ("dataset", "datasets", "/v1/dataset"),
])
def test_call_not_served_raises_naming_it(collector, mode, feature, path):
    """init and init_dataset raise the collector's 501 naming what spanlog does not serve."""
    info = run_scenario(collector, f"bt-{mode}", mode)
    assert "HTTP 501" in info["error"], info
    assert f"spanlog does not serve {feature}: POST {path}" in info["error"]
