"""Log through the unmodified braintrust SDK into a spanlog collector (run as a subprocess).

Usage: python braintrust_scenario.py URL API_KEY PROJECT MODE
MODE "flush" flushes explicitly; "atexit" relies on the SDK's exit-time flush; "big" logs
one span larger than the collector's request limit (the SDK's overflow upload path);
"resume" continues a span from its export() and logs through a logger given the project's id;
"dataset" and "experiment" make a call the collector does not serve.
Prints one JSON object describing what was logged (ids to look for, or the error) on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys

import braintrust


def main() -> None:
    url, api_key, project, mode = sys.argv[1:5]
    logger = braintrust.init_logger(project=project, api_key=api_key, app_url=url,
                                    async_flush=True)
    if mode in ("dataset", "experiment"):
        try:
            made = (braintrust.init_dataset(project=project, name="golden", api_key=api_key,
                                            app_url=url) if mode == "dataset" else
                    braintrust.init(project=project, experiment="nightly", api_key=api_key,
                                    app_url=url))
            print(json.dumps({"error": None, "id": made.id}))
        except Exception as exc:  # the SDK's error, reported to the test
            print(json.dumps({"error": str(exc)}))
        return
    if mode == "resume":
        with logger.start_span(name="origin") as origin:
            exported = origin.export()
        with braintrust.start_span(name="resumed", parent=exported) as resumed:
            resumed.log(output="resumed")
        by_id = braintrust.init_logger(project_id=logger.id, api_key=api_key, app_url=url,
                                       set_current=False)
        with by_id.start_span(name="by_id") as other:
            other.log(output="a")
        by_id.flush()
        logger.flush()
        print(json.dumps({"span_id": origin.span_id, "root_span_id": origin.root_span_id,
                          "by_id": other.id}))
        return
    if mode == "big":
        with logger.start_span(name="huge", type="llm") as span:
            span.log(input="x" * 300_000, output="ok")
        logger.flush()
        print(json.dumps({"id": span.id}))
        return

    @braintrust.traced
    def retrieve(query: str) -> list[str]:
        braintrust.current_span().log(metadata={"retriever": "bm25", "k": 2})
        return [f"doc about {query}", "another doc"]

    @braintrust.traced(name="answer", type="llm")
    def answer(query: str, docs: list[str]) -> str:
        braintrust.current_span().log(metrics={"prompt_tokens": 12, "completion_tokens": 5},
                                      scores={"relevance": 0.75})
        return f"{query}: {len(docs)} docs"

    @braintrust.traced(name="handle_request")
    def handle(query: str, user_id: str) -> str:
        braintrust.current_span().log(metadata={"user_id": user_id}, tags=["prod"])
        return answer(query, retrieve(query))

    @braintrust.traced(name="async_handler")
    async def async_handle(query: str) -> str:
        await asyncio.sleep(0)
        return query.upper()

    out = handle("refunds", "user-1234")
    root_id = None
    with logger.start_span(name="manual", type="task") as span:
        span.log(input={"question": "hi"}, output="hello", expected="hello!",
                 metadata={"user_id": "user-5678", "nested": {"env": "staging"}})
        with span.start_span(name="child", type="tool") as child:
            child.log(input=1, output=2, scores={"correct": 1})
        root_id = span.id
        root_span_id = span.root_span_id
    logger.log_feedback(id=root_id, scores={"thumbs_up": 0.0}, expected="corrected",
                        comment="wrong tone", metadata={"reviewer": "ann"}, source="app")
    asyncio.run(async_handle("async"))
    if mode == "flush":
        logger.flush()
    print(json.dumps({"output": out, "root_id": root_id, "root_span_id": root_span_id}))


if __name__ == "__main__":
    main()
