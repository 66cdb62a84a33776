"""Take the README's viewer screenshots: ``python3 tests/viewer/screenshots.py [OUT_DIR]``.

Starts a collector on a free port, logs the support-bot traces with the SDK, adds feedback,
and saves ``logs-table.png``, ``trace.png`` and ``monitor.png`` (default: ``docs/``) with
headless Chromium.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from playwright.sync_api import expect, sync_playwright
from viewer_harness import CHROMIUM, CHROMIUM_ARGS, Collector, serve_viewer
from viewer_traces import log_support_trace, log_support_traces, logger_for

MORE = [
    ("Does the SDK work in AWS Lambda?", "Yes. Set async_flush=False so each trace is sent "
     "before the handler returns.", ["prod"], {"user_id": "9031", "plan": "team"},
     {"helpfulness": 0.9}),
    ("How long do you keep logs?", "90 days on the team plan, 1 year on enterprise.",
     ["prod"], {"user_id": "4410", "plan": "enterprise"}, {"helpfulness": 0.6, "accuracy": 0.7}),
    ("Summarise my last invoice", "Your March invoice is $412.80: 3 seats and 1.2M spans.",
     ["staging", "billing"], {"user_id": "1234", "plan": "team"}, {"accuracy": 0.3}),
]


def main(out_dir: Path) -> None:
    """Write the three screenshots into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory() as tmp,
          serve_viewer(str(Path(tmp) / "spanlog.sqlite3")) as collector):
        logger = logger_for(collector.url, collector.api_key, "support-bot")
        now = time.time()
        for i, (q, a, tags, meta, scores) in enumerate(MORE):
            log_support_trace(logger, q, a, tags, meta, scores, now - 900 + i * 97)
        traces = log_support_traces(logger, now)
        logger.close(10)
        pid = collector.project_id("support-bot")
        shown = traces[0]
        llm = shown.ids["chat.completions.create"]
        collector.request("POST", f"/v1/project_logs/{pid}/feedback", {"feedback": [
            {"id": llm, "scores": {"thumbs": 1}, "source": "app"},
            {"id": llm, "comment": "Good answer; link the rotation doc next time.",
             "source": "app", "metadata": {"user": "dana@acme.dev"}}]})
        shoot(collector, pid, shown.root_span_id, llm, out_dir)


def shoot(collector: Collector, pid: str, root_span_id: str, span_id: str,
          out_dir: Path) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1360, "height": 720},
                                          color_scheme="light")
            context.add_init_script(
                f"try {{ localStorage.setItem('spanlog.apiKey', "
                f"{json.dumps(collector.api_key)}); }} catch (e) {{}}")
            page = context.new_page()
            page.goto(f"{collector.url}/projects/{pid}?since=24h")
            rows = page.locator("table.logs tbody tr[data-id]")
            expect(rows).to_have_count(7)
            expect(rows.first.locator(".score").first).to_be_visible()
            expect(page.locator(".err-mark")).to_have_text("2 errors")
            expect(page.locator("#live")).to_be_visible()
            rows.nth(1).focus()
            page.screenshot(path=str(out_dir / "logs-table.png"))
            # Taller, so the detail pane shows the conversation down to the comments.
            page.set_viewport_size({"width": 1360, "height": 1180})
            page.goto(f"{collector.url}/projects/{pid}/traces/{root_span_id}?span={span_id}")
            detail = page.get_by_role("complementary", name="chat.completions.create")
            expect(detail.locator(".comments")).to_be_visible()
            page.mouse.move(0, 0)
            page.screenshot(path=str(out_dir / "trace.png"))
            # The last 20 minutes hold every trace; split by tag, so groups show.
            page.set_viewport_size({"width": 1360, "height": 1000})
            page.goto(f"{collector.url}/projects/{pid}/monitor?since=20m&split=tag")
            expect(page.locator('.chart[data-chart="traces"] canvas').first).to_be_visible()
            expect(page.locator('.chart[data-chart="traces"] .legend li')).to_have_count(3)
            page.mouse.move(0, 0)
            page.screenshot(path=str(out_dir / "monitor.png"))
        finally:
            browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs"))
