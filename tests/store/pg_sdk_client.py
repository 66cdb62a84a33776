"""An application process logging traces with the spanlog SDK, through two collectors.

``python pg_sdk_client.py URL_A URL_B NAME TRACES``: each trace (a root span with two child
spans) is logged through collector A; feedback on each root (scores, tags, a comment) goes
through collector B, often before A has delivered the span itself. Exits 0 once both
loggers report everything delivered.
"""

from __future__ import annotations

import sys

import spanlog


def main(url_a: str, url_b: str, name: str, traces: int) -> int:
    spans = spanlog.init_logger(project="load", api_url=url_a, async_flush=True,
                                set_current=False)
    feedback = spanlog.init_logger(project="load", api_url=url_b, async_flush=True,
                                   set_current=False)
    for i in range(traces):
        with spans.start_span(name="request", type="task", id=f"{name}-{i}") as root:
            root.log(input={"question": i}, metadata={"client": name, "i": i})
            for step in ("retrieve", "answer"):
                with root.start_span(name=step, type="tool", id=f"{name}-{i}-{step}") as child:
                    child.log(output=f"{step} {i}")
            root.log(output=f"answer {i}", tags=["served"])
        feedback.log_feedback(id=f"{name}-{i}", scores={"thumbs": 1.0}, tags=["rated"],
                              comment=f"good {i}")
    ok = spans.flush(timeout=60) and feedback.flush(timeout=60)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
