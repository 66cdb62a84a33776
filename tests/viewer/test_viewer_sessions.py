"""The viewer's sessions (docs/viewer.md): a Sessions link from the logs table, the list of
conversations with their totals, one session as chat turns in order, a turn opening its
trace, and the session key set from the page."""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from playwright.sync_api import expect
from viewer_harness import Collector

SESSIONS = "table.sessions tbody tr[data-session-id]"


def _turn(collector: Collector, pid: str, trace: str, start: float, session: str,
          question: Any, answer: Any, *, key: str = "session_id", tokens: int = 10,
          error: str | None = None) -> None:
    rows = [{"id": f"{trace}-root", "project_id": pid, "span_id": f"{trace}-r",
             "root_span_id": trace, "span_attributes": {"name": "chat_turn", "type": "task"},
             "input": question, "output": answer, "metadata": {key: session},
             "metrics": {"start": start, "end": start + 1.5}},
            {"id": f"{trace}-llm", "project_id": pid, "span_id": f"{trace}-l",
             "root_span_id": trace, "span_parents": [f"{trace}-r"],
             "span_attributes": {"name": "chat", "type": "llm"},
             "metrics": {"start": start + 0.2, "end": start + 1.2, "tokens": tokens}}]
    if error is not None:
        rows[0]["error"] = error
        del rows[0]["output"]
    collector.request("POST", "/logs3", {"rows": rows})


def _conversation(collector: Collector, pid: str) -> float:
    now = time.time()
    # Logged out of order: the page orders turns by start time.
    _turn(collector, pid, "a2", now - 60, "chat-a", "And in Paris?", "Also sunny.", tokens=7)
    _turn(collector, pid, "a1", now - 120, "chat-a",
          {"messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Weather in Rome?"}]},
          {"role": "assistant", "content": "Sunny, 24°C."}, tokens=5)
    _turn(collector, pid, "a3", now - 30, "chat-a", "Book a flight", None,
          error="tool failed: no seats")
    _turn(collector, pid, "b1", now - 3600, "chat-b", "hello", "hi")
    return now


def test_sessions_list_from_the_logs_table(viewer: Any, viewer_collector: Collector,
                                           project: tuple[str, str]) -> None:
    name, pid = project
    _conversation(viewer_collector, pid)
    viewer.goto(f"{viewer_collector.url}/projects/{pid}")
    viewer.get_by_role("link", name="Sessions").click()
    expect(viewer).to_have_url(f"{viewer_collector.url}/projects/{pid}/sessions")
    rows = viewer.locator(SESSIONS)
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-session-id", "chat-a")
    expect(rows.nth(0)).to_contain_text("3")              # traces
    expect(rows.nth(0)).to_contain_text("tokens 22")
    expect(rows.nth(0)).to_contain_text("1 error")
    expect(rows.nth(1)).to_have_attribute("data-session-id", "chat-b")
    expect(viewer.locator("#crumbs")).to_contain_text(name)
    expect(viewer.locator("#session-key")).to_have_value("metadata.session_id")


def test_a_session_reads_as_a_conversation_and_opens_traces(
        viewer: Any, viewer_collector: Collector, project: tuple[str, str]) -> None:
    _, pid = project
    _conversation(viewer_collector, pid)
    viewer.goto(f"{viewer_collector.url}/projects/{pid}/sessions")
    viewer.get_by_role("link", name="chat-a").click()
    turns = viewer.locator(".conversation .turn")
    expect(turns).to_have_count(3)
    expect(turns.nth(0).locator(".role-user")).to_have_text("userWeather in Rome?")
    expect(turns.nth(0).locator(".role-assistant")).to_contain_text("Sunny, 24°C.")
    expect(turns.nth(1).locator(".role-user")).to_contain_text("And in Paris?")
    expect(turns.nth(1)).to_contain_text("tokens 7")
    expect(turns.nth(2).locator(".turn-error")).to_contain_text("tool failed: no seats")
    expect(viewer.locator(".session-summary")).to_contain_text("3 traces")
    turns.nth(1).click()
    expect(viewer).to_have_url(f"{viewer_collector.url}/projects/{pid}/traces/a2")
    viewer.go_back()
    expect(turns).to_have_count(3)


def test_an_odd_session_id_round_trips_through_the_url(
        viewer: Any, viewer_collector: Collector, project: tuple[str, str]) -> None:
    _, pid = project
    odd = "user/42 'x' #1?"
    _turn(viewer_collector, pid, "o1", time.time(), odd, "q", "a")
    viewer.goto(f"{viewer_collector.url}/projects/{pid}/sessions")
    viewer.get_by_role("link", name=odd).click()
    expect(viewer.locator(".conversation .turn")).to_have_count(1)
    assert urllib.parse.unquote(viewer.url.rsplit("/sessions/", 1)[1]) == odd
    viewer.reload()  # the URL alone leads back to the session
    expect(viewer.locator(".conversation .turn")).to_have_count(1)


def test_the_session_key_is_set_from_the_page(viewer: Any, viewer_collector: Collector,
                                              project: tuple[str, str]) -> None:
    _, pid = project
    now = time.time()
    _turn(viewer_collector, pid, "c1", now - 10, "conv-1", "q1", "a1", key="conversation")
    _turn(viewer_collector, pid, "c2", now - 5, "conv-1", "q2", "a2", key="conversation")
    viewer.goto(f"{viewer_collector.url}/projects/{pid}/sessions")
    expect(viewer.locator("table.sessions tbody")).to_contain_text("No sessions yet")
    viewer.locator("#session-key").fill("input.nope")
    viewer.get_by_role("button", name="Save").click()
    expect(viewer.locator(".session-key .filter-error")).to_contain_text(
        "must be a path into metadata")
    viewer.locator("#session-key").fill("metadata.conversation")
    viewer.get_by_role("button", name="Save").click()
    rows = viewer.locator(SESSIONS)
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_have_attribute("data-session-id", "conv-1")
    settings = viewer_collector.request("GET", f"/v1/project/{pid}/settings")
    assert settings == {"session_key": "metadata.conversation"}
