"""The viewer in headless Chromium, against a collector filled by the SDK (issue 6)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect
from viewer_harness import Collector, open_context, watch
from viewer_traces import (
    ERROR,
    QUESTIONS,
    LoggedTrace,
    log_support_trace,
    log_support_traces,
)

import spanlog

ROWS = "table.logs tbody tr[data-id]"


@pytest.fixture
def support(logger: spanlog.Logger) -> list[LoggedTrace]:
    """The four support-bot traces, logged through the SDK."""
    return log_support_traces(logger)


def logs_url(collector: Collector, project_id: str) -> str:
    return f"{collector.url}/projects/{project_id}"


def test_logs_table_lists_traces_newest_first_with_their_columns(
        viewer: Any, viewer_collector: Collector, project: tuple[str, str],
        support: list[LoggedTrace]) -> None:
    """One row per trace, newest first: time, name, previews, the trace's duration, LLM calls
    and tokens, tags, score averages."""
    name, pid = project
    viewer.goto(logs_url(viewer_collector, pid))
    rows = viewer.locator(ROWS)
    expect(rows).to_have_count(len(QUESTIONS))
    for i, trace in enumerate(reversed(support)):
        expect(rows.nth(i)).to_have_attribute("data-root-span-id", trace.root_span_id)
    expect(viewer.locator("#crumbs")).to_contain_text(name)
    oldest = rows.nth(len(QUESTIONS) - 1)
    expect(oldest.locator(".col-name")).to_contain_text("answer_question")
    expect(oldest.locator(".col-input")).to_contain_text("rotate my API key")
    expect(oldest.locator(".col-output")).to_contain_text("Create a second key")
    expect(oldest.locator(".col-duration")).to_have_text("1.84s")
    # Totals over the trace's spans: the LLM call's 450 tokens and the embedding's 14.
    expect(oldest.locator(".col-tokens")).to_have_text("464")
    expect(oldest.locator(".col-llm-calls")).to_have_text("1")
    expect(oldest.locator(".col-tags")).to_have_text("prod")
    expect(oldest.locator(".col-time time")).to_have_text(re.compile(r"\d\d:\d\d"))
    # Scores live on child score spans; the table shows their average over each trace.
    expect(oldest.locator(".col-scores")).to_contain_text("accuracy 90%")
    expect(oldest.locator(".col-scores")).to_contain_text("helpfulness 100%")
    failed = rows.nth(len(QUESTIONS) - 1 - 1)
    expect(failed.locator(".col-output")).to_contain_text("RateLimitError")
    expect(failed.locator(".err-mark")).to_have_text("2 errors")  # the LLM call and the root


def test_logs_table_pages_by_cursor(viewer: Any, viewer_collector: Collector,
                                    project: tuple[str, str], logger: spanlog.Logger) -> None:
    """Past one page (50 traces), 'Load older traces' fetches the next page by cursor."""
    _, pid = project
    for i in range(53):
        logger.log(input=f"question {i}", output=f"answer {i}")
    assert logger.flush(10)
    viewer.goto(logs_url(viewer_collector, pid))
    rows = viewer.locator(ROWS)
    expect(rows).to_have_count(50)
    expect(rows.nth(0).locator(".col-input")).to_have_text("question 52")
    more = viewer.get_by_role("button", name="Load older traces")
    more.click()
    expect(rows).to_have_count(53)
    expect(rows.nth(52).locator(".col-input")).to_have_text("question 0")
    expect(more).to_be_hidden()


def test_filter_valid_and_invalid_kept_in_url(viewer: Any, viewer_collector: Collector,
                                              project: tuple[str, str],
                                              support: list[LoggedTrace]) -> None:
    """A valid filter narrows the table and stays in the URL; an invalid one shows the 400."""
    _, pid = project
    viewer.goto(logs_url(viewer_collector, pid))
    rows = viewer.locator(ROWS)
    expect(rows).to_have_count(len(QUESTIONS))
    box = viewer.locator("#filter")
    box.fill("metadata.user_id = '1234'")
    box.press("Enter")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-root-span-id", support[2].root_span_id)
    expect(rows.nth(1)).to_have_attribute("data-root-span-id", support[0].root_span_id)
    expect(viewer).to_have_url(re.compile(r"\?filter=metadata\.user_id"))

    # The URL alone reproduces the view (a shared link, or a reload).
    shared = viewer.url
    viewer.goto("about:blank")
    viewer.goto(shared)
    expect(box).to_have_value("metadata.user_id = '1234'")
    expect(rows).to_have_count(2)

    bad = "metadata.user_id = AND tags"
    status, message = viewer_collector.error_of(
        "POST", f"/v1/project_logs/{pid}/fetch", {"filter": bad, "roots_only": True})
    assert status == 400
    box.fill(bad)
    viewer.get_by_role("button", name="Apply").click()
    error = viewer.locator("#filter-error")
    expect(error).to_have_text(message)
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(rows).to_have_count(0)

    box.fill("error IS NOT NULL")
    box.press("Enter")
    expect(error).to_be_hidden()
    expect(rows).to_have_count(1)
    expect(rows.nth(0).locator(".col-output")).to_contain_text(ERROR)


def test_trace_view_shows_tree_and_averaged_scores(viewer: Any, viewer_collector: Collector,
                                                   project: tuple[str, str],
                                                   logger: spanlog.Logger) -> None:
    """Opening a trace shows its span tree with levels and the root's averaged scores."""
    _, pid = project
    question, answer, tags, metadata, _ = QUESTIONS[0]
    # Two users rated the answer (1.0 and 0.5): the root shows their average, 75%.
    trace = log_support_trace(logger, question, answer, tags, metadata, {"accuracy": 0.9},
                              time.time() - 5, ratings=(("user_rating", 1.0),
                                                        ("user_rating", 0.5)))
    assert logger.flush(10)
    viewer.goto(logs_url(viewer_collector, pid))
    viewer.locator(ROWS).first.click()
    expect(viewer).to_have_url(re.compile(f"/traces/{trace.root_span_id}$"))

    items = viewer.get_by_role("treeitem")
    expect(items).to_have_count(len(trace.names))
    expect(items.locator(".tree-name")).to_have_text(trace.names)
    levels = {"answer_question": "1", "embed_query": "3"}
    for i, span_name in enumerate(trace.names):
        expect(items.nth(i)).to_have_attribute("aria-level", levels.get(span_name, "2"))

    api_root = next(r for r in viewer_collector.trace(pid, trace.root_span_id)
                    if not r.get("span_parents"))
    assert api_root["scores_avg"]["user_rating"] == pytest.approx(0.75)
    detail = viewer.get_by_role("complementary", name="answer_question")
    rating = detail.locator(".scores-table tr[data-score=user_rating]")
    expect(rating.locator(".avg")).to_have_text("75%")
    expect(rating.locator(".own")).to_have_text("–")
    expect(viewer.locator(".trace-summary")).to_contain_text("user_rating 75%")

    # The LLM span's detail: chat input as a conversation, metrics, metadata.
    items.nth(trace.names.index("chat.completions.create")).click()
    detail = viewer.get_by_role("complementary", name="chat.completions.create")
    # input (system, user) and output (assistant) as conversations
    expect(detail.locator(".chat .chat-role")).to_have_text(["system", "user", "assistant"])
    expect(detail.locator(".chat .role-user")).to_contain_text(question)
    expect(detail.locator(".metrics")).to_contain_text("450")
    expect(detail).to_contain_text("gpt-4o-mini")
    expect(viewer).to_have_url(re.compile(r"\?span="))


def test_feedback_from_the_page_reaches_the_api(viewer: Any, viewer_collector: Collector,
                                                project: tuple[str, str],
                                                support: list[LoggedTrace]) -> None:
    """Thumbs-down, a comment and an edited expected are stored and shown at once."""
    _, pid = project
    trace = support[3]
    llm_id = trace.ids["chat.completions.create"]
    api_calls = _record_api_calls(viewer)
    viewer.goto(f"{logs_url(viewer_collector, pid)}/traces/{trace.root_span_id}?span={llm_id}")
    detail = viewer.get_by_role("complementary", name="chat.completions.create")
    expect(detail).to_be_visible()

    down = detail.get_by_role("button", name="Bad")
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(detail.locator(".scores-table tr[data-score=thumbs] .own")).to_have_text("0%")

    detail.get_by_role("textbox", name="Comment").fill("Lists regions we no longer run.")
    detail.get_by_role("button", name="Comment", exact=True).click()
    expect(detail.locator(".comments")).to_contain_text("Lists regions we no longer run.")

    detail.locator("summary", has_text="Edit expected").click()
    detail.locator("#fb-expected").fill('{"regions": ["us-east-1", "eu-west-1"]}')
    detail.get_by_role("button", name="Save expected").click()
    expect(detail.locator(".fb-status")).to_have_text("Expected saved")

    rows = {r["id"]: r for r in viewer_collector.trace(pid, trace.root_span_id)}
    assert rows[llm_id]["scores"]["thumbs"] == 0
    assert rows[llm_id]["expected"] == {"regions": ["us-east-1", "eu-west-1"]}
    assert rows[llm_id]["_audit_source"] == "app"
    comments = viewer_collector.fetch(pid, filter=f"origin.id = '{llm_id}'")
    assert [c["comment"]["text"] for c in comments] == ["Lists regions we no longer run."]
    # The root averages the new score over its subtree.
    assert rows[trace.ids["answer_question"]]["scores_avg"]["thumbs"] == 0
    expect(detail.locator(".field[data-field=expected]")).to_contain_text("eu-west-1")

    # Read back from the collector (not just drawn locally): a fresh load shows it all.
    viewer.reload()
    detail = viewer.get_by_role("complementary", name="chat.completions.create")
    expect(detail.locator(".comments li")).to_have_count(1)
    expect(detail.locator(".comments")).to_contain_text("Lists regions we no longer run.")
    expect(detail.get_by_role("button", name="Bad")).to_have_attribute("aria-pressed", "true")
    # The comment row came with the trace's spans, and is no span of the tree.
    expect(viewer.get_by_role("treeitem")).to_have_count(len(trace.names))
    _assert_trace_reads_only_the_trace(api_calls)


def test_sdk_comments_show_in_the_trace_view(viewer: Any, viewer_collector: Collector,
                                            project: tuple[str, str],
                                            logger: spanlog.Logger) -> None:
    """Comments logged with the SDK's log_feedback(comment=...) show on their spans, from the
    trace endpoint's rows, and never as spans of the tree or waterfall."""
    _, pid = project
    question, answer, tags, metadata, scores = QUESTIONS[2]
    trace = log_support_trace(logger, question, answer, tags, metadata, scores,
                              time.time() - 5)
    root_id = trace.ids["answer_question"]
    llm_id = trace.ids["chat.completions.create"]
    logger.log_feedback(llm_id, comment="Mention the buffering flag first.",
                        metadata={"user_email": "ana@example.com"})
    logger.log_feedback(root_id, comment="Good enough for the FAQ.", scores={"thumbs": 1})
    assert logger.flush(10)
    # The collector files both comment rows into the trace.
    assert sorted(r["comment"]["text"] for r in viewer_collector.trace(pid, trace.root_span_id)
                  if r.get("comment")) == ["Good enough for the FAQ.",
                                           "Mention the buffering flag first."]

    api_calls = _record_api_calls(viewer)
    viewer.goto(f"{logs_url(viewer_collector, pid)}/traces/{trace.root_span_id}")
    items = viewer.get_by_role("treeitem")
    expect(items.locator(".tree-name")).to_have_text(trace.names)
    expect(viewer.locator(".tree .bar")).to_have_count(len(trace.names))
    expect(viewer.locator(".trace-summary")).to_contain_text(f"{len(trace.names)} spans")

    root = viewer.get_by_role("complementary", name="answer_question")
    expect(root.locator(".field[data-field=comments] h3")).to_have_text("Comments (1)")
    expect(root.locator(".comments li .comment-text")).to_have_text(["Good enough for the FAQ."])
    expect(root.locator(".scores-table tr[data-score=thumbs] .own")).to_have_text("100%")

    items.nth(trace.names.index("chat.completions.create")).click()
    llm = viewer.get_by_role("complementary", name="chat.completions.create")
    expect(llm.locator(".comments li .comment-text")).to_have_text(
        ["Mention the buffering flag first."])
    expect(llm.locator(".comments .comment-meta")).to_contain_text("ana@example.com")

    # A span without comments shows none.
    items.nth(trace.names.index("retrieve_docs")).click()
    retrieve = viewer.get_by_role("complementary", name="retrieve_docs")
    expect(retrieve.locator(".field[data-field=input]")).to_be_visible()
    expect(retrieve.locator(".comments")).to_have_count(0)

    # Another SDK comment while the page is open arrives live, oldest first.
    logger.log_feedback(llm_id, comment="And link deploy/nginx.md.")
    assert logger.flush(10)
    items.nth(trace.names.index("chat.completions.create")).click()
    expect(llm.locator(".comments li .comment-text")).to_have_text(
        ["Mention the buffering flag first.", "And link deploy/nginx.md."])
    expect(items).to_have_count(len(trace.names))
    _assert_trace_reads_only_the_trace(api_calls)


def _record_api_calls(page: Any) -> list[tuple[str, str]]:
    """(method, path) of every collector API request ``page`` makes from now on."""
    calls: list[tuple[str, str]] = []

    def seen(request: Any) -> None:
        path = re.sub(r"^https?://[^/]+", "", request.url)
        if path.startswith("/v1/"):
            calls.append((request.method, path.split("?")[0]))

    page.on("request", seen)
    return calls


def _assert_trace_reads_only_the_trace(calls: list[tuple[str, str]]) -> None:
    """The trace view reads its spans and comments from the trace endpoint alone: no
    filtered fetch of comment rows beside it."""
    assert any(m == "GET" and "/trace/" in p for m, p in calls), calls
    assert not [c for c in calls if c[1].endswith("/fetch")], calls


def test_second_page_sees_new_logs_and_feedback_live(
        browser: Any, viewer: Any, viewer_collector: Collector, project: tuple[str, str],
        logger: spanlog.Logger) -> None:
    """Another page on the project gets new traces and feedback without reloading."""
    _, pid = project
    context, problems = open_context(browser, viewer_collector)
    try:
        other = watch(context.new_page(), problems)
        for page in (viewer, other):
            page.goto(logs_url(viewer_collector, pid))
            expect(page.locator("table.logs tbody")).to_contain_text("No traces yet")
            expect(page.locator("#live")).to_be_visible()
        other.evaluate("window.__notReloaded = true")

        @spanlog.traced(name="handle_request", type="task")
        def handle(question: str) -> str:
            return "It depends."

        # @traced inside the root span logs a child span through the same logger.
        with logger.start_span("live_question", "task", input="Is this live?") as span:
            span.log(output=handle("Is this live?"), tags=["live"])
        assert logger.flush(10)

        row = other.locator(ROWS)
        expect(row).to_have_count(1)
        expect(row.nth(0).locator(".col-name")).to_contain_text("live_question")
        expect(row.nth(0).locator(".col-tags")).to_have_text("live")
        assert other.evaluate("window.__notReloaded") is True

        # Both pages open the trace; feedback given on one shows up on the other.
        for page in (viewer, other):
            page.locator(ROWS).first.click()
            expect(page.get_by_role("complementary", name="live_question")).to_be_visible()
        viewer.get_by_role("button", name="Bad").click()
        expect(viewer.locator(".fb-status")).to_have_text("Saved: bad")
        seen = other.get_by_role("complementary", name="live_question")
        expect(seen.locator(".scores-table tr[data-score=thumbs] .own")).to_have_text("0%")
        expect(seen.get_by_role("button", name="Bad")).to_have_attribute("aria-pressed", "true")
        assert other.evaluate("window.__notReloaded") is True
        problems.check()
    finally:
        context.close()


def test_keyboard_moves_opens_and_closes(viewer: Any, viewer_collector: Collector,
                                         project: tuple[str, str],
                                         support: list[LoggedTrace]) -> None:
    """Tab reaches the table, j/k and arrows move, Enter opens, Escape closes then goes back."""
    _, pid = project
    viewer.goto(f"{logs_url(viewer_collector, pid)}?filter=tags%20includes%20'prod'")
    rows = viewer.locator(ROWS)
    expect(rows).to_have_count(3)
    viewer.get_by_label("Time range").focus()  # the last control above the table
    viewer.keyboard.press("Tab")
    expect(rows.nth(0)).to_be_focused()  # the table is one tab stop
    viewer.keyboard.press("j")
    expect(rows.nth(1)).to_be_focused()
    viewer.keyboard.press("ArrowDown")
    expect(rows.nth(2)).to_be_focused()
    viewer.keyboard.press("k")
    expect(rows.nth(1)).to_be_focused()
    viewer.keyboard.press("/")
    expect(viewer.locator("#filter")).to_be_focused()
    viewer.keyboard.press("Escape")
    viewer.keyboard.press("j")
    expect(rows.nth(1)).to_be_focused()  # back where the user left off
    viewer.keyboard.press("Enter")
    # prod traces newest first: support[3], support[1], support[0]
    expect(viewer).to_have_url(re.compile(f"/traces/{support[1].root_span_id}"))

    items = viewer.get_by_role("treeitem")
    expect(items.nth(0)).to_be_focused()
    viewer.keyboard.press("ArrowDown")
    expect(items.nth(1)).to_be_focused()
    expect(viewer.get_by_role("complementary", name="retrieve_docs")).to_be_visible()
    viewer.keyboard.press("Escape")
    expect(viewer.get_by_role("complementary")).to_have_count(0)
    viewer.keyboard.press(" ")
    expect(viewer.get_by_role("complementary", name="retrieve_docs")).to_be_visible()
    viewer.keyboard.press("Escape")
    viewer.keyboard.press("Escape")
    expect(viewer).to_have_url(re.compile(r"/projects/[^/]+\?filter=tags"))
    expect(rows).to_have_count(3)


def test_projects_page_and_api_key_prompt(browser: Any, viewer_collector: Collector,
                                          project: tuple[str, str]) -> None:
    """Without a key the page asks for one; once pasted it is kept and the projects load."""
    name, pid = project
    context, problems = open_context(browser, viewer_collector, with_key=False)
    try:
        page = watch(context.new_page(), problems)
        page.goto(viewer_collector.url + "/")
        banner = page.locator("#banner")
        expect(banner).to_contain_text("needs an API key")
        banner.get_by_role("button", name="Enter API key").click()
        dialog = page.get_by_role("dialog", name="API key")
        expect(dialog).to_be_visible()
        dialog.get_by_label("Key").fill(viewer_collector.api_key)
        dialog.get_by_role("button", name="Save").click()
        link = page.get_by_role("link", name=re.compile(re.escape(name)))
        expect(link).to_be_visible()
        expect(banner).to_be_hidden()
        assert page.evaluate("localStorage.getItem('spanlog.apiKey')") == viewer_collector.api_key
        link.click()
        expect(page).to_have_url(f"{viewer_collector.url}/projects/{pid}")
        expect(page.locator("#live")).to_be_visible()
        problems.check()
    finally:
        context.close()


def test_long_strings_fold_and_json_collapses(viewer: Any, viewer_collector: Collector,
                                              project: tuple[str, str],
                                              logger: spanlog.Logger) -> None:
    """Long strings show a fold button; nested JSON starts open two levels deep and toggles."""
    _, pid = project
    long_text = "lorem ipsum " * 100  # 1200 characters
    with logger.start_span("summarise", "task", input={"doc": long_text},
                           metadata={"a": {"b": {"c": {"d": "deep"}}}}) as span:
        span.log(output=long_text)
    assert logger.flush(10)
    viewer.goto(f"{logs_url(viewer_collector, pid)}/traces/{span.root_span_id}")
    detail = viewer.get_by_role("complementary", name="summarise")
    output = detail.locator(".field[data-field=output]")
    fold = output.get_by_role("button", name="show 800 more characters")
    expect(fold).to_have_attribute("aria-expanded", "false")
    assert len(output.locator(".j-text").inner_text()) < 500
    fold.click()
    expect(output.get_by_role("button", name="show less")).to_have_attribute(
        "aria-expanded", "true")
    expect(output.locator(".j-text")).to_have_text(long_text)

    meta = detail.locator(".field[data-field=metadata]")
    expect(meta.locator(".j-key", has_text="b")).to_be_visible()
    expect(meta.locator(".j-key", has_text="c")).to_be_hidden()
    meta.locator("summary", has=viewer.locator(".j-key", has_text="b")).click()
    expect(meta.locator(".j-key", has_text="c")).to_be_visible()
