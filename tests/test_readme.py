"""Every ```python block of README.md (and docs/*.md) runs as printed, each in a fresh process.

Each block is written to a file of its own and run for real with ``sys.executable``: against
the session's collector on 127.0.0.1 (``SPANLOG_API_URL`` / ``SPANLOG_API_KEY``), the fake
OpenAI-compatible server of the openai tests (``OPENAI_BASE_URL``) and a small fake of
Anthropic's Messages API below (``ANTHROPIC_BASE_URL``). The environment is all the test adds:
a block that needs anything else must say so itself.

How a block runs is read from what it defines, the way its user would run it:

- a ``def test_...`` block runs under ``python -m pytest`` and its tests must pass;
- a block that defines handlers for a platform or a framework (:data:`HANDLERS`) is imported
  by a small driver that calls them as the platform would;
- any other block runs as a script.

Every run must exit 0 with nothing on stderr (spanlog reports delivery problems there, and a
row still undelivered at exit too). :data:`EXPECTED` then checks, in the collector, that the
blocks that log did what their document says they do; a block checked there may also run
without some of the environment (the README's first Quickstart block runs without any
``OPENAI_`` variable, as on a machine with no OpenAI key).

A block that cannot run here (it needs a real cloud platform) carries the marker
``<!-- not run: REASON -->`` on the line just before its fence; the reason must be on the
short allow-list :data:`NOT_RUN`, and such a block is still compiled.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import spanlog

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
if str(ROOT / "tests" / "openai") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "openai"))

from fake_server import FakeOpenAI  # noqa: E402

pytestmark = pytest.mark.slow

# The blocks that may stay unrun, by the reason their marker gives; keep it short.
NOT_RUN = {
    "needs the Cloudflare Workers runtime (the `workers` module)",
}
MAX_NOT_RUN = 1
RUN_TIMEOUT = 30.0

_FENCE = re.compile(r"^(`{3,}|~{3,})\s*(\S*)")
_NOT_RUN_MARK = re.compile(r"^<!--\s*not run:\s*(.*?)\s*-->$")


@dataclass(frozen=True)
class Block:
    """One fenced ```python block: where it is, its code, and what the document says of it."""

    document: Path
    line: int  # of the opening fence, 1-based
    code: str
    key: str  # "<document>: <heading> #<n>": the n-th python block under that heading
    not_run: str | None

    @property
    def id(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def python_blocks(document: Path) -> list[Block]:
    """The ```python blocks of a Markdown file, in order."""
    lines = document.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    heading = document.name
    per_heading: dict[str, int] = {}
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            if lines[index].startswith("#"):
                heading = lines[index].lstrip("#").strip()
            index += 1
            continue
        fence, info = opening.groups()
        end = index + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        assert end < len(lines), f"{document.name}:{index + 1}: fence never closed"
        if info == "python":
            per_heading[heading] = per_heading.get(heading, 0) + 1
            mark = _NOT_RUN_MARK.match(lines[index - 1].strip()) if index else None
            blocks.append(Block(document, index + 1, "\n".join(lines[index + 1:end]) + "\n",
                                f"{document.relative_to(ROOT)}: {heading} #{per_heading[heading]}",
                                mark.group(1) if mark else None))
        index = end + 1
    return blocks


BLOCKS = [block for document in DOCUMENTS for block in python_blocks(document)]


# -- a fake of Anthropic's Messages API --------------------------------------------------------

class FakeAnthropic:
    """``POST /v1/messages`` on 127.0.0.1, plain and streamed, answering ``echo: <last user
    text>`` with usage counted in words (half the input as cache reads), on its own loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="fake-anthropic")
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        content = users[-1]["content"] if users else ""
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content)
        text = f"echo: {content}"
        words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        usage = {"input_tokens": words, "output_tokens": len(text.split()),
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": words // 2}
        message = {"id": "msg_fake", "type": "message", "role": "assistant",
                   "model": body.get("model"), "content": [{"type": "text", "text": text}],
                   "stop_reason": "end_turn", "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            return web.json_response(message)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                  "usage": {**usage, "output_tokens": 1}}},
            {"type": "content_block_start", "index": 0,
             "content_block": {"type": "text", "text": ""}},
            *({"type": "content_block_delta", "index": 0,
               "delta": {"type": "text_delta", "text": piece}}
              for piece in re.findall(r"\S+\s*", text)),
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": usage["output_tokens"]}},
            {"type": "message_stop"},
        ]
        for event in events:
            await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        await response.write_eof()
        return response


# -- running a block ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Handler:
    """How a platform or framework calls the handlers a block defines: a driver script that
    imports the block as module ``snippet``, and the environment that platform sets."""

    driver: str
    env: dict[str, str] = field(default_factory=dict)


# Keyed by the name of a top-level function that marks a block as such handlers.
HANDLERS = {
    # AWS Lambda imports the module once and calls handler(event, context) per invocation;
    # the driver reports what spanlog holds the moment the handler has returned.
    "handler": Handler(
        "import json, types\n"
        "import spanlog\n"
        "import snippet\n"
        "context = types.SimpleNamespace(aws_request_id='req-1', function_name='readme')\n"
        "result = snippet.handler({'question': 'How do refunds work?'}, context)\n"
        "print(json.dumps({'result': result, 'stats': spanlog.stats()}))\n",
        {"AWS_LAMBDA_FUNCTION_NAME": "readme"}),
    # A web framework calls the answer endpoint, then the client posts 👎 and a correction.
    "answer_endpoint": Handler(
        "import json\n"
        "import snippet\n"
        "reply = snippet.answer_endpoint('How do refunds work?')\n"
        "done = snippet.feedback_endpoint(reply['span_id'], thumbs_up=False,\n"
        "                                 correction='Within 30 days.')\n"
        "print(json.dumps({'reply': reply, 'feedback': done}))\n"),
}


def _top_level_functions(code: str) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {node.name: node for node in ast.parse(code).body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


@dataclass
class Run:
    """A finished run of one block, and the rows it added to the project it is checked in."""

    block: Block
    how: str
    stdout: str
    rows: list[dict[str, Any]]
    collector: Any

    def named(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if (r.get("span_attributes") or {}).get("name") == name]

    def one(self, name: str) -> dict[str, Any]:
        rows = self.named(name)
        assert len(rows) == 1, f"{self.block.id}: expected one row named {name!r}, got {rows}"
        return rows[0]

    def output(self) -> Any:
        return json.loads(self.stdout.strip().splitlines()[-1])


def run_block(block: Block, env: dict[str, str], workdir: Path) -> tuple[str, str]:
    """Run ``block`` as its user would; return how and its stdout (asserts exit 0, no stderr)."""
    functions = _top_level_functions(block.code)
    tests = [name for name in functions if name.startswith("test_")]
    handler = next((HANDLERS[name] for name in functions if name in HANDLERS), None)
    if tests:
        how = "pytest"
        script = workdir / "test_snippet.py"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", script.name]
        # Plain pytest, as a user without this repository's plugins runs it (an installed
        # pytest-asyncio warns about its own settings when no configuration file sets them).
        env = {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    elif handler is not None:
        how = "handler"
        script = workdir / "snippet.py"
        (workdir / "driver.py").write_text(handler.driver, encoding="utf-8")
        command = [sys.executable, "driver.py"]
        env = {**env, **handler.env}
    else:
        how = "script"
        script = workdir / "snippet.py"
        command = [sys.executable, script.name]
    script.write_text(block.code, encoding="utf-8")
    try:
        done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{block.id} ({how}) still running after {RUN_TIMEOUT}s:\n"
                             f"{exc.stdout}\n{exc.stderr}") from None
    report = f"{block.id} ({how}) exited {done.returncode}\n--- stdout\n{done.stdout}" \
             f"--- stderr\n{done.stderr}--- code\n{block.code}"
    assert done.returncode == 0, report
    assert done.stderr == "", report
    if tests:
        assert re.search(rf"\b{len(tests)} passed\b", done.stdout), report
    return how, done.stdout


# -- what the blocks that log must have logged -------------------------------------------------

def _parent_of(run: Run, child: str, parent: str) -> None:
    up = run.one(parent)
    children = run.named(child)
    assert children, f"{run.block.id}: no row named {child!r} in {run.rows}"
    for row in children:
        assert row["span_parents"] == [up["span_id"]], (child, row, up)
        assert row["root_span_id"] == up["root_span_id"], (child, row, up)


def _quickstart_sdk(run: Run) -> None:
    root = run.one("request")
    assert not root.get("span_parents")
    _parent_of(run, "answer_question", "request")
    task = run.one("answer_question")
    assert task["span_attributes"]["type"] == "task"
    assert task["metadata"] == {"user_id": "1234"} and task["tags"] == ["prod"]
    _parent_of(run, "retrieve", "answer_question")
    _parent_of(run, "generate", "answer_question")
    llm = run.one("generate")
    assert llm["span_attributes"]["type"] == "llm" and llm["input"] == ["doc about refunds"]
    assert task["output"] == run.stdout.rstrip("\n") == llm["output"] == "Refunds take 5 days."
    # the 👍: merged into the request's row, the comment a row of its own pointing at it
    assert root["scores"] == {"thumbs": 1}
    assert root["_audit_metadata"] == {"user_id": "1234"}
    comments = [r for r in run.rows if (r.get("origin") or {}).get("id") == root["id"]]
    assert [c["comment"] for c in comments] == [{"text": "spot on"}], comments


def _quickstart_openai(run: Run) -> None:
    root = run.one("answer_question")
    assert not root.get("span_parents") and root["span_attributes"]["type"] == "task"
    _parent_of(run, "Chat Completion", "answer_question")
    llm = run.one("Chat Completion")
    assert llm["span_attributes"]["type"] == "llm"
    assert root["output"] == run.stdout.rstrip("\n") == llm["output"][0]["message"]["content"]


def _finer_control(run: Run) -> None:
    rerank = run.one("rerank")
    assert rerank["span_attributes"]["type"] == "tool"
    assert rerank["scores"] == {"coverage": 0.8} and rerank["metrics"]["candidates"] == 2
    assert run.one("background-job")["input"] == {"job_id": 42}
    assert [r["output"] for r in run.rows if r.get("input") == "question"] == ["answer"]


def _feedback(run: Run) -> None:
    reply = run.output()["reply"]
    [row] = [r for r in run.rows if r["id"] == reply["span_id"]]
    assert row["span_attributes"]["name"] == "answer"
    assert reply["text"] == "Refunds take 5 days." and run.output()["feedback"] == {"ok": True}
    assert row["scores"] == {"correctness": 0}
    assert row["expected"] == "Within 30 days."
    assert row["_audit_metadata"] == {"user_id": "1234"}  # who gave the feedback
    comments = [r for r in run.rows if (r.get("origin") or {}).get("id") == row["id"]]
    assert [c["comment"] for c in comments] == [{"text": "from the thumbs widget"}], comments


def _many_scores(run: Run) -> None:
    answer = run.one("answer")
    spans = run.collector.trace("My Project", answer["root_span_id"])
    [root] = [s for s in spans if s["id"] == answer["id"]]
    assert root["scores_avg"] == {"relevance": 0.5}, spans
    assert sorted(r["scores"]["relevance"] for r in run.named("score")) == [0.0, 1.0]
    _parent_of(run, "score", "answer")


def _distributed(run: Run) -> None:
    _parent_of(run, "worker", "request")
    _parent_of(run, "handler", "request")


def _threads(run: Run) -> None:
    assert sorted(r["output"] for r in run.named("work")) == [2, 4]
    _parent_of(run, "work", "batch")


def _anthropic(name: str) -> Callable[[Run], None]:
    def check(run: Run) -> None:
        row = run.one(name)
        assert row["span_attributes"]["type"] == "llm"
        assert row["output"] == run.stdout.rstrip("\n") == "echo: How do refunds work?"
        assert row["metadata"] == {"provider": "anthropic", "model": "claude-sonnet-5-5"}
        metrics = row["metrics"]
        assert (metrics["prompt_tokens"], metrics["completion_tokens"], metrics["tokens"],
                metrics["prompt_cached_tokens"]) == (6, 5, 11, 2), metrics  # 4 + 2 cached
        if name.endswith("stream"):
            assert 0 <= metrics["time_to_first_token"] <= metrics["end"] - metrics["start"]
    return check


def _wait_until(run: Run) -> None:
    assert sorted(r["input"]["question"] for r in run.named("answer")) == [
        "And returns?", "How do refunds work?"]


def _lambda(run: Run) -> None:
    stats = run.output()["stats"]
    # "the trace is stored by now": delivered before the handler returned, nothing pending.
    assert (stats["sent"], stats["queued"], stats["in_flight"], stats["failed"]) == (1, 0, 0, 0)
    assert run.one("answer")["input"] == {"question": "How do refunds work?"}


@dataclass(frozen=True)
class Expect:
    project: str
    check: Callable[[Run], None]
    without: tuple[str, ...] = ()  # prefixes of environment variables the block runs without


# By block key, "<document>: <heading> #<n>"; every key must name a block (checked below).
EXPECTED = {
    "README.md: Quickstart #1": Expect("My Project", _quickstart_sdk, without=("OPENAI_",)),
    "README.md: Quickstart #2": Expect("My Project", _quickstart_openai),
    "docs/sdk.md: Spans #1": Expect("My Project", _finer_control),
    "docs/sdk.md: Feedback from your users #1": Expect("My Project", _feedback),
    "docs/sdk.md: Many scores for one span #1": Expect("My Project", _many_scores),
    "docs/sdk.md: Distributed traces #1": Expect("My Project", _distributed),
    "docs/sdk.md: Threads and executors #1": Expect("My Project", _threads),
    "docs/llm-calls.md: Any other client, in under ten lines #1": Expect(
        "support-bot", _anthropic("anthropic.messages.create")),
    "docs/llm-calls.md: Any other client, in under ten lines #2": Expect(
        "support-bot", _anthropic("anthropic.messages.stream")),
    "docs/serverless.md: Any other platform: hand spanlog a waitUntil #1": Expect(
        "my-app", _wait_until),
    "docs/serverless.md: AWS Lambda: delivered before the handler returns #1": Expect(
        "my-function", _lambda),
}


# -- fixtures and tests -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def block_env(collector: Any) -> Iterator[dict[str, str]]:
    """The environment every block runs with: the user's, less any spanlog, OpenAI,
    Anthropic, platform or pytest settings, plus the local collector and model servers."""
    src = str(Path(spanlog.__file__).resolve().parent.parent)  # the spanlog under test
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPANLOG_", "OPENAI_", "ANTHROPIC_", "AWS_LAMBDA_", "PYTEST_"))
           and k != "VERCEL"}
    with FakeOpenAI() as openai_server, FakeAnthropic() as anthropic_server:
        yield {**env,
               "PYTHONPATH": os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")])),
               "SPANLOG_API_URL": collector.url, "SPANLOG_API_KEY": collector.api_key,
               "OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "test",
               "ANTHROPIC_BASE_URL": anthropic_server.base_url, "ANTHROPIC_API_KEY": "test"}


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_block_runs_as_printed(block: Block, block_env: dict[str, str], collector: Any,
                               tmp_path: Path) -> None:
    """The block runs as its user would, exits 0 quietly, and logs what its document says."""
    if block.not_run is not None:
        assert block.not_run in NOT_RUN, f"{block.id}: not on the allow-list: {block.not_run}"
        compile(block.code, block.id, "exec")
        pytest.skip(f"{block.id} not run: {block.not_run}")
    expect = EXPECTED.get(block.key)
    before = {r["id"] for r in collector.fetch(expect.project)} if expect else set()
    env = {k: v for k, v in block_env.items()
           if not (expect and expect.without and k.startswith(expect.without))}
    how, stdout = run_block(block, env, tmp_path)
    if expect is not None:
        rows = [r for r in collector.fetch(expect.project) if r["id"] not in before]
        expect.check(Run(block, how, stdout, rows, collector))


def test_blocks_found_and_exceptions_few() -> None:
    """The extraction sees the documents' blocks, every check names one, few are unrun."""
    keys = [block.key for block in BLOCKS]
    assert len(BLOCKS) >= 10 and len(set(keys)) == len(keys)
    assert set(EXPECTED) <= set(keys), set(EXPECTED) - set(keys)
    unrun = [block.id for block in BLOCKS if block.not_run is not None]
    assert len(unrun) <= MAX_NOT_RUN, unrun
