"""A plain WSGI app as a Vercel Python function, logging every chat request as a trace.

POST /wsgi/chat      {"question": "..."} -> {"answer": "...", "id": "<row id of the trace>"}
POST /wsgi/feedback  {"id": "...", "score": 0..1, "comment": "..."} -> {"ok": true}

The code is synchronous; spanlog still hands each trace's flush to the runtime's
``wait_until`` hook, which Vercel runs on a fresh event loop in the request thread after the
response is sent. Any WSGI framework (Flask, Django...) works the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

import spanlog

spanlog.init_logger(project=os.environ.get("SPANLOG_PROJECT", "vercel-example"))

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@spanlog.traced(name="chat.completions", type="llm")
def complete(question: str) -> str:
    """Stands in for a model call: a real app would call its LLM client here."""
    answer = f"You asked: {question}"
    spanlog.current_span().log(
        input=[{"role": "user", "content": question}],
        output=answer,
        metadata={"model": "echo-1"},
        metrics={"prompt_tokens": len(question.split()), "completion_tokens": len(answer.split())},
    )
    return answer


@spanlog.traced(name="chat", type="task")
def chat(question: str) -> dict[str, str]:
    """One trace per request: this root span (input and output are its argument and
    return value) and the nested LLM span."""
    answer = complete(question)
    root = spanlog.current_span()
    root.log(tags=["vercel", "wsgi"])
    return {"answer": answer, "id": root.id}


def feedback(body: dict[str, Any]) -> dict[str, bool]:
    """Attach a user's score (and comment) to a trace logged earlier."""
    spanlog.log_feedback(id=body["id"], scores={"helpful": float(body["score"])},
                         comment=body.get("comment"), source="external")
    return {"ok": True}


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI entry point Vercel serves."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    body = json.loads(raw) if raw else {}
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"].rstrip("/")
    if method == "POST" and path.endswith("/chat"):
        status, payload = "200 OK", chat(str(body.get("question", "")))
    elif method == "POST" and path.endswith("/feedback"):
        status, payload = "200 OK", feedback(body)
    else:
        status, payload = "404 Not Found", {"error": f"no route {method} {path}"}
    data = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
    return [data]
