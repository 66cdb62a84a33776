"""AWS Lambda handlers that log each invocation as a trace: a sync and an async variant.

Handler settings: ``handler.handler`` (sync) or ``handler.async_handler`` (async code).

Lambda freezes the execution environment as soon as the handler returns, so a background
flush would sit frozen with the trace in it. spanlog detects Lambda (``AWS_LAMBDA_FUNCTION_NAME``)
and flushes when each trace ends, before the handler returns: the cost is one request to the
collector per invocation. Set ``SPANLOG_ASYNC_FLUSH=true`` only if you flush yourself.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import spanlog

# Module scope runs once per cold start; the logger is reused by every warm invocation.
spanlog.init_logger(project=os.environ.get("SPANLOG_PROJECT", "lambda-example"))


@spanlog.traced(name="chat.completions", type="llm")
def complete(question: str) -> str:
    """Stands in for a model call: a real function would call its LLM client here."""
    answer = f"You asked: {question}"
    spanlog.current_span().log(
        input=[{"role": "user", "content": question}],
        output=answer,
        metadata={"model": "echo-1"},
        metrics={"prompt_tokens": len(question.split()), "completion_tokens": len(answer.split())},
    )
    return answer


@spanlog.traced(name="lambda.invocation", type="task")
def answer(event: dict[str, Any], request_id: str) -> dict[str, str]:
    """The trace of one invocation: this root span (input and output are its arguments
    and return value) and the nested LLM span."""
    question = str(event.get("question", ""))
    text = complete(question)
    root = spanlog.current_span()
    root.log(metadata={"aws_request_id": request_id})
    return {"answer": text, "id": root.id}


def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    """Sync handler: by the time it returns, the trace is in the collector."""
    return answer(event, context.aws_request_id)


@spanlog.traced(name="chat.completions", type="llm")
async def complete_async(question: str) -> str:
    """The async twin of :func:`complete`."""
    await asyncio.sleep(0)  # where a real function awaits its LLM client
    answer = f"You asked: {question}"
    spanlog.current_span().log(input=[{"role": "user", "content": question}], output=answer,
                               metadata={"model": "echo-1"})
    return answer


@spanlog.traced(name="lambda.invocation", type="task")
async def answer_async(event: dict[str, Any], request_id: str) -> dict[str, str]:
    """Async trace: ending it awaits the flush before the coroutine returns."""
    question = str(event.get("question", ""))
    text = await complete_async(question)
    root = spanlog.current_span()
    root.log(metadata={"aws_request_id": request_id})
    return {"answer": text, "id": root.id}


def async_handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    """Async variant: Lambda calls handlers synchronously, so run the coroutine to the end."""
    return asyncio.run(answer_async(event, context.aws_request_id))
