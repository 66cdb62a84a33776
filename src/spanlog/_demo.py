"""``spanlog demo``: a collector on a fresh SQLite file, filled with a small realistic example.

The example is a support assistant answering three questions: each request is a trace with a
retrieval step and an LLM call nested in it, one request fails, users leave thumbs up/down,
comments and corrections as feedback, and two reviewers score one answer independently (one
child span per submission, so the trace shows their average).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
import urllib.request
from typing import Any

import spanlog

PROJECT = "demo"

_DOCS = {
    "refund": "Refunds are issued to the original payment method within 5 business days.",
    "shipping": "Orders ship within 24 hours; tracking links arrive by email.",
    "password": "Reset your password from Settings > Security > Reset password.",
}

_QUESTIONS = [
    ("u-1001", "How long does a refund take?", "refund", ["prod"]),
    ("u-1002", "When will my order ship?", "shipping", ["prod"]),
    ("u-1003", "I forgot my password", "password", ["staging"]),
]


@spanlog.traced(type="tool")
def retrieve(question: str, topic: str) -> list[dict[str, str]]:
    """Look up the help-center article for a question (a stand-in for a vector search)."""
    return [{"doc_id": f"kb-{topic}", "text": _DOCS[topic]}]


def fake_llm(messages: list[dict[str, str]], topic: str) -> str:
    """Answer like a chat model would, and log the call as an ``llm`` span."""
    with spanlog.start_span(name="chat.completions.create", type="llm") as span:
        if topic == "password":
            error = TimeoutError("upstream model timed out after 30s")
            span.log(input=messages, metadata={"model": "demo-small", "provider": "demo"})
            raise error
        answer = _DOCS[topic]
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        completion_tokens = len(answer.split())
        span.log(input=messages,
                 output=[{"role": "assistant", "content": answer}],
                 metadata={"model": "demo-small", "provider": "demo", "temperature": 0.2},
                 metrics={"prompt_tokens": prompt_tokens,
                          "completion_tokens": completion_tokens,
                          "tokens": prompt_tokens + completion_tokens,
                          "time_to_first_token": 0.042})
        return answer


@spanlog.traced(name="handle_request", type="task")
def handle_request(user_id: str, question: str, topic: str) -> str:
    """One request of the assistant: retrieve, then ask the model."""
    spanlog.current_span().log(metadata={"user_id": user_id})
    docs = retrieve(question, topic)
    messages = [{"role": "system", "content": "Answer from the docs: " + docs[0]["text"]},
                {"role": "user", "content": question}]
    return fake_llm(messages, topic)


def log_example(logger: spanlog.Logger) -> list[str]:
    """Log the example traces and their feedback; return the root span ids."""
    roots: list[str] = []
    handles: list[str] = []
    for user_id, question, topic, tags in _QUESTIONS:
        with logger.start_span(name="request", type="task") as root:
            root.log(input={"question": question}, tags=tags)
            try:
                answer = handle_request(user_id, question, topic)
            except TimeoutError:
                answer = None
            root.log(output={"answer": answer})
            roots.append(root.id)
            handles.append(root.export())
    logger.log_feedback(roots[0], scores={"thumbs_up": 1.0}, comment="Exactly what I needed",
                        metadata={"user_id": "u-1001"}, source="external")
    logger.log_feedback(roots[1], scores={"thumbs_up": 0.0},
                        expected={"answer": "Orders ship within 24 hours on business days."},
                        comment="Weekends are not covered", source="external")
    # Two reviewers grade the same answer: one child span each, averaged on the parent.
    logger.submit_scores({"accuracy": 1.0}, parent=handles[0])
    logger.submit_scores({"accuracy": 0.5}, parent=handles[0])
    return roots



def _fetch(url: str, project_id: str, roots_only: bool = False) -> list[dict[str, Any]]:
    """The project's rows; ``roots_only``: one root per trace, with its ``scores_avg`` and
    ``trace_totals`` (docs/protocol.md)."""
    body = {"limit": 1000, "roots_only": roots_only}
    req = urllib.request.Request(f"{url}/v1/project_logs/{project_id}/fetch",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        events: list[dict[str, Any]] = json.loads(resp.read())["events"]
        return events


def _project_id(url: str) -> str:
    req = urllib.request.Request(f"{url}/v1/project", data=json.dumps({"name": PROJECT}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(json.loads(resp.read())["id"])


def main(args: argparse.Namespace) -> int:
    """Run the demo: serve, log the example, print what was stored, serve until Ctrl-C."""
    from spanlog.server.http._runner import DB_FILE, BackgroundCollector

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="spanlog-demo-")
    os.makedirs(data_dir, exist_ok=True)
    db_path = os.path.join(data_dir, DB_FILE)  # the file `spanlog serve --data-dir` uses
    if os.path.exists(db_path):
        print(f"spanlog demo: {db_path} already exists; the demo wants a fresh database "
              "(choose another --data-dir, or serve it with `spanlog serve --data-dir`)",
              flush=True)
        return 2
    collector = BackgroundCollector(db_path, port=args.port)
    try:
        collector.start()
    except OSError as exc:
        print(f"spanlog demo: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc} "
              "(pass --port 0 for any free port)", flush=True)
        return 2
    try:
        return _run(collector.url, db_path)
    finally:
        collector.stop()


def _run(url: str, db_path: str) -> int:
    started = time.perf_counter()
    logger = spanlog.init_logger(project=PROJECT, api_url=url, api_key="demo",
                                 async_flush=False)
    roots = log_example(logger)
    delivered = logger.flush(timeout=10)
    project_id = _project_id(url)
    rows = _fetch(url, project_id)
    root_rows = [r for r in _fetch(url, project_id, roots_only=True) if "comment" not in r]
    took = time.perf_counter() - started
    print(f"spanlog demo: collector at {url} (database {db_path})")
    print(f"  logged {len(roots)} requests in {took:.2f}s: {len(rows)} rows stored in "
          f"{len(root_rows)} traces of project {PROJECT!r}"
          + ("" if delivered else " (some rows were not delivered: see the warnings above)"))
    for row in root_rows:
        question = (row.get("input") or {}).get("question")
        scores = ", ".join(f"{k}={v:g}" for k, v in sorted(row["scores_avg"].items()))
        state = "error" if row["trace_totals"]["errors"] else "ok"
        print(f"  - {question!r:38} {state:5} {scores or 'no scores yet'}")
    print()
    print(f"  viewer:  {url}/projects/{project_id}")
    print(f"  CLI:     spanlog logs {PROJECT} --url {url} "
          "--filter \"metadata.user_id = 'u-1001'\"")
    print(f"  log more: spanlog.init_logger(project={PROJECT!r}, api_url={url!r})")
    print("  Ctrl-C to stop", flush=True)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("spanlog demo stopped", flush=True)
    return 0 if delivered else 1
