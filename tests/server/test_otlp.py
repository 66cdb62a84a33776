"""OTLP/HTTP trace ingest (docs/otel.md, docs/protocol.md): the OpenTelemetry Python SDK's own
OTLP/HTTP exporter posting to a real collector, and the endpoint's edges."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from spanlog_server_http import call

from spanlog._otel_rows import OtelEvent, OtelLink, OtelSpan
from spanlog.server.http._auth import create_key
from spanlog.server.http._context import Settings
from spanlog.server.http._otlp import _spans_from_json, _spans_from_protobuf, decode_spans
from spanlog.server.http._runner import BackgroundCollector

PROJECT = "otel-app"
INPUT = [{"role": "user", "parts": [{"type": "text", "content": "What is 2+2?"}]}]
OUTPUT = [{"role": "assistant", "parts": [{"type": "text", "content": "4"}],
           "finish_reason": "stop"}]


def _finished_spans(bad: bool = False) -> list[ReadableSpan]:
    """A trace made with the OTel SDK: an agent span and a GenAI chat span under it; with
    ``bad``, a third span that ends before it starts (no row can hold it)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(
        {"service.name": "checkout", "deployment.environment": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test.otlp", "1.2.3")
    with tracer.start_as_current_span("invoke_agent helper",
                                      attributes={"gen_ai.operation.name": "invoke_agent"}):
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o", "gen_ai.request.temperature": 0.2,
                "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 3,
                "gen_ai.input.messages": json.dumps(INPUT),
                "gen_ai.output.messages": json.dumps(OUTPUT),
                "app.user": "u-1"}):
            pass
        if bad:
            span = tracer.start_span("backwards")
            span.end(end_time=span.start_time - 1_000)  # type: ignore[operator]
    provider.shutdown()
    return list(memory.get_finished_spans())


class _Responses:
    """A requests session for the exporter that keeps every response it got."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.seen: list[requests.Response] = []
        self.session.hooks["response"].append(lambda r, *a, **k: self.seen.append(r))


def _exporter(url: str, token: str | None = None, *, parent: str = f"project_name:{PROJECT}",
              responses: _Responses | None = None) -> OTLPSpanExporter:
    headers = {"x-bt-parent": parent}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return OTLPSpanExporter(endpoint=f"{url}/otel/v1/traces", headers=headers,
                            compression=Compression.Gzip, timeout=10,
                            session=responses.session if responses else None)


def _rows(url: str, token: str | None, project: str = PROJECT) -> list[dict[str, Any]]:
    _, listed = call(url, "GET", f"/v1/project?project_name={project}", token=token)
    [found] = listed["objects"]
    status, page = call(url, "POST", f"/v1/project_logs/{found['id']}/fetch", {"limit": 100},
                        token=token)
    assert status == 200, page
    return list(page["events"])


def _failure(url: str, path: str, raw: bytes | None, headers: dict[str, str],
             method: str = "POST") -> tuple[int, str, int, str]:
    """A request the collector refuses: its status, the answer's content type, and the
    ``google.rpc.Status`` code and message, decoded in the encoding the answer declares."""
    reply = requests.request(method, url + path, data=raw, headers=headers, timeout=10)
    assert reply.status_code >= 400, reply.text
    content_type = reply.headers["Content-Type"].split(";")[0]
    if content_type == "application/x-protobuf":
        status = Status.FromString(reply.content)
        assert not status.details
        return reply.status_code, content_type, status.code, status.message
    assert content_type == "application/json", content_type
    decoded = reply.json()
    assert set(decoded) == {"code", "message"}, decoded
    return reply.status_code, content_type, decoded["code"], decoded["message"]


@pytest.fixture
def keyed(make_collector) -> Iterator[tuple[BackgroundCollector, str]]:
    server = make_collector()
    _, token = server.call(lambda: create_key(server.store, "acme"))
    yield server, token


def test_sdk_exporter_stores_genai_spans(keyed):
    """The OTel SDK's OTLP/HTTP exporter (protobuf, gzip) stores a trace: ids, parents, names,
    llm type, model, tokens, messages and resource attributes come back from fetch."""
    server, token = keyed
    spans = _finished_spans()
    responses = _Responses()
    assert _exporter(server.url, token, responses=responses).export(spans) \
        == SpanExportResult.SUCCESS
    [reply] = responses.seen
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("application/x-protobuf")
    assert reply.request.headers["Content-Encoding"] == "gzip"
    assert not ExportTraceServiceResponse.FromString(reply.content).HasField("partial_success")

    rows = {r["span_attributes"]["name"]: r for r in _rows(server.url, token)}
    agent, chat = rows["invoke_agent helper"], rows["chat gpt-4o"]
    by_name = {s.name: s for s in spans}
    trace_id = f"{by_name['chat gpt-4o'].context.trace_id:032x}"
    assert chat["root_span_id"] == agent["root_span_id"] == trace_id
    assert agent["span_id"] == f"{by_name['invoke_agent helper'].context.span_id:016x}"
    assert chat["span_id"] == f"{by_name['chat gpt-4o'].context.span_id:016x}"
    assert agent["span_parents"] is None and chat["span_parents"] == [agent["span_id"]]
    assert agent["span_attributes"]["type"] == "task"
    assert chat["span_attributes"]["type"] == "llm"
    assert chat["metadata"]["model"] == "gpt-4o"
    assert chat["metadata"]["temperature"] == 0.2
    assert chat["metrics"]["prompt_tokens"] == 12
    assert chat["metrics"]["completion_tokens"] == 3
    assert chat["metrics"]["tokens"] == 15
    assert chat["input"] == [{"role": "user", "content": "What is 2+2?"}]
    assert chat["output"][0]["role"] == "assistant" and chat["output"][0]["content"] == "4"
    assert chat["metadata"]["resource"]["service.name"] == "checkout"
    assert chat["metadata"]["resource"]["deployment.environment"] == "test"
    assert chat["metadata"]["attributes"]["app.user"] == "u-1"
    assert chat["metadata"]["otel"]["kind"] == "CLIENT"
    assert chat["metadata"]["otel"]["scope"] == {"name": "test.otlp", "version": "1.2.3"}

    # The exporter's retry of the same batch merges into the same rows.
    assert _exporter(server.url, token).export(spans) == SpanExportResult.SUCCESS
    again = _rows(server.url, token)
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in rows.values())
    assert {r["id"]: r for r in again}[chat["id"]]["input"] == chat["input"]


def test_bad_span_is_rejected_through_partial_success(keyed):
    """A span no row can hold is counted in partial_success; the rest of the batch is stored."""
    server, token = keyed
    spans = _finished_spans(bad=True)
    responses = _Responses()
    assert _exporter(server.url, token, responses=responses).export(spans) \
        == SpanExportResult.SUCCESS
    reply = ExportTraceServiceResponse.FromString(responses.seen[-1].content)
    assert reply.partial_success.rejected_spans == 1
    assert "end_time_unix_nano" in reply.partial_success.error_message
    names = sorted(r["span_attributes"]["name"] for r in _rows(server.url, token))
    assert names == ["chat gpt-4o", "invoke_agent helper"]


def test_wrong_key_is_401(keyed, caplog):
    """A wrong key is refused (401) and the exporter reports the failure."""
    server, _ = keyed
    responses = _Responses()
    with caplog.at_level(logging.CRITICAL):
        result = _exporter(server.url, "sl-wrong", responses=responses).export(_finished_spans())
    assert result == SpanExportResult.FAILURE
    assert responses.seen[-1].status_code == 401
    assert responses.seen[-1].headers["WWW-Authenticate"] == "Bearer"
    status, content_type, code, message = _failure(
        server.url, "/otel/v1/traces", encode_spans(_finished_spans()).SerializeToString(),
        {"Content-Type": "application/x-protobuf"})
    assert (status, content_type, code) == (401, "application/x-protobuf", 16)  # UNAUTHENTICATED
    assert "Authorization" in message


def test_scope_and_project_header(keyed):
    """Without x-bt-parent spans go to Global; a key scoped to other projects gets 403."""
    server, token = keyed
    raw = encode_spans(_finished_spans()).SerializeToString()
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"}
    status, _ = call(server.url, "POST", "/v1/traces", raw=raw, headers=headers)
    assert status == 200
    assert len(_rows(server.url, token, "Global")) == 2
    _, scoped = server.call(lambda: create_key(server.store, "acme", projects=["prod"]))
    status, _, code, message = _failure(server.url, "/v1/traces", raw,
                                        {**headers, "Authorization": f"Bearer {scoped}"})
    assert (status, code) == (403, 7) and "Global" in message  # PERMISSION_DENIED
    status, _, code, message = _failure(server.url, "/v1/traces", raw,
                                        {**headers, "x-bt-parent": "experiment_id:1"})
    assert (status, code) == (400, 3) and "x-bt-parent" in message  # INVALID_ARGUMENT


def test_a_span_naming_its_project_goes_there_and_the_rest_where_the_header_says(
        make_collector):
    """One export, one span with braintrust.parent among spans without: that span's row is
    in its own project, every other row in the x-bt-parent header's (bound once for all of
    them), over protobuf; with no span naming one, all go to the header's."""
    server = make_collector()
    body = _hostile_request([_text_attribute("braintrust.parent", "project_name:elsewhere"),
                             _text_attribute("plain", "x")])
    request = ExportTraceServiceRequest()
    for span in body["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for field in ("traceId", "spanId", "parentSpanId"):  # the JSON mapping's base64
            span[field] = base64.b64encode(bytes.fromhex(span[field])).decode()
    json_format.ParseDict(body, request)
    headers = {"Content-Type": "application/x-protobuf",
               "x-bt-parent": f"project_name:{PROJECT}"}
    status, _ = call(server.url, "POST", "/otel/v1/traces", raw=request.SerializeToString(),
                     headers=headers)
    assert status == 200
    assert [r["span_attributes"]["name"] for r in _rows(server.url, None, "elsewhere")] \
        == ["span 0"]
    assert sorted(r["span_attributes"]["name"] for r in _rows(server.url, None)) \
        == ["span 1", "span 2"]
    del request.resource_spans[0].scope_spans[0].spans[0]
    status, _ = call(server.url, "POST", "/otel/v1/traces", raw=request.SerializeToString(),
                     headers={**headers, "x-bt-parent": "project_name:third"})
    assert status == 200
    assert sorted(r["span_attributes"]["name"] for r in _rows(server.url, None, "third")) \
        == ["span 1", "span 2"]


def _json_request(trace_id: str = "5B8EFFF798038103D269B633813FC60C") -> dict[str, Any]:
    """An OTLP/JSON request as the specification's example writes it (hex ids, int64 as
    strings, enums as numbers)."""
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": "my.service"}}]},
        "scopeSpans": [{
            "scope": {"name": "my.library", "version": "1.0.0"},
            "spans": [{
                "traceId": trace_id, "spanId": "EEE19B7EC3C1B174",
                "parentSpanId": "EEE19B7EC3C1B173", "name": "chat llama",
                "startTimeUnixNano": "1544712660000000000",
                "endTimeUnixNano": "1544712661000000000", "kind": 3,
                "attributes": [
                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                    {"key": "gen_ai.request.model", "value": {"stringValue": "llama"}},
                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "7"}},
                    {"key": "my.ratio", "value": {"doubleValue": 0.5}},
                    {"key": "my.flag", "value": {"boolValue": True}},
                    {"key": "my.list", "value": {"arrayValue": {"values": [
                        {"stringValue": "a"}, {"intValue": 2}]}}},
                    {"key": "my.map", "value": {"kvlistValue": {"values": [
                        {"key": "k", "value": {"stringValue": "v"}}]}}},
                    {"key": "my.bytes", "value": {"bytesValue": "AAE="}}],
                "events": [{"timeUnixNano": "1544712660500000000", "name": "tick"}],
                "status": {"code": 2, "message": "boom"}}]}]}]}


def test_otlp_json_request(make_collector):
    """OTLP/JSON (hex ids, string int64s, gzip) is stored; the reply is JSON."""
    server = make_collector()
    body = _json_request()
    bad = json.loads(json.dumps(body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]))
    bad["spanId"] = "xyz"
    body["resourceSpans"][0]["scopeSpans"][0]["spans"].append(bad)
    status, reply = call(server.url, "POST", "/otel/v1/traces",
                         raw=gzip.compress(json.dumps(body).encode()),
                         headers={"Content-Type": "application/json",
                                  "Content-Encoding": "gzip",
                                  "x-bt-parent": f"project_name:{PROJECT}"})
    assert status == 200, reply
    assert reply["partialSuccess"]["rejectedSpans"] == "1"
    assert "spans[1].span_id" in reply["partialSuccess"]["errorMessage"]
    [row] = _rows(server.url, None)
    assert row["root_span_id"] == "5b8efff798038103d269b633813fc60c"
    assert row["span_parents"] == ["eee19b7ec3c1b173"]
    assert row["span_attributes"] == {"name": "chat llama", "type": "llm"}
    assert row["metrics"]["prompt_tokens"] == 7 and row["metrics"]["start"] == 1544712660.0
    assert row["error"] == "boom"
    attributes = row["metadata"]["attributes"]
    assert attributes["my.list"] == ["a", 2] and attributes["my.map"] == {"k": "v"}
    assert attributes["my.bytes"] == "AAE=" and attributes["my.flag"] is True
    assert row["metadata"]["resource"] == {"service.name": "my.service"}
    assert row["metadata"]["events"][0]["name"] == "tick"


@pytest.mark.parametrize(("content_type", "raw", "status", "words", "answer_type"), [
    ("application/x-protobuf", b"\xff\xff\xff", 400, "protobuf", "application/x-protobuf"),
    ("application/json", b"{not json", 400, "invalid JSON", "application/json"),
    ("application/json", b'{"resourceSpans": 3}', 400, "resourceSpans", "application/json"),
    ("application/xml", b"<a/>", 415, "application/x-protobuf", "application/json"),
])
def test_undecodable_bodies(make_collector, content_type, raw, status, words, answer_type):
    """A body that cannot be decoded is a 400 (415 for a media type OTLP does not use),
    answered with a google.rpc.Status in the request's encoding (JSON for other types)."""
    server = make_collector()
    got, got_type, code, message = _failure(server.url, "/otel/v1/traces", raw,
                                            {"Content-Type": content_type})
    assert (got, got_type, code) == (status, answer_type, 3) and words in message, message


def test_empty_export_and_size_cap(make_collector):
    """An empty request is a success; a body over the cap, compressed or not, is 413."""
    server = make_collector(settings=Settings(max_body_bytes=2_000))
    status, reply = call(server.url, "POST", "/v1/traces", raw=b"",
                         headers={"Content-Type": "application/json"})
    assert status == 200 and reply == {}
    big = json.dumps({"resourceSpans": [], "pad": "x" * 100_000}).encode()
    status, body = call(server.url, "POST", "/v1/traces", raw=gzip.compress(big),
                        headers={"Content-Type": "application/json",
                                 "Content-Encoding": "gzip"})
    assert status == 413 and "decompressed" in body["message"] and body["code"] == 8
    status, body = call(server.url, "POST", "/v1/traces", raw=big,
                        headers={"Content-Type": "application/json"})
    assert status == 413 and body["code"] == 8  # RESOURCE_EXHAUSTED


def test_deeply_nested_json_value_is_refused_with_its_place(make_collector):
    """A JSON body nested deeper than the collector's limit (docs/collector.md) is refused
    before it is decoded, with a 400 naming where, like any other request body."""
    server = make_collector()
    body = _json_request()
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(100):
        value = {"arrayValue": {"values": [value]}}
    span = body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["attributes"].append({"key": "deep", "value": value})
    status, reply = call(server.url, "POST", "/otel/v1/traces", raw=json.dumps(body).encode(),
                         headers={"Content-Type": "application/json"})
    assert status == 400, reply
    assert "resourceSpans[0]" in reply["message"] and "64 levels" in reply["message"]


def _hostile_request(attributes: list[dict[str, Any]]) -> dict[str, Any]:
    """An OTLP/JSON request of one span per attribute given, each with that attribute (and
    a distinct span id), plus one plain span."""
    body = _json_request()
    [template] = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans = []
    for i, attribute in enumerate([*attributes, None]):
        span = {**template, "spanId": f"{i + 1:016x}", "name": f"span {i}",
                "attributes": [] if attribute is None else [attribute]}
        del span["status"]
        spans.append(span)
    body["resourceSpans"][0]["scopeSpans"][0]["spans"] = spans
    return body


def _text_attribute(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def test_hostile_span_attributes_are_refused_span_by_span(make_collector):
    """What a client sends stays under the collector's limits on the OTLP path, which does not
    run a /logs3 row's validation (docs/otel.md): a project name or id over 1,024 characters
    refuses its span in partial_success, naming it; values the row fields cannot take stay
    attributes; the other spans are stored."""
    server = make_collector()
    long_name, long_id = "p" * 2_000, "i" * 1_025
    body = _hostile_request([
        _text_attribute("braintrust.parent", f"project_name:{long_name}"),
        _text_attribute("braintrust.parent", f"project_id:{long_id}"),
        _text_attribute("braintrust.span_attributes", '{"type": "bogus", "name": 3}'),
        _text_attribute("braintrust.scores", '{"accuracy": 7}'),
        _text_attribute("braintrust.metrics", '{"latency": "fast", "n": NaN}'),
        {"key": "braintrust.tags", "value": {"arrayValue": {"values": [{"intValue": 1}]}}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1" + "0" * 400}},
    ])
    headers = {"Content-Type": "application/json", "x-bt-parent": f"project_name:{PROJECT}"}
    status, reply = call(server.url, "POST", "/otel/v1/traces",
                         raw=json.dumps(body).encode(), headers=headers)
    assert status == 200, reply
    where = "resourceSpans[0].scopeSpans[0].spans"
    assert reply["partialSuccess"] == {
        "rejectedSpans": "2",
        "errorMessage": f"2 span(s) rejected: {where}[0].project_name: longer than 1024 "
                        f"characters; {where}[1].project_id: longer than 1024 characters"}
    rows = {r["span_attributes"]["name"]: r for r in _rows(server.url, None)}
    assert sorted(rows) == ["span 2", "span 3", "span 4", "span 5", "span 6", "span 7"]
    assert rows["span 2"]["span_attributes"] == {"name": "span 2"}
    assert rows["span 2"]["metadata"]["attributes"]["braintrust.span_attributes"] \
        == '{"type": "bogus", "name": 3}'
    assert "scores" not in rows["span 3"]
    assert set(rows["span 4"]["metrics"]) == {"start", "end"}
    assert "tags" not in rows["span 5"]
    assert rows["span 5"]["metadata"]["attributes"]["braintrust.tags"] == [1]
    assert "prompt_tokens" not in rows["span 6"]["metrics"]  # beyond a double: its digits
    assert rows["span 6"]["metadata"]["attributes"]["gen_ai.usage.input_tokens"] \
        == "1" + "0" * 400

    status, reply = call(server.url, "POST", "/otel/v1/traces",
                         raw=json.dumps(_hostile_request([])).encode(),
                         headers={**headers, "x-bt-parent": f"project_name:{long_name}"})
    assert status == 200, reply
    assert reply["partialSuccess"]["errorMessage"] == (
        f"1 span(s) rejected: {where}[0].project_name: longer than 1024 characters")


def test_json_attributes_a_row_cannot_hold_are_stored_as_sent(make_collector):
    """JSON inside a string attribute is decoded only into what the collector stores (the
    body's limits, docs/collector.md, hold for it too): nested beyond 64 levels, with a NUL,
    a lone surrogate or a number beyond a double, the string is stored as sent; the batch is
    stored whole, over protobuf and OTLP/JSON."""
    server = make_collector()
    texts = ["[" * 300 + "]" * 300, '{"a": "x\\u0000y"}', '["\\ud800"]', '{"a": 1e400}']
    body = _hostile_request([_text_attribute("gen_ai.tool.call.arguments", text)
                             for text in texts])
    headers = {"x-bt-parent": f"project_name:{PROJECT}"}
    status, reply = call(server.url, "POST", "/otel/v1/traces", raw=json.dumps(body).encode(),
                         headers={**headers, "Content-Type": "application/json"})
    assert (status, reply) == (200, {})
    request = ExportTraceServiceRequest()  # the same spans in another trace, as protobuf
    for span in body["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        span["traceId"] = "1" * 32
        for field in ("traceId", "spanId", "parentSpanId"):  # the JSON mapping's base64
            span[field] = base64.b64encode(bytes.fromhex(span[field])).decode()
    json_format.ParseDict(body, request)
    reply = requests.post(server.url + "/otel/v1/traces", data=request.SerializeToString(),
                          headers={**headers, "Content-Type": "application/x-protobuf"},
                          timeout=10)
    assert reply.status_code == 200, reply.content
    assert not ExportTraceServiceResponse.FromString(reply.content).HasField("partial_success")
    rows = _rows(server.url, None)
    assert len(rows) == 2 * (len(texts) + 1)
    inputs = sorted(r["input"] for r in rows if "input" in r)
    assert inputs == sorted(texts * 2)


def test_protobuf_decoding_reads_every_field_into_its_place():
    """Each field of a protobuf span, set to a value of its own, lands in the OtelSpan field
    of its name (the decoder passes them by position)."""
    request = ExportTraceServiceRequest()
    json_format.ParseDict({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{
            "scope": {"name": "lib", "version": "9.9", "attributes": [
                {"key": "scope.k", "value": {"boolValue": True}}]},
            "spans": [{
                "traceId": base64.b64encode(b"\x01" * 16).decode(),
                "spanId": base64.b64encode(b"\x02" * 8).decode(),
                "parentSpanId": base64.b64encode(b"\x03" * 8).decode(),
                "traceState": "k=v", "flags": 257, "name": "op", "kind": 4,
                "startTimeUnixNano": "11", "endTimeUnixNano": "12",
                "attributes": [
                    {"key": "s", "value": {"stringValue": "x"}},
                    {"key": "i", "value": {"intValue": "-3"}},
                    {"key": "d", "value": {"doubleValue": 0.5}},
                    {"key": "b", "value": {"bytesValue": "AAE="}},
                    {"key": "none", "value": {}},
                    {"key": "list", "value": {"arrayValue": {"values": [
                        {"intValue": "1"}, {"kvlistValue": {"values": [
                            {"key": "k", "value": {"stringValue": "v"}}]}}]}}}],
                "droppedAttributesCount": 1,
                "events": [{"timeUnixNano": "13", "name": "ev", "attributes": [
                    {"key": "e", "value": {"intValue": "5"}}], "droppedAttributesCount": 2}],
                "droppedEventsCount": 3,
                "links": [{"traceId": base64.b64encode(b"\x04" * 16).decode(),
                           "spanId": base64.b64encode(b"\x05" * 8).decode(),
                           "traceState": "l=1", "attributes": [
                               {"key": "why", "value": {"stringValue": "retry"}}],
                           "droppedAttributesCount": 4}],
                "droppedLinksCount": 5,
                "status": {"code": 2, "message": "bad"}}]}]}]}, request)
    [(place, [fields])] = _spans_from_protobuf(request.SerializeToString())
    assert place == "resourceSpans[0].scopeSpans[0]"
    assert OtelSpan(*fields) == OtelSpan(
        name="op", trace_id=b"\x01" * 16, span_id=b"\x02" * 8, parent_span_id=b"\x03" * 8,
        start_time_unix_nano=11, end_time_unix_nano=12, kind=4, status_code=2,
        status_message="bad",
        attributes={"s": "x", "i": -3, "d": 0.5, "b": b"\x00\x01", "none": None,
                    "list": [1, {"k": "v"}]},
        events=[OtelEvent("ev", 13, {"e": 5}, 2)],
        links=[OtelLink(b"\x04" * 16, b"\x05" * 8, {"why": "retry"}, "l=1", 4)],
        resource_attributes={"service.name": "svc"}, scope_name="lib", scope_version="9.9",
        scope_attributes={"scope.k": True}, trace_state="k=v", flags=257,
        dropped_attributes_count=1, dropped_events_count=3, dropped_links_count=5)


def test_protobuf_spans_are_marked_plain_only_when_nothing_needs_cleaning():
    """OtelSpan.plain (span_to_row then skips cleaning) is set for a span whose attributes,
    resource and scope attributes are strings, bools, ints, finite doubles or empty, with no
    events or links; any bytes, list, map, NaN or infinity, event or link leaves it unset."""
    def span(i: int, attributes: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
        return {"traceId": base64.b64encode(b"\x01" * 16).decode(),
                "spanId": base64.b64encode(bytes([i + 1]) * 8).decode(), "name": f"s{i}",
                "startTimeUnixNano": "11", "endTimeUnixNano": "12", "attributes": attributes,
                **more}

    def attribute(value: dict[str, Any]) -> dict[str, Any]:
        return {"key": "k", "value": value}

    plain_values = [attribute({"stringValue": "x"}), attribute({"stringValue": ""}),
                    attribute({"boolValue": False}), attribute({"intValue": "-3"}),
                    attribute({"doubleValue": 0.5}), attribute({})]
    not_plain = [attribute({"bytesValue": "AAE="}), attribute({"doubleValue": "NaN"}),
                 attribute({"doubleValue": "-Infinity"}),
                 attribute({"arrayValue": {"values": []}}),
                 attribute({"kvlistValue": {"values": []}})]
    spans = [span(i, [a]) for i, a in enumerate(plain_values + not_plain)]
    spans.append(span(20, [], events=[{"timeUnixNano": "13", "name": "e"}]))
    spans.append(span(21, [], links=[{"traceId": base64.b64encode(b"\x04" * 16).decode(),
                                      "spanId": base64.b64encode(b"\x05" * 8).decode()}]))
    plain_scope = {"scope": {"attributes": plain_values[:2]}, "spans": spans}
    listed_scope = {"scope": {"attributes": not_plain[3:4]}, "spans": spans[:1]}

    def decode(resource: list[dict[str, Any]],
               scopes: list[dict[str, Any]]) -> list[list[bool]]:
        request = ExportTraceServiceRequest()
        json_format.ParseDict({"resourceSpans": [{"resource": {"attributes": resource},
                                                  "scopeSpans": scopes}]}, request)
        return [[OtelSpan(*fields).plain for fields in scope_spans]
                for _, scope_spans in _spans_from_protobuf(request.SerializeToString())]

    expected = [True] * len(plain_values) + [False] * (len(not_plain) + 2)
    assert decode(plain_values[2:], [plain_scope, listed_scope]) == [expected, [False]]
    assert decode(not_plain[:1], [plain_scope]) == [[False] * len(expected)]


def test_a_refused_span_deep_in_a_batch_is_named_by_its_place():
    """A span is named by its place only when refused (spans_to_batch writes it then): the
    place counts resourceSpans, scopeSpans and spans apart, protobuf and JSON alike, whether
    span_to_row refuses the span or its project is one no row may name."""
    def body(encode: Any) -> dict[str, Any]:  # ids as protobuf's JSON mapping or OTLP/JSON
        def span(i: int, **more: Any) -> dict[str, Any]:
            return {"traceId": encode(b"\x01" * 16), "spanId": encode(bytes([i + 1]) * 8),
                    "name": f"s{i}", "startTimeUnixNano": "5", "endTimeUnixNano": "6", **more}

        backwards = {"startTimeUnixNano": "9"}
        too_long = {"attributes": [_text_attribute("braintrust.parent",
                                                   "project_name:" + "p" * 1_025)]}
        return {"resourceSpans": [
            {"scopeSpans": [{"spans": [span(0)]}]},
            {"scopeSpans": [{"spans": [span(1), span(2, **too_long)]},
                            {"spans": [span(3), span(4), span(5), span(6, **backwards)]}]}]}

    request = ExportTraceServiceRequest()
    json_format.ParseDict(body(lambda b: base64.b64encode(b).decode()), request)
    for protobuf, raw in ((True, request.SerializeToString()),
                          (False, json.dumps(body(bytes.hex)).encode())):
        batch, rejected = decode_spans(raw, protobuf, None, PROJECT)
        assert rejected == [
            "resourceSpans[1].scopeSpans[0].spans[1].project_name: longer than 1024 "
            "characters",
            "resourceSpans[1].scopeSpans[1].spans[3].end_time_unix_nano: 6 is before "
            "start_time_unix_nano 9"], protobuf
        assert len(batch.ids) == 5 and (batch.routes, batch.route) == ([], (None, PROJECT))


def test_json_attribute_values_as_spelled_and_refused_by_place():
    """OTLP/JSON AnyValues as exporters spell them (int64 as a string, a double as an
    integer) or as the protobuf JSON mapping allows (snake_case, an int64 as a number) are
    read to the same values; one of the wrong type refuses its span, naming its place."""
    def span(name: str, *attributes: dict[str, Any]) -> dict[str, Any]:
        return {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                "name": name, "startTimeUnixNano": "1", "endTimeUnixNano": "2",
                "attributes": list(attributes)}

    good = span("good", *({"key": key, "value": value} for key, value in (
        ("i", {"intValue": " 7 "}), ("j", {"int_value": 8}), ("k", {"intValue": 9.0}),
        ("d", {"doubleValue": 1}), ("e", {"double_value": "-Infinity"}),
        ("b", {"bool_value": False}), ("s", {"string_value": ""}), ("n", {}))))
    bad = [span(f"bad{i}", {"key": "x", "value": value}) for i, value in enumerate((
        {"intValue": "seven"}, {"intValue": True}, {"boolValue": "true"},
        {"doubleValue": True}, {"stringValue": 5}, {"stringValue": "a", "intValue": "1"}))]
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [good, *bad]}]}]}
    [(_, [read, *refused])] = _spans_from_json(json.dumps(body).encode())
    assert read.attributes == {"i": 7, "j": 8, "k": 9, "d": 1.0, "e": float("-inf"),
                               "b": False, "s": "", "n": None}
    assert type(read.attributes["d"]) is float
    where = "resourceSpans[0].scopeSpans[0].spans"
    assert [str(reason) for reason in refused] == [
        f"{where}[1].attributes[0].value.intValue: 'seven' is not an integer",
        f"{where}[2].attributes[0].value.intValue: True is not an integer",
        f"{where}[3].attributes[0].value.boolValue: must be true or false",
        f"{where}[4].attributes[0].value.doubleValue: True is not a number",
        f"{where}[5].attributes[0].value.stringValue: must be a string, got int",
        f"{where}[6].attributes[0].value: an AnyValue has one field, got "
        "['intValue', 'stringValue']"]


def test_json_span_fields_of_the_wrong_type_are_refused_by_place():
    """Each field of an OTLP/JSON span of the wrong type refuses its span alone, naming the
    span's place and the field's (the decoder joins the two only for a refused span)."""
    good = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "ok", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    event = {"name": "e", "timeUnixNano": "1"}
    link = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"}
    wrong = [
        ("name", 5, "name: must be a string, got int"),
        ("traceId", 7, "traceId: must be a string, got int"),
        ("parent_span_id", [], "parentSpanId: must be a string, got list"),
        ("startTimeUnixNano", "x", "startTimeUnixNano: 'x' is not an integer"),
        ("kind", True, "kind: True is not an integer"),
        ("status", [], "status: must be an object, got list"),
        ("status", {"code": 1.5}, "status.code: 1.5 is not an integer"),
        ("status", {"message": 3}, "status.message: must be a string, got int"),
        ("attributes", {}, "attributes: must be a list, got dict"),
        ("attributes", [3], "attributes[0]: must be an object, got int"),
        ("attributes", [{"key": 1}], "attributes[0].key: must be a string, got int"),
        ("events", "x", "events: must be a list, got str"),
        ("events", [event, 3], "events[1]: must be an object, got int"),
        ("events", [{**event, "timeUnixNano": "z"}], "events[0].timeUnixNano: 'z' is not an "
                                                     "integer"),
        ("events", [{**event, "attributes": [{"key": 2}]}],
         "events[0].attributes[0].key: must be a string, got int"),
        ("links", [{"traceId": link["traceId"], "span_id": 4}],
         "links[0].spanId: must be a string, got int"),
        ("links", [{**link, "droppedAttributesCount": "n"}],
         "links[0].droppedAttributesCount: 'n' is not an integer"),
        ("traceState", 1, "traceState: must be a string, got int"),
        ("flags", "f", "flags: 'f' is not an integer"),
        ("droppedLinksCount", 0.5, "droppedLinksCount: 0.5 is not an integer")]
    spans = [good, *({**good, key: value} for key, value, _ in wrong)]
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [good]}, {"spans": spans}]}]}
    batch, rejected = decode_spans(json.dumps(body).encode(), False, None, PROJECT)
    assert len(batch.ids) == 2
    assert rejected == [f"resourceSpans[0].scopeSpans[1].spans[{i}].{why}"
                        for i, (_, _, why) in enumerate(wrong, 1)]


def test_failures_of_the_otlp_paths_only_are_google_rpc_status(make_collector):
    """Every failure answer on the OTLP paths is a google.rpc.Status, the router's as well
    (405, with its Allow header); the rest of the API keeps {"error": ...}."""
    server = make_collector()
    status, content_type, code, message = _failure(
        server.url, "/otel/v1/traces", None, {"Accept": "application/x-protobuf"}, "GET")
    assert (status, content_type, code) == (405, "application/json", 12)  # UNIMPLEMENTED
    assert "/otel/v1/traces" in message
    assert requests.get(server.url + "/v1/traces", timeout=10).headers["Allow"] == "POST"
    status, body = call(server.url, "POST", "/logs3", raw=b"{not json",
                        headers={"Content-Type": "application/json"})
    assert status == 400 and set(body) == {"error"}


def test_environment_setup_of_the_readme(keyed, monkeypatch):
    """The README's setup, as environment variables only: the exporter finds /otel/v1/traces
    and sends the key and the project."""
    server, token = keyed
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"{server.url}/otel")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS",
                       f"Authorization=Bearer%20{token},x-bt-parent=project_name:from-env")
    assert OTLPSpanExporter().export(_finished_spans()) == SpanExportResult.SUCCESS
    assert len(_rows(server.url, token, "from-env")) == 2


def test_openinference_openai_instrumentation(keyed):
    """A real instrumentation (openinference-instrumentation-openai) on the real openai client,
    calling the fake OpenAI-compatible server, exported by the SDK's OTLP/HTTP exporter: one
    llm row with model, tokens and messages."""
    import openai
    from openinference.instrumentation.openai import OpenAIInstrumentor

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "openai"))
    from fake_server import FakeOpenAI

    server, token = keyed
    provider = TracerProvider(resource=Resource.create({"service.name": "chat-app"}))
    provider.add_span_processor(SimpleSpanProcessor(_exporter(server.url, token)))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with FakeOpenAI() as fake:
            client = openai.OpenAI(base_url=fake.base_url, api_key="sk-test")
            reply = client.chat.completions.create(
                model="gpt-4o-mini", temperature=0,
                messages=[{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "hello there"}])
            client.close()
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    assert reply.choices[0].message.content == "echo: hello there"
    [row] = _rows(server.url, token)
    assert row["span_attributes"]["type"] == "llm"
    assert row["metadata"]["model"] == "gpt-4o-mini"
    assert row["metadata"]["otel"]["conventions"] == ["openinference"]
    assert row["metrics"]["prompt_tokens"] == reply.usage.prompt_tokens
    assert row["metrics"]["completion_tokens"] == reply.usage.completion_tokens
    assert row["metrics"]["tokens"] == reply.usage.total_tokens
    assert row["input"] == [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "hello there"}]
    assert row["output"][0]["role"] == "assistant"
    assert row["output"][0]["content"] == "echo: hello there"
    assert row["metadata"]["resource"]["service.name"] == "chat-app"


# Run in a process of its own: OpenLLMetry's instrumentation leaves openai patched after
# uninstrument(), which would change what the other tests' clients return.
OPENLLMETRY_SCRIPT = """
import json, sys, warnings
warnings.simplefilter("ignore")  # its pydantic model is declared the pre-2.0 way
import openai
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

collector, token, project, base_url = sys.argv[1:5]
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
    endpoint=collector + "/otel/v1/traces",
    headers={"Authorization": "Bearer " + token, "x-bt-parent": "project_name:" + project})))
OpenAIInstrumentor().instrument(tracer_provider=provider)
client = openai.OpenAI(base_url=base_url, api_key="sk-test")
reply = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}])
provider.shutdown()
print(json.dumps({"content": reply.choices[0].message.content,
                  "prompt_tokens": reply.usage.prompt_tokens,
                  "completion_tokens": reply.usage.completion_tokens}))
"""


@pytest.mark.slow  # a Python process that imports OpenLLMetry and openai: about 3 s
def test_openllmetry_openai_instrumentation(keyed):
    """A second real instrumentation, OpenLLMetry's (opentelemetry-instrumentation-openai,
    the older indexed gen_ai.prompt.N / gen_ai.completion.N attributes), on the real openai
    client against the fake server, exported over OTLP: one llm row with model, tokens and
    messages."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "openai"))
    from fake_server import FakeOpenAI

    server, token = keyed
    with FakeOpenAI() as fake:
        done = subprocess.run([sys.executable, "-c", OPENLLMETRY_SCRIPT, server.url, token,
                               PROJECT, fake.base_url],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    reply = json.loads(done.stdout.strip().splitlines()[-1])
    assert reply["content"] == "echo: hello there"
    [row] = _rows(server.url, token)
    assert row["span_attributes"]["type"] == "llm"
    assert row["metadata"]["model"] == "gpt-4o-mini"
    assert row["metrics"]["prompt_tokens"] == reply["prompt_tokens"]
    assert row["metrics"]["completion_tokens"] == reply["completion_tokens"]
    assert row["input"] == [{"role": "user", "content": "hello there"}]
    assert row["output"][0]["role"] == "assistant"
    assert row["output"][0]["content"] == "echo: hello there"


NODE_DIR = Path(__file__).resolve().parent.parent / "otlp_node"


def _node_exporter() -> Path:
    """tests/otlp_node with its npm tree installed from the committed lockfile (as
    tests/runtimes/runtimes_setup.py installs the Cloudflare harness's)."""
    if not (NODE_DIR / "node_modules" / "@opentelemetry" / "exporter-trace-otlp-http").exists():
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return NODE_DIR


@pytest.mark.slow
def test_node_otlp_json_exporter(keyed):
    """The OpenTelemetry JS SDK's OTLP/HTTP exporter (OTLP/JSON) under Node stores a trace."""
    server, token = keyed
    env = {**os.environ, "SPANLOG_OTLP_URL": f"{server.url}/otel/v1/traces",
           "SPANLOG_OTLP_HEADERS": json.dumps({"Authorization": f"Bearer {token}",
                                               "x-bt-parent": "project_name:node"})}
    done = subprocess.run(["node", "export.mjs"], cwd=_node_exporter(), env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, result  # ExportResultCode.SUCCESS
    sent = {s["name"]: s for s in result["spans"]}
    rows = {r["span_attributes"]["name"]: r for r in _rows(server.url, token, "node")}
    assert set(rows) == set(sent) == {"chat claude", "invoke_agent planner"}
    chat, root = rows["chat claude"], rows["invoke_agent planner"]
    assert chat["root_span_id"] == sent["chat claude"]["trace_id"]
    assert chat["span_id"] == sent["chat claude"]["span_id"]
    assert chat["span_parents"] == [root["span_id"]] and root["span_parents"] is None
    assert chat["span_attributes"]["type"] == "llm"
    assert chat["metadata"]["model"] == "claude-sonnet"
    assert chat["metrics"]["prompt_tokens"] == 9 and chat["metrics"]["tokens"] == 11
    assert chat["input"] == [{"role": "user", "content": "hi node"}]
    assert chat["output"] == [{"role": "assistant", "content": "hello"}]
    assert chat["metadata"]["attributes"]["app.tags"] == ["a", "b"]
    assert chat["metadata"]["attributes"]["app.count"] == 42
    assert chat["metadata"]["resource"]["service.name"] == "node-app"
