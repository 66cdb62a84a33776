"""The unmodified braintrust TypeScript SDK (npm ``braintrust``, pinned in
tests/braintrust_node/package-lock.json) logs into a collector under Node (docs/typescript.md),
and the calls a collector does not serve get an error that names them (docs/protocol.md)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spanlog_server_http import call

from spanlog.server.http._auth import create_key
from spanlog.server.http._context import Settings
from spanlog.server.http._runner import BackgroundCollector
from spanlog.server.store._records import DEFAULT_ORG

NODE_DIR = Path(__file__).resolve().parent.parent / "braintrust_node"
# Small enough that the scenario's 300 kB span must take the overflow upload: a /logs3
# request that size would be refused with 413.
MAX_BODY = 100_000


def _node_tree() -> Path:
    """tests/braintrust_node with its npm tree installed from the committed lockfile."""
    if not (NODE_DIR / "node_modules" / "braintrust" / "package.json").exists():
        # --ignore-scripts: the postinstall scripts only fetch the `bt` CLI and check
        # esbuild's binary, neither of which logging uses.
        done = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                              cwd=NODE_DIR, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return NODE_DIR


def run_node(url: str, api_key: str, project: str, mode: str) -> tuple[dict[str, Any], str]:
    """Run tests/braintrust_node/log.mjs against the collector at ``url``, configured as
    docs/typescript.md says; return the JSON object it prints last, and the SDK's stderr."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("BRAINTRUST_")}
    env.update({"BRAINTRUST_APP_URL": url, "BRAINTRUST_API_KEY": api_key,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                # The SDK is silent about failed requests unless asked; asked, they show on
                # stderr.
                "BRAINTRUST_DEBUG_LOG_LEVEL": "warn"})
    done = subprocess.run(["node", "log.mjs", project, mode], cwd=_node_tree(), env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1])), done.stderr


@pytest.fixture(scope="module", params=["keyed", "open"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           handle_of) -> Iterator[Any]:
    """A collector with a 100 kB request limit, for this module: with one key, or in open
    mode (no key exists: any value of BRAINTRUST_API_KEY is let in, docs/typescript.md)."""
    db = tmp_path_factory.mktemp("bt-ts") / "spanlog.sqlite3"
    server = BackgroundCollector(str(db), settings=Settings(max_body_bytes=MAX_BODY)).start()
    try:
        token = "any-value"
        if request.param == "keyed":
            _, token = server.call(lambda: create_key(server.store, DEFAULT_ORG, name="ts"))
        yield handle_of(server, token)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def logged(served) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Run the scenario once; return its project, what it printed, the rows stored."""
    project = f"ts-{uuid.uuid4().hex[:8]}"
    info, stderr = run_node(served.url, served.api_key, project, "traces")
    assert stderr == "", stderr  # the SDK's warnings: a failed request, a dropped row
    # 3 traces of 4 spans, the resumed span, the by-id span, the big span, the comment row.
    return project, info, served.wait_for_rows(16, project)


def _by_name(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in rows if (r.get("span_attributes") or {}).get("name") == name]


@pytest.mark.slow
def test_traced_spans_are_stored_with_their_parents(logged):
    """traced/wrapTraced spans nest: each trace's spans share its root_span_id and point to
    their parents; metadata, scores, input and output are stored."""
    _, info, rows = logged
    assert len(rows) == 16
    for sent in info["traces"]:
        trace = [r for r in rows if r.get("root_span_id") == sent["root_span_id"]]
        [root] = _by_name(trace, "handle_request")
        [plan] = _by_name(trace, "plan")
        [retrieve] = _by_name(trace, "retrieve")
        [answer] = _by_name(trace, "answer")
        assert root["id"] == sent["id"] and root["span_id"] == sent["span_id"]
        assert not root.get("span_parents")
        assert plan["span_parents"] == [root["span_id"]]
        assert retrieve["span_parents"] == answer["span_parents"] == [plan["span_id"]]
        user = root["input"]["user"]
        assert root["metadata"] == {"user_id": user, "app": "ts"} and root["tags"] == ["ts"]
        assert root["output"] == sent["output"] == f"{user}: 2 docs"
        assert root["scores"]["quality"] == 1
        assert plan["metadata"] == {"retriever": "bm25"} and plan["scores"] == {"recall": 0.5}
        assert answer["span_attributes"]["type"] == "llm"
        assert retrieve["output"] == [f"doc about {user}", "another doc"]
        for row in (root, plan, retrieve, answer):
            assert row["metrics"]["end"] >= row["metrics"]["start"]


@pytest.mark.slow
def test_exported_span_continues_its_trace(logged):
    """A span started from another span's export() joins that trace, under that span."""
    _, info, rows = logged
    [resumed] = _by_name(rows, "resumed")
    parent = info["traces"][1]
    assert resumed["root_span_id"] == parent["root_span_id"]
    assert resumed["span_parents"] == [parent["span_id"]]
    assert resumed["output"] == "resumed"


@pytest.mark.slow
def test_logger_by_project_id(logged):
    """A logger given a projectId instead of a name logs into that project."""
    _, info, rows = logged
    [row] = _by_name(rows, "by_id")
    assert row["id"] == info["by_id"] and row["output"] == "a"


@pytest.mark.slow
def test_feedback_merges_and_comment_is_stored(logged):
    """logFeedback merges its score into the span and stores its comment as a row on it."""
    _, info, rows = logged
    target = info["traces"][0]["id"]
    [span] = [r for r in rows if r["id"] == target]
    assert span["scores"] == {"quality": 1, "thumbs_up": 0}
    assert span["_audit_source"] == "app" and span["output"] == "user-1: 2 docs"
    [comment] = [r for r in rows if r.get("comment")]
    assert comment["comment"] == {"text": "wrong tone"} and comment["origin"]["id"] == target


@pytest.mark.slow
def test_span_over_request_limit_arrives_through_overflow(logged):
    """A span bigger than the request limit arrives whole (only the overflow upload can
    carry it: a /logs3 request that size is refused)."""
    _, info, rows = logged
    [big] = _by_name(rows, "huge")
    assert big["id"] == info["big"]
    assert big["input"] == "x" * 300_000 and big["output"] == "ok"


@pytest.mark.slow
def test_metadata_filter_finds_the_rows(served, logged):
    """The fetch API's metadata filter finds what the TypeScript SDK logged."""
    project, info, _ = logged
    found = served.fetch(project, "metadata.user_id = 'user-2'")
    assert sorted(r["span_attributes"]["name"] for r in found) == ["handle_request", "resumed"]
    assert {r["root_span_id"] for r in found} == {info["traces"][1]["root_span_id"]}
    assert len(served.fetch(project, "metadata.app = 'ts'")) == 3
    assert len(served.fetch(project, "scores.recall > 0.4")) == 3


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "feature", "path"), [
    ("experiment", "experiments", "/api/experiment/register"),
    ("dataset", "datasets", "/api/dataset/register"),
])
def test_sdk_call_not_served_raises_naming_it(served, mode, feature, path):
    """initExperiment and initDataset fail in the SDK with the collector's 501 naming them."""
    info, _ = run_node(served.url, served.api_key, "ts-unsupported", mode)
    assert info["error"] is not None and info["error"].startswith("501")
    assert f"spanlog does not serve {feature}: POST {path}" in info["error"]


# -- the endpoints, over HTTP ------------------------------------------------------------

def test_project_register_gets_or_creates(collector):
    """POST /api/project/register answers {"project": ...}, the same project every time and
    the one /v1/project and GET /api/project?id= give."""
    name = f"reg-{uuid.uuid4().hex[:8]}"
    status, first = call(collector.url, "POST", "/api/project/register",
                         {"project_name": name}, token=collector.api_key)
    assert status == 200 and first["project"]["name"] == name
    project = first["project"]
    _, login = call(collector.url, "POST", "/api/apikey/login", token=collector.api_key)
    status, again = call(collector.url, "POST", "/api/project/register",
                         {"project_name": name, "org_id": login["org_info"][0]["id"]},
                         token=collector.api_key)
    assert status == 200 and again == first
    _, same = call(collector.url, "POST", "/v1/project", {"name": name},
                   token=collector.api_key)
    assert same == project
    status, got = call(collector.url, "GET", f"/api/project?id={project['id']}",
                       token=collector.api_key)
    assert status == 200 and got == project


@pytest.mark.parametrize(("method", "path", "body", "status", "expect"), [
    ("POST", "/api/project/register", {}, 400, "project_name"),
    ("POST", "/api/project/register", {"project_name": " "}, 400,
     "body.project_name: must be a non-empty string"),
    ("POST", "/api/project/register", {"project_name": "p", "org_id": "other"}, 403,
     "not 'other'"),
    ("GET", "/api/project", None, 400, "query.id"),
    ("GET", f"/api/project?id={uuid.uuid4()}", None, 404, "not found"),
])
def test_project_register_and_lookup_errors(collector, method, path, body, status, expect):
    """Bad registrations and lookups say what is wrong, where."""
    got, answer = call(collector.url, method, path, body, token=collector.api_key)
    assert got == status and expect in answer["error"], answer


def test_project_register_needs_a_key(collector):
    """Registration is refused without a key, like every other call."""
    status, answer = call(collector.url, "POST", "/api/project/register", {"project_name": "p"})
    assert status == 401 and "Authorization" in answer["error"]


@pytest.mark.parametrize(("method", "path", "feature"), [
    ("POST", "/v1/experiment", "experiments"),
    ("POST", "/api/base_experiment/get_id", "experiments"),
    ("POST", f"/v1/dataset/{uuid.uuid4()}/insert", "datasets"),
    ("GET", "/v1/dataset_snapshot", "datasets"),
    ("GET", "/xact-id", "datasets"),
    ("GET", "/v1/prompt?project_name=p&slug=s", "prompts"),
    ("POST", "/insert-functions", "functions"),
    ("POST", "/function/invoke", "functions"),
    ("POST", "/attachment", "attachments"),
    ("POST", "/btql", "BTQL queries"),
])
def test_features_not_served_are_501_naming_them(collector, method, path, feature):
    """Experiments, datasets, prompts, functions, attachments, BTQL: 501, never a success."""
    status, answer = call(collector.url, method, path, {}, token=collector.api_key)
    assert status == 501 and f"spanlog does not serve {feature}" in answer["error"], answer


def test_served_routes_keep_their_answers(collector):
    """The refusals claim no path the collector serves: a wrong method is still 405, an
    unknown path still a plain 404."""
    status, _ = call(collector.url, "GET", f"/v1/project_logs/{uuid.uuid4()}/insert")
    assert status == 405
    status, answer = call(collector.url, "GET", "/v1/no_such_thing")
    assert status == 404 and "/v1/no_such_thing" in answer["error"]
