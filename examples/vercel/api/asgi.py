"""A plain ASGI app as a Vercel Python function, logging every chat request as a trace.

POST /asgi/chat      {"question": "..."} -> {"answer": "...", "id": "<row id of the trace>"}
POST /asgi/feedback  {"id": "...", "score": 0..1, "comment": "..."} -> {"ok": true}

Nothing here waits for the collector: when a trace ends, spanlog hands a flush to the
runtime's ``wait_until`` hook, the response goes out at once, and Vercel keeps the function
alive until the flush is done. Any ASGI framework (FastAPI, Starlette...) works the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import spanlog

spanlog.init_logger(project=os.environ.get("SPANLOG_PROJECT", "vercel-example"))

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@spanlog.traced(name="chat.completions", type="llm")
async def complete(question: str) -> str:
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
async def chat(question: str) -> dict[str, str]:
    """One trace per request: this root span (input and output are its argument and
    return value) and the nested LLM span."""
    answer = await complete(question)
    root = spanlog.current_span()
    root.log(tags=["vercel", "asgi"])
    return {"answer": answer, "id": root.id}


def feedback(body: dict[str, Any]) -> dict[str, bool]:
    """Attach a user's score (and comment) to a trace logged earlier."""
    spanlog.log_feedback(id=body["id"], scores={"helpful": float(body["score"])},
                         comment=body.get("comment"), source="external")
    return {"ok": True}


async def _read_json(receive: Receive) -> dict[str, Any]:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    raw = b"".join(chunks)
    return json.loads(raw) if raw else {}


async def _reply(send: Send, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI entry point Vercel serves."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"].rstrip("/")
    if scope["method"] == "POST" and path.endswith("/chat"):
        body = await _read_json(receive)
        await _reply(send, 200, await chat(str(body.get("question", ""))))
    elif scope["method"] == "POST" and path.endswith("/feedback"):
        await _reply(send, 200, feedback(await _read_json(receive)))
    else:
        await _reply(send, 404, {"error": f"no route {scope['method']} {scope['path']}"})
