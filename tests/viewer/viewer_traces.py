"""Realistic traces for the viewer tests and the README screenshots, logged with the SDK."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import spanlog

SYSTEM = "You are the support assistant of Acme Cloud. Answer briefly and cite the docs."

# question, answer, tags, metadata, one score span per entry
QUESTIONS: list[tuple[str, str, list[str], dict[str, str], dict[str, float]]] = [
    ("How do I rotate my API key without downtime?",
     "Create a second key, deploy it everywhere, then revoke the old one (docs: Keys → Rotation).",
     ["prod"], {"user_id": "1234", "plan": "team"}, {"helpfulness": 1.0, "accuracy": 0.9}),
    ("Why was I charged twice this month? I want a refund for the duplicate.",
     "The second charge is a pending authorization; it drops off in 3–5 days.",
     ["prod", "billing"], {"user_id": "7781", "plan": "pro"},
     {"helpfulness": 0.5, "accuracy": 0.25}),
    ("Can I run the collector behind nginx?",
     "Yes: proxy / to the collector and turn off response buffering for the live stream.",
     ["staging"], {"user_id": "1234", "plan": "team"}, {"helpfulness": 0.75}),
    ("What regions do you support?",
     "us-east-1, eu-west-1 and ap-southeast-2.",
     ["prod"], {"user_id": "5120", "plan": "free"}, {"helpfulness": 1.0, "accuracy": 1.0}),
]
FAILING = 1  # the index of the question whose LLM call fails
ERROR = "RateLimitError: 429 Too Many Requests (retry after 2s)"


@dataclass
class LoggedTrace:
    """What a test needs to know about a trace it logged."""

    root_span_id: str
    ids: dict[str, str] = field(default_factory=dict)  # span name -> row id
    names: list[str] = field(default_factory=list)      # span names in tree order


def logger_for(url: str, api_key: str, project: str) -> spanlog.Logger:
    """An SDK logger for ``project`` that delivers each trace before its root span returns."""
    return spanlog.init_logger(project=project, api_key=api_key, api_url=url,
                               async_flush=False, set_current=False)


def log_support_trace(logger: spanlog.Logger, question: str, answer: str, tags: list[str],
                      metadata: dict[str, str], scores: dict[str, float], start: float, *,
                      error: str | None = None,
                      ratings: tuple[tuple[str, float], ...] = ()) -> LoggedTrace:
    """A support-bot request: retrieval (with an embedding call), an LLM call, and one
    score span per score and per extra rating, all under one root span."""
    t = start
    root = logger.start_span("answer_question", "task", start_time=t,
                             input={"question": question}, tags=tags, metadata=metadata)
    out = LoggedTrace(root.root_span_id)

    def done(span: spanlog.Span, end: float) -> None:
        out.ids[span.name] = span.id
        span.end(end)

    # Depth first, children by start time: the order the trace view lists them in.
    out.names = ["answer_question", "retrieve_docs", "embed_query", "chat.completions.create"]
    retrieve = root.start_span("retrieve_docs", "tool", start_time=t + 0.02,
                               input={"query": question, "k": 3})
    embed = retrieve.start_span("embed_query", "function", start_time=t + 0.03,
                                input=question, metrics={"tokens": 14})
    done(embed, t + 0.09)
    retrieve.log(output=[{"doc": "keys/rotation.md", "score": 0.82},
                         {"doc": "billing/charges.md", "score": 0.41},
                         {"doc": "deploy/nginx.md", "score": 0.33}])
    done(retrieve, t + 0.31)
    llm = root.start_span("chat.completions.create", "llm", start_time=t + 0.33,
                          input=[{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": question}],
                          metadata={"model": "gpt-4o-mini", "temperature": 0.2})
    if error is None:
        llm.log(output=[{"role": "assistant", "content": answer}],
                metrics={"prompt_tokens": 412, "completion_tokens": 38, "tokens": 450,
                         "time_to_first_token": 0.41})
    else:
        llm.log(error=error, metrics={"prompt_tokens": 412, "tokens": 412})
    done(llm, t + 1.79)
    entries = [*sorted(scores.items()), *ratings]
    out.names += [name for name, _ in entries]
    for i, (name, value) in enumerate(entries):
        score = root.start_span(name, "score", start_time=t + 1.80 + i * 0.005,
                                scores={name: value})
        done(score, t + 1.804 + i * 0.005)
    if error is None:
        root.log(output=answer)
    else:
        root.log(error=error)
    out.ids[root.name] = root.id
    root.end(t + 1.84)
    return out


def log_support_traces(logger: spanlog.Logger, now: float | None = None) -> list[LoggedTrace]:
    """The four support-bot traces, oldest first, a minute apart (one of them failed)."""
    now = time.time() if now is None else now
    out = []
    for i, (question, answer, tags, metadata, scores) in enumerate(QUESTIONS):
        out.append(log_support_trace(logger, question, answer, tags, metadata, scores,
                                     now - (len(QUESTIONS) - i) * 61.3,
                                     error=ERROR if i == FAILING else None))
    assert logger.flush(10), f"the SDK could not deliver the traces: {logger.stats()}"
    return out
