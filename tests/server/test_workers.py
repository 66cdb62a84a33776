"""Ingest worker processes (``spanlog serve --workers``): the same results, errors and
durability as decoding in the serving process, and a dead worker costs no request."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from spanlog_server_http import call, start_serve

from spanlog.server.http._context import WORKERS, Settings
from spanlog.server.http._runner import BackgroundCollector

# The tests that start worker processes (a second or more each) are marked slow.


@pytest.fixture
def pair(tmp_path: Path, handle_of: Any) -> Iterator[tuple[Any, Any]]:
    """Two fresh collectors (open mode): rows decoded in the serving process, and in one
    worker process."""
    plain = BackgroundCollector(str(tmp_path / "plain.sqlite3")).start()
    pooled = BackgroundCollector(str(tmp_path / "pooled.sqlite3"),
                                 settings=Settings(ingest_workers=1)).start()
    try:
        yield handle_of(plain, "any"), handle_of(pooled, "any")
    finally:
        plain.stop()
        pooled.stop()


def _post(handle: Any, path: str, body: Any) -> tuple[int, Any]:
    return call(handle.url, "POST", path, raw=json.dumps(body).encode(), token="any")


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Transaction ids, project ids and server-stamped times differ between two collectors.
    return [{k: v for k, v in row.items() if k not in ("_xact_id", "project_id")
             and (k != "created" or v == SENT_CREATED)} for row in rows]


SENT_CREATED = "2026-11-28T00:00:00Z"


def _scenario(handle: Any) -> dict[str, Any]:
    """Requests that reach every kind of piece: replace (with and without `created`, with
    numbers json and orjson write differently), merge, retry, delete, a plain event, a
    project by name, the insert endpoint, feedback, and merges that overtook their span."""
    pid = handle.project_id("work")
    root = "root-" + "a" * 8
    spans = [{"id": f"span-{i}", "project_id": pid, "span_id": f"s{i}", "root_span_id": root,
              "span_parents": None if i == 0 else ["s0"], "created": SENT_CREATED,
              "input": {"q": f"question {i} ✓", "big": 2**70, "small": 2.5e-7},
              "metadata": {"user": f"u{i % 2}", "tags": ["x", "x", "y"], "n": i / 3},
              "scores": {"quality": i / 4}} for i in range(4)]
    answers = {}
    answers["spans"] = _post(handle, "/logs3", {"rows": spans, "api_version": 2})
    answers["retry"] = _post(handle, "/logs3", {"rows": spans[:2], "api_version": 2})
    # All replaces, one of an id already stored with other content: merged, none lost.
    changed = {**spans[0], "output": "changed"}
    fresh = {**spans[1], "id": "span-fresh", "span_id": "sf"}
    answers["changed"] = _post(handle, "/logs3", {"rows": [fresh, changed]})
    early = {"id": "late-span", "project_id": pid, "_is_merge": True, "scores": {"early": 1}}
    answers["early"] = _post(handle, "/logs3", {"rows": [early]})
    late = {"id": "late-span", "project_id": pid, "span_id": "sl", "root_span_id": root,
            "span_parents": ["s0"], "output": "arrived after its feedback"}
    event = {"id": "event-1", "project_id": pid, "input": "a plain event, no created"}
    named = {"id": "named-1", "project_name": "work-by-name", "output": 1}
    merge = {"id": "span-2", "project_id": pid, "_is_merge": True, "metadata": {"extra": True},
             "tags": ["merged"]}
    gone = {"id": "span-3", "project_id": pid, "_object_delete": True}
    answers["mixed"] = _post(handle, "/logs3", {"rows": [late, event, named, merge, gone]})
    answers["insert"] = _post(handle, f"/v1/project_logs/{pid}/insert",
                              {"events": [{"id": "ins-1", "output": "via insert"}]})
    answers["feedback"] = _post(handle, f"/v1/project_logs/{pid}/feedback", {"feedback": [
        {"id": "span-1", "scores": {"human": 0.5}, "comment": "fine"},
        {"id": "c-target", "comment": "said before its span arrived"}]})
    # Only new rows, but a stored comment waits for one of them: it must join the trace.
    answers["target"] = _post(handle, "/logs3", {"rows": [
        {"id": "c-target", "project_id": pid, "span_id": "sc", "root_span_id": root,
         "span_parents": ["s0"], "created": SENT_CREATED}]})
    return {"answers": answers,
            "work": _comparable(handle.fetch("work")),
            "named": _comparable(handle.fetch("work-by-name")),
            "trace": _comparable(handle.trace("work", root)),
            "search": [r["id"] for r in handle.fetch("work", "metadata.user = 'u1'")]}


@pytest.mark.slow
def test_workers_store_exactly_what_the_serving_process_stores(pair):
    """Every kind of piece, decoded in a worker, is stored as if decoded in the serving
    process: same rows, same order, same trace and score averages, same index."""
    plain, pooled = pair
    expected = _scenario(plain)
    got = _scenario(pooled)
    assert got == expected
    assert {r["id"] for r in got["work"]} >= {"span-0", "late-span", "event-1", "ins-1"}
    assert "span-3" not in {r["id"] for r in got["work"]}
    assert got["search"] and got["answers"]["spans"][0] == 200
    assert any(r.get("comment") and r.get("root_span_id") for r in got["trace"])
    by_id = {r["id"]: r for r in got["work"]}
    assert by_id["span-0"]["output"] == "changed" and "span-fresh" in by_id


BAD_BODIES = [
    b"{not json",
    b"[]",
    b'{"api_version": 2}',
    b'{"rows": {"type": "logs3_overflow"}}',
    b'{"rows": "x"}',
    b'{"rows": [{"id": "a", "project_name": "p"}, {"project_name": "p"}]}',
    b'{"rows": [{"id": "a", "project_name": "p", "metrics": {"start": "soon"}}]}',
    b'{"rows": [{"id": "a", "project_name": "p", "x": NaN}]}',
    b'{"rows": [{"id": "a", "project_id": "no-such-project"}]}',
]


@pytest.mark.slow
@pytest.mark.parametrize("raw", BAD_BODIES, ids=[b.decode()[:40] for b in BAD_BODIES])
def test_workers_refuse_bad_bodies_with_the_same_words(pair, raw):
    """A bad body decoded in a worker gets the status and message it gets without one, and
    nothing of it is stored."""
    plain, pooled = pair
    expected = call(plain.url, "POST", "/logs3", raw=raw, token="any")
    got = call(pooled.url, "POST", "/logs3", raw=raw, token="any")
    assert got == expected
    assert got[0] in (400, 404) and got[1]["error"]
    assert pooled.fetch("p") == []


def _otel_spans() -> list[ReadableSpan]:
    """An agent span around two GenAI chat spans, and a span that ends before it starts."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "workers-test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test.workers")
    with tracer.start_as_current_span("invoke_agent", attributes={
            "gen_ai.operation.name": "invoke_agent"}):
        for turn in range(2):
            with tracer.start_as_current_span("chat", attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 10 + turn, "gen_ai.usage.output_tokens": 2,
                    "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                        {"type": "text", "content": f"question {turn} ✓"}]}])}):
                pass
        backwards = tracer.start_span("backwards")
        backwards.end(end_time=backwards.start_time - 1)  # type: ignore[operator]
    provider.shutdown()
    return list(memory.get_finished_spans())


@pytest.mark.slow
def test_otlp_spans_decoded_in_a_worker_are_stored_as_in_the_serving_process(pair):
    """OTLP exports are decoded and mapped in the workers too: same answers (partial
    success, a google.rpc.Status for an undecodable body), same stored rows."""
    plain, pooled = pair
    raw = encode_spans(_otel_spans()).SerializeToString()
    answers = []
    for handle in (plain, pooled):
        got = []
        for body in (raw, raw, b"\xff\xff\xff"):
            reply = requests.post(handle.url + "/otel/v1/traces", data=body, timeout=10, headers={
                "Content-Type": "application/x-protobuf", "Authorization": "Bearer any",
                "x-bt-parent": "project_name:otlp-work"})
            got.append((reply.status_code, reply.content))
        answers.append((got, _comparable(handle.fetch("otlp-work"))))
    assert answers[0] == answers[1]
    got, rows = answers[1]
    assert [status for status, _ in got] == [200, 200, 400]
    assert b"rejected" in got[0][1] and b"protobuf" in got[2][1]
    assert sorted(r["span_attributes"]["name"] for r in rows) == ["chat", "chat", "invoke_agent"]
    assert {r["metrics"].get("prompt_tokens") for r in rows} == {None, 10, 11}


@pytest.mark.slow
def test_a_killed_worker_costs_no_request(tmp_path: Path, handle_of: Any):
    """SIGKILL on the worker process: requests still succeed (decoded in the serving process
    while a new worker starts), and later ones use the new worker."""
    server = BackgroundCollector(str(tmp_path / "k.sqlite3"),
                                 settings=Settings(ingest_workers=1)).start()
    try:
        handle = handle_of(server, "any")
        workers = server.app[WORKERS]
        [first] = workers.pids()
        os.kill(first, signal.SIGKILL)
        ids = []
        for n in range(3):
            rows = [{"id": str(uuid.uuid4()), "project_name": "k", "output": n}]
            status, reply = _post(handle, "/logs3", {"rows": rows})
            assert status == 200, reply
            ids.append(rows[0]["id"])
        assert {r["id"] for r in handle.fetch("k")} == set(ids)
        assert first not in workers.pids()
    finally:
        server.stop()


@pytest.mark.slow
def test_serve_rejects_bad_worker_counts(tmp_path: Path):
    """`--workers` below 0, or with PostgreSQL, is refused before anything starts."""
    import subprocess
    import sys

    for args, words in ((["--workers", "-1"], "--workers: must be 0 or more, got -1"),
                        (["--postgres", "postgresql://127.0.0.1:1/x", "--workers", "2"],
                         "only the SQLite engine uses ingest workers")):
        db = [] if "--postgres" in args else ["--db", str(tmp_path / "w.sqlite3")]
        done = subprocess.run([sys.executable, "-m", "spanlog.server", "--port", "0", *db,
                               *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and words in done.stderr, done.stderr


@pytest.mark.slow
def test_serve_with_workers_ingests_and_stops_cleanly(tmp_path: Path):
    """`spanlog serve --workers 2` takes rows through its workers and stops on SIGTERM with
    no worker left behind."""
    proc, url, banner = start_serve(str(tmp_path / "s.sqlite3"), "--workers", "2")
    try:
        assert "  ingest workers: 2 processes (--workers)\n" in banner
        rows = [{"id": f"r{i}", "project_name": "s", "metadata": {"i": i}} for i in range(50)]
        status, reply = call(url, "POST", "/logs3", {"rows": rows}, token="any")
        assert status == 200 and reply["row_ids"] == [r["id"] for r in rows]
        children = _workers_of(proc.pid)
        assert len(children) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopped" in out
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")]


@pytest.mark.slow
def test_workers_end_with_a_killed_serving_process(tmp_path: Path):
    """SIGKILL on `spanlog serve` leaves no worker behind (they would otherwise wait on
    their task pipe forever)."""
    import time

    proc, url, _ = start_serve(str(tmp_path / "k.sqlite3"), "--workers", "2")
    try:
        workers = _workers_of(proc.pid)
        assert len(workers) == 2
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    deadline = time.monotonic() + 30
    alive = workers
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in workers if _running(pid)]
        time.sleep(0.05)  # polling interval between condition checks, not a wait
    assert not alive, f"workers {alive} outlived their serving process"


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie awaiting its reaper."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _workers_of(pid: int) -> list[int]:
    """The worker processes (multiprocessing's spawn_main) whose parent is ``pid``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{name}/cmdline", "rb") as cmdline:
                    spawned = b"spawn_main" in cmdline.read()
            except (OSError, ValueError, IndexError):
                continue
            if parent == pid and spawned:
                found.append(int(name))
    return found


async def test_a_job_of_new_rows_is_written_without_decoding_them(tmp_path: Path,
                                                                   monkeypatch) -> None:
    """Rows from a worker that are all new go into SQLite from their JSON text (no decoding),
    and read back exactly like rows prepared in the serving process."""
    from spanlog.server.http._ingest import decode_rows
    from spanlog.server.store._records import Piece
    from spanlog.server.store.sqlite import _pieces as _sqlite_pieces
    from spanlog.server.store.sqlite._store import SqliteStore
    from store_projects import default_org_project

    rows = [{"id": f"r{i}", "project_name": "p", "span_id": f"s{i}", "root_span_id": "t",
             "span_parents": None if i == 0 else ["s0"], "metadata": {"k": i % 2},
             "tags": ["a", "a"], "scores": {"q": i / 4}} for i in range(5)]
    body = json.dumps({"rows": rows}).encode()
    found = {}
    for name, prepare_rows in (("plain", None), ("worker", SqliteStore.prepare_rows)):
        store = SqliteStore(str(tmp_path / f"{name}.sqlite3"))
        await store.start()
        try:
            project = await default_org_project(store, "p")
            batch = decode_rows(body, "rows", None, prepare_rows)
            if prepare_rows is not None:
                def no_decoding(*args: Any) -> None:
                    raise AssertionError("a job of new rows was decoded")
                monkeypatch.setattr(_sqlite_pieces, "adopt", no_decoding)
            await store.write([Piece(project.id, row) for row in batch.rows], batch.prepared)
            monkeypatch.undo()
            page = await store.fetch(project.id, filter="metadata.k = 1")
            roots = await store.fetch(project.id, roots_only=True)
            trace = await store.trace(project.id, "t")
            found[name] = ([_comparable([r])[0] for r in page.rows],
                           [r["scores_avg"] for r in roots.rows],
                           sorted(r["id"] for r in trace))
        finally:
            await store.close()
    assert found["worker"] == found["plain"]
    assert [r["id"] for r in found["worker"][0]] == ["r3", "r1"]
