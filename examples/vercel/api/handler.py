"""A ``BaseHTTPRequestHandler`` class as a Vercel Python function (Vercel's classic style).

POST /handler/chat      {"question": "..."} -> {"answer": "...", "id": "<row id of the trace>"}
POST /handler/feedback  {"id": "...", "score": 0..1, "comment": "..."} -> {"ok": true}

As in the WSGI example, each trace's flush is handed to the runtime's ``wait_until`` hook and
runs after the response is written.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler
from typing import Any

import spanlog

spanlog.init_logger(project=os.environ.get("SPANLOG_PROJECT", "vercel-example"))


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
    root.log(tags=["vercel", "handler"])
    return {"answer": answer, "id": root.id}


def feedback(body: dict[str, Any]) -> dict[str, bool]:
    """Attach a user's score (and comment) to a trace logged earlier."""
    spanlog.log_feedback(id=body["id"], scores={"helpful": float(body["score"])},
                         comment=body.get("comment"), source="external")
    return {"ok": True}


class handler(BaseHTTPRequestHandler):  # lower case: the name Vercel looks for
    """The request handler class Vercel serves."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.endswith("/chat"):
            self._reply(200, chat(str(body.get("question", ""))))
        elif path.endswith("/feedback"):
            self._reply(200, feedback(body))
        else:
            self._reply(404, {"error": f"no route POST {path}"})

    def _reply(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        # With a length the client has the whole response before the flush runs.
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
