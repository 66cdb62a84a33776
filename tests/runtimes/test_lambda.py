"""The Lambda example under the real runtime interface client, frozen at its next poll."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness_common import LINK_DELAY, SlowLink, wait_for
from harness_lambda import LambdaFunction

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lambda"

HANDLERS = {"sync": "handler.handler", "async": "handler.async_handler"}

Start = Callable[[str, bool], tuple[LambdaFunction, str]]


@pytest.fixture
def start_function(collector: Any, slow_link: SlowLink, tmp_path: Path) -> Iterator[Start]:
    """Start the example under awslambdaric, logging through the slow link."""
    started: list[LambdaFunction] = []

    def start(variant: str, default_flush: bool) -> tuple[LambdaFunction, str]:
        project = f"lambda-{variant}-{'default' if default_flush else 'control'}-" \
                  f"{uuid.uuid4().hex[:8]}"
        env = {"SPANLOG_API_URL": slow_link.url, "SPANLOG_API_KEY": collector.api_key,
               "SPANLOG_PROJECT": project}
        if not default_flush:
            env["SPANLOG_ASYNC_FLUSH"] = "true"
        function = LambdaFunction(EXAMPLE, HANDLERS[variant], env, tmp_path)
        started.append(function)
        return function, project

    try:
        yield start
    finally:
        for function in started:
            function.close()


def _names(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(row["span_attributes"]["name"] for row in rows)


@pytest.mark.parametrize("variant", sorted(HANDLERS))
def test_every_invocation_is_stored_before_lambda_freezes(
        variant: str, start_function: Start, collector: Any) -> None:
    """On Lambda spanlog flushes before the handler returns by default, so each invocation's
    trace is in the collector when the runtime polls for the next event (the freeze)."""
    function, project = start_function(variant, True)
    replies = []
    for question in ("first, cold", "second, warm"):
        kind, reply, elapsed, = function.invoke({"question": question})
        assert kind == "response", f"{reply}\n{function.process.output()}"
        replies.append(reply)
        rows = collector.fetch(project=project)
        assert len(rows) == 2 * len(replies), function.process.output()
        # The cost of delivering first: at least one trip through the slow link.
        assert elapsed >= LINK_DELAY
    rows = collector.fetch(project=project)
    assert _names(rows) == ["chat.completions"] * 2 + ["lambda.invocation"] * 2
    roots = {row["id"]: row for row in rows if row["span_attributes"]["name"] != "chat.completions"}
    assert set(roots) == {reply["id"] for reply in replies}
    assert all(row["metadata"]["aws_request_id"] for row in roots.values())


@pytest.mark.parametrize("variant", sorted(HANDLERS))
def test_control_with_background_flush_loses_the_trace_at_the_freeze(
        variant: str, start_function: Start, collector: Any) -> None:
    """Negative control: with async_flush forced on, the trace is still in the background
    flush when Lambda freezes, so it is LOST (the harness detects loss)."""
    function, project = start_function(variant, False)
    kind, reply, _ = function.invoke({"question": "lost?"})
    assert kind == "response", f"{reply}\n{function.process.output()}"
    assert collector.fetch(project=project) == [], "rows arrived without a flush before return"

    if variant == "sync":
        # Thawed, the same process delivers them: the freeze alone was what lost them. (The
        # async variant's background task dies with its asyncio.run loop, so its rows wait
        # for a later flush: lost to this invocation either way.)
        function.process.thaw()
        wait_for(lambda: len(collector.fetch(project=project)) >= 2, 10 + 4 * LINK_DELAY,
                 "the background flush after a thaw")
