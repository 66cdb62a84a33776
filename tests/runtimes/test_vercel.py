"""The Vercel examples under the real Vercel Python runtime, frozen the moment it says `end`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness_common import LINK_DELAY, SlowLink, wait_for
from harness_vercel import VercelFunction

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "vercel" / "api"

# app kind -> (file, the variable vc_init serves)
APPS = {"asgi": ("asgi.py", "app"), "wsgi": ("wsgi.py", "app"),
        "handler": ("handler.py", "handler")}

Start = Callable[..., tuple[VercelFunction, str]]


@pytest.fixture
def start_function(vercel_python: Path, collector: Any, slow_link: SlowLink,
                   tmp_path: Path) -> Iterator[Start]:
    """Start an example under vc_init, logging through the slow link into its own project."""
    started: list[VercelFunction] = []

    def start(kind: str, hooks: bool, async_flush: str | None = None
              ) -> tuple[VercelFunction, str]:
        project = f"vercel-{kind}-{'hooked' if hooks else 'control'}-{uuid.uuid4().hex[:8]}"
        env = {"SPANLOG_API_URL": slow_link.url, "SPANLOG_API_KEY": collector.api_key,
               "SPANLOG_PROJECT": project}
        if not hooks:
            env["SPANLOG_WAIT_UNTIL"] = "off"
        if async_flush is not None:
            env["SPANLOG_ASYNC_FLUSH"] = async_flush
        file, variable = APPS[kind]
        function = VercelFunction(vercel_python, EXAMPLES / file, variable, env, tmp_path)
        started.append(function)
        return function, project

    try:
        yield start
    finally:
        for function in started:
            function.close()


def _by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["span_attributes"]["name"]: row for row in rows if "span_attributes" in row}


@pytest.mark.parametrize("kind", sorted(APPS))
def test_trace_and_feedback_are_stored_before_vercel_freezes(
        kind: str, start_function: Start, collector: Any, slow_link: SlowLink) -> None:
    """With the runtime's wait_until hook the response is immediate, yet trace and feedback
    are in the collector when the function is frozen at `end`."""
    function, project = start_function(kind, True)

    status, reply, _, invocation = function.invoke(f"/{kind}/chat",
                                                   {"question": "what is spanlog?"})
    answered = time.monotonic()
    assert status == 200, f"{reply}\n{function.describe()}"
    function.wait_end(invocation)
    rows = _by_name(collector.fetch(project=project))
    assert set(rows) == {"chat", "chat.completions"}, function.describe()
    root, llm = rows["chat"], rows["chat.completions"]
    assert root["id"] == reply["id"] and root["output"] == reply
    assert llm["span_parents"] == [root["span_id"]]
    assert llm["span_attributes"]["type"] == "llm" and llm["metrics"]["prompt_tokens"] == 3
    # The slow link holds the flush's request LINK_DELAY seconds: the response had come
    # back before the link let it go, so it did not wait for the flush.
    assert answered < slow_link.first_forwarded("/logs3"), "the response waited for the flush"

    status, _, _, invocation = function.invoke(
        f"/{kind}/feedback", {"id": reply["id"], "score": 1, "comment": "spot on"})
    assert status == 200
    function.wait_end(invocation)
    stored = collector.fetch(project=project)
    assert _by_name(stored)["chat"]["scores"] == {"helpful": 1.0}, function.describe()
    comments = [row for row in stored if row.get("comment")]
    assert [c["comment"]["text"] for c in comments] == ["spot on"]


@pytest.mark.parametrize("kind", sorted(APPS))
def test_control_without_hook_loses_the_trace_at_the_freeze(
        kind: str, start_function: Start, collector: Any) -> None:
    """Negative control: with hooks off and a background flush forced (on Vercel the default
    is to flush at trace end), the trace is LOST when Vercel freezes at `end` (the harness
    detects loss), and only a thaw sends it."""
    function, project = start_function(kind, False, async_flush="true")

    status, reply, _, invocation = function.invoke(f"/{kind}/chat", {"question": "lost?"})
    assert status == 200, f"{reply}\n{function.describe()}"
    function.wait_end(invocation)
    assert collector.fetch(project=project) == [], "rows arrived although no hook was used"

    # Thawed, the same process delivers them: the freeze alone was what lost them.
    function.process.thaw()
    wait_for(lambda: len(collector.fetch(project=project)) >= 2, 10 + 4 * LINK_DELAY,
             "the background flush after a thaw")


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_without_a_hook_the_trace_is_flushed_before_the_response(
        kind: str, start_function: Start, collector: Any) -> None:
    """With no hook found (as without the `vercel` package), VERCEL=1 makes async_flush
    default to False: the trace is stored before the freeze, paid for in response time."""
    function, project = start_function(kind, False)

    status, reply, elapsed, invocation = function.invoke(f"/{kind}/chat", {"question": "q"})
    assert status == 200, f"{reply}\n{function.describe()}"
    function.wait_end(invocation)
    rows = _by_name(collector.fetch(project=project))
    assert set(rows) == {"chat", "chat.completions"}, function.describe()
    assert elapsed >= LINK_DELAY, f"response took {elapsed:.3f}s: it did not wait to flush"
