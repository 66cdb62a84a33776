"""A Cloudflare Python Worker that logs every chat request as a trace.

POST /chat      {"question": "..."} -> {"answer": "...", "id": "<row id of the trace>"}
POST /feedback  {"id": "...", "score": 0..1, "comment": "..."} -> {"ok": true}

``with spanlog.wait_until_scope(self.ctx):`` is the one line that matters: each trace that ends
inside it is delivered by a flush handed to ``ctx.waitUntil``, so the response goes out at
once and the Worker stays alive until the trace is in the collector. Under Pyodide spanlog
sends through the Workers ``fetch`` (there are no sockets or threads for Python here).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from workers import Response, WorkerEntrypoint

import spanlog

_configured = False


def _configure(env: Any) -> None:
    """Set spanlog up from the Worker's bindings (vars and secrets), once per isolate."""
    global _configured
    if _configured:
        return
    spanlog.init_logger(
        project=getattr(env, "SPANLOG_PROJECT", None) or "cloudflare-example",
        api_url=getattr(env, "SPANLOG_API_URL", None),
        api_key=getattr(env, "SPANLOG_API_KEY", None),  # `wrangler secret put SPANLOG_API_KEY`
    )
    _configured = True


@spanlog.traced(name="chat.completions", type="llm")
async def complete(question: str) -> str:
    """Stands in for a model call: a real Worker would call its LLM (or Workers AI) here."""
    answer = f"You asked: {question}"
    spanlog.current_span().log(
        input=[{"role": "user", "content": question}],
        output=answer,
        metadata={"model": "echo-1"},
        metrics={"prompt_tokens": len(question.split()), "completion_tokens": len(answer.split())},
    )
    return answer


@spanlog.traced(name="chat", type="task")
async def chat(question: str) -> dict[str, str]:
    """One trace per request: this root span (input and output are its argument and
    return value) and the nested LLM span."""
    answer = await complete(question)
    root = spanlog.current_span()
    root.log(tags=["cloudflare"])
    return {"answer": answer, "id": root.id}


class Default(WorkerEntrypoint):
    """The Worker's fetch handler."""

    async def fetch(self, request: Any) -> Response:
        _configure(self.env)
        with spanlog.wait_until_scope(self.ctx):
            path = urlsplit(request.url).path.rstrip("/")
            if request.method == "POST" and path.endswith("/chat"):
                body = await request.json()
                return Response.from_json(await chat(str(body.get("question", ""))))
            if request.method == "POST" and path.endswith("/feedback"):
                body = await request.json()
                spanlog.log_feedback(id=body["id"], scores={"helpful": float(body["score"])},
                                     comment=body.get("comment"), source="external")
                return Response.from_json({"ok": True})
            return Response.from_json({"error": f"no route {request.method} {path}"}, status=404)
