"""The Cloudflare example in real Pyodide under Node, torn down once its waitUntil settles."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness_cloudflare import Worker
from harness_common import LINK_DELAY, SlowLink, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "cloudflare" / "src"
SPANLOG = ROOT / "src" / "spanlog"
PROBES = Path(__file__).resolve().parent / "cloudflare"

Start = Callable[..., tuple[Worker, str]]


@pytest.fixture
def start_worker(pyodide_package: Path, workers_sdk: Path, collector: Any,
                 slow_link: SlowLink, tmp_path: Path) -> Iterator[Start]:
    """Start a Worker module in the Pyodide harness with its own project."""
    started: list[Worker] = []

    def start(hooks: bool = True, worker_dir: Path = EXAMPLE, module: str = "entry"
              ) -> tuple[Worker, str]:
        project = f"cloudflare-{'hooked' if hooks else 'control'}-{uuid.uuid4().hex[:8]}"
        env = {"SPANLOG_API_URL": slow_link.url, "SPANLOG_API_KEY": collector.api_key,
               "SPANLOG_PROJECT": project}
        # Python's os.environ inside Pyodide: how the control turns the hooks off.
        python_environ = {} if hooks else {"SPANLOG_WAIT_UNTIL": "off"}
        worker = Worker(worker_dir, module, env, python_environ, workers_sdk, SPANLOG, tmp_path)
        started.append(worker)
        return worker, project

    try:
        yield start
    finally:
        for worker in started:
            worker.close()


def _by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["span_attributes"]["name"]: row for row in rows if "span_attributes" in row}


def test_trace_and_feedback_are_stored_before_teardown(start_worker: Start,
                                                       collector: Any) -> None:
    """Bound to ctx.waitUntil, the Worker answers at once and the trace and its feedback are
    in the collector when the invocation is torn down."""
    worker, project = start_worker()
    assert worker.ready["assetFetches"] == [], "Pyodide fetched files from the network"

    response, teardown = worker.invoke("/chat", {"question": "what is spanlog?"})
    assert response["status"] == 200, worker.output()
    reply = json.loads(response["body"])
    rows = _by_name(collector.fetch(project=project))
    assert set(rows) == {"chat", "chat.completions"}, worker.output()
    assert response["waitUntilCount"] >= 1
    assert teardown["settled"] and set(teardown["settled"]) == {"fulfilled"}, teardown
    # The flush went through the slow link, yet the response did not wait for it: the flush
    # settled a link delay after the response (not before it), however slow the machine.
    assert teardown["settledMs"] >= LINK_DELAY * 1000
    assert teardown["settledMs"] - response["responseMs"] >= LINK_DELAY * 1000 / 2, teardown
    root, llm = rows["chat"], rows["chat.completions"]
    assert root["id"] == reply["id"] and llm["span_parents"] == [root["span_id"]]

    response, _ = worker.invoke("/feedback", {"id": reply["id"], "score": 0.5,
                                              "comment": "close"})
    assert response["status"] == 200, worker.output()
    stored = collector.fetch(project=project)
    assert _by_name(stored)["chat"]["scores"] == {"helpful": 0.5}, worker.output()
    assert [row["comment"]["text"] for row in stored if row.get("comment")] == ["close"]
    assert worker.fetches_after_teardown() == 0


def test_control_without_hook_loses_the_trace_at_teardown(start_worker: Start,
                                                          collector: Any) -> None:
    """Negative control: with hooks off the trace waits for a background task, so it is LOST
    at teardown (the harness detects loss) and that task's fetch is refused."""
    worker, project = start_worker(hooks=False)
    response, teardown = worker.invoke("/chat", {"question": "lost?"})
    assert response["status"] == 200, worker.output()
    assert response["waitUntilCount"] == 0
    assert collector.fetch(project=project) == [], "rows arrived although no hook was used"
    wait_for(lambda: worker.fetches_after_teardown() > 0, 10.0,
             "the background flush to try fetch after the teardown")
    assert collector.fetch(project=project) == []


def test_fetch_transport_under_pyodide(start_worker: Start, collector: Any) -> None:
    """FetchTransport posts bytes through JS fetch and returns status, lower-case headers and
    body; it GETs too (the delivery asks /version before a body over 1 MB); a refused
    connection, a timeout and a closed transport raise TransportError."""
    worker, _ = start_worker(worker_dir=PROBES, module="transport_probe")
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)  # accepts connections (backlog) and never answers
        response, _ = worker.invoke("/", {
            "collector": collector.url, "api_key": collector.api_key,
            "refused": f"http://127.0.0.1:{free_port()}/logs3",
            "black_hole": f"http://127.0.0.1:{black_hole.getsockname()[1]}/logs3"})
    assert response["status"] == 200, worker.output()
    report = json.loads(response["body"])
    assert report["project"]["status"] == 200, report
    assert json.loads(report["project"]["body"])["name"] == "transport-probe"
    assert report["project"]["content_type"].startswith("application/json")
    assert report["version"]["status"] == 200, report
    assert json.loads(report["version"]["body"])["logs3_payload_max_bytes"] > 0, report
    assert report["refused"].startswith("TransportError"), report
    assert report["timeout"].startswith("TransportError"), report
    assert 0.4 < report["timeout_seconds"] < 3, report
    assert report["closed"].startswith("TransportError"), report


def test_fetch_transport_outside_pyodide_says_what_is_missing() -> None:
    """Used where there is no JavaScript fetch, FetchTransport fails with a TransportError
    that names Pyodide rather than an ImportError."""
    import asyncio

    from spanlog._fetch_transport import FetchTransport
    from spanlog._transport import TransportError

    with pytest.raises(TransportError, match="needs Pyodide"):
        asyncio.run(FetchTransport().post("http://127.0.0.1:9/logs3", b"{}", {}, 1.0))
