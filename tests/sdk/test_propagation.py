"""Distributed traces: exported span handles and W3C traceparent headers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from sdk_support import LoggerFactory

import spanlog
from spanlog.testing import capture_rows


def test_exported_span_continues_the_trace_in_another_process(
        collector: Any, make_logger: LoggerFactory, project: str) -> None:
    """A span exported here and passed as parent= in another process (whose logger names a
    different project) gets children in this trace and this project."""
    logger = make_logger(async_flush=False)
    with logger.start_span(name="frontend") as span:
        handle = span.export()
    code = textwrap.dedent(f"""
        import spanlog
        spanlog.init_logger(project="elsewhere", api_url={collector.url!r},
                            api_key={collector.api_key!r}, async_flush=False)
        with spanlog.start_span(name="backend", parent={handle!r}) as remote:
            with spanlog.start_span(name="db"):
                pass
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    rows = {r["span_attributes"]["name"]: r
            for r in collector.wait_for_rows(3, project=project)}
    assert rows["backend"]["root_span_id"] == span.root_span_id
    assert rows["backend"]["span_parents"] == [span.span_id]
    assert rows["db"]["span_parents"] == [rows["backend"]["span_id"]]
    assert collector.fetch(project="elsewhere") == []


def test_traceparent_round_trip() -> None:
    """inject_traceparent writes the current span; extract_traceparent reads it back as a
    parent for a span in the same trace."""
    with capture_rows() as rows:
        with spanlog.start_span(name="client") as client:
            headers = spanlog.inject_traceparent({"Accept": "x"})
        assert headers["traceparent"] == f"00-{client.root_span_id}-{client.span_id}-01"
        assert spanlog.inject_traceparent() == {}  # nothing current any more
        incoming = {"TraceParent": headers["traceparent"]}
        with spanlog.start_span(name="server", parent=spanlog.extract_traceparent(incoming)):
            pass
    server = next(r for r in rows if r["span_attributes"]["name"] == "server")
    assert server["root_span_id"] == client.root_span_id
    assert server["span_parents"] == [client.span_id]


@pytest.mark.parametrize("value", [
    "", "garbage", "00-abc-def-01",
    "00-00000000000000000000000000000000-0000000000000001-01",
    "ff-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
])
def test_bad_traceparent_headers_start_a_new_trace(value: str) -> None:
    """A missing or malformed traceparent is ignored (None), never an error."""
    assert spanlog.extract_traceparent({"traceparent": value}) is None
    assert spanlog.extract_traceparent({}) is None


def test_bad_parent_strings_are_rejected_clearly() -> None:
    """parent= with a string that is neither an export nor a traceparent raises ValueError."""
    with capture_rows(), pytest.raises(ValueError, match="span.export"):
        spanlog.start_span(name="x", parent="not-a-span")
    with capture_rows(), pytest.raises(ValueError, match="undecodable|lacks"):
        spanlog.start_span(name="x", parent="sl1:@@@")
