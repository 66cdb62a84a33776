"""init_logger() replacing the current logger: the old one delivers, then lets go of its
connection and thread, without holding up the caller and without a ResourceWarning."""

from __future__ import annotations

import gc
import threading
import time
import warnings
import weakref
from typing import Any

from sdk_support import ControlledProxy

import spanlog
from spanlog import _logger


def _wait(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)  # polling interval between condition checks


def _releasers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "spanlog-release"]


def test_a_replaced_logger_delivers_its_rows_then_releases_its_connection(
        collector: Any, project: str) -> None:
    """The replaced logger's buffered rows reach the collector (its thread would have
    lingered a minute), init_logger does not wait for that, and once the old logger is
    dropped it is collected without an unclosed-socket ResourceWarning."""
    with ControlledProxy(collector.url) as proxy:
        settings = {"api_url": proxy.url, "api_key": collector.api_key, "flush_linger": 60,
                    "retry_backoff": 0.01}
        old = spanlog.init_logger(project=project, **settings)
        with old.start_span(name="before"):
            pass
        assert old.flush(timeout=10)  # the old logger now keeps a connection open
        for i in range(3):
            with old.start_span(name=f"buffered{i}"):
                pass
        # The old logger's delivery waits at a gate the test opens only after init_logger
        # returned: init_logger returns while the old logger's release is still at work.
        # (Had it waited for the delivery, it would return only when the gate gave up at
        # its bound, 60 s, a bound on that hang; had it waited for the release to give up,
        # the release thread would be gone.)
        release = threading.Event()
        proxy.then(("gate", release, 60.0))
        try:
            new = spanlog.init_logger(project=project, **settings)
            assert proxy.gates_forced == 0 and _releasers(), \
                "init_logger waited for the old logger"
            proxy.wait_for(lambda: proxy.gated == 1)  # the old logger's delivery is under way
        finally:
            release.set()
        assert spanlog.current_logger() is new
        old_ref, flusher_ref = weakref.ref(old), weakref.ref(old._flusher)
        del old
        try:
            rows = collector.wait_for_rows(4, project=project)
            assert sorted(r["span_attributes"]["name"] for r in rows) == [
                "before", "buffered0", "buffered1", "buffered2"]
            _wait(lambda: not _releasers(), "the release thread to finish")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                # The flusher too: its thread (which holds it) has ended.
                _wait(lambda: gc.collect() is not None and old_ref() is flusher_ref() is None,
                      "the old logger and its flusher to be collected")
            assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
        finally:
            new.close(timeout=5)
            _logger.set_current_logger(None)


def test_rows_a_replaced_logger_could_not_deliver_yet_are_not_lost(
        collector: Any, project: str) -> None:
    """When the release's attempt fails (collector answering 503), the dropped logger is
    held, not collected with its rows: its background thread retries and delivers them at
    once (no minute-long linger), and the logger still works when used again."""
    with ControlledProxy(collector.url) as proxy:
        old = spanlog.init_logger(project=project, api_url=proxy.url,
                                  api_key=collector.api_key, flush_linger=60, max_retries=0,
                                  retry_backoff=0.01)
        with old.start_span(name="during-outage"):
            pass
        proxy.then(("status", 503))  # the release's one attempt fails
        spanlog.init_logger(project=project, api_url=proxy.url, api_key=collector.api_key)
        old_ref = weakref.ref(old)
        del old
        try:
            gc.collect()
            rows = collector.wait_for_rows(1, project=project)
            assert [r["span_attributes"]["name"] for r in rows] == ["during-outage"]
            assert [s.rows[0]["span_attributes"]["name"] for s in proxy.logs3()] == [
                "during-outage", "during-outage"]
            kept = old_ref()
            assert kept is not None, "a logger with undelivered rows was let go"
            with kept.start_span(name="after-release"):
                pass
            assert kept.flush(timeout=10)
            assert len(collector.fetch(project=project)) == 2
            kept.close(timeout=5)
        finally:
            current = spanlog.current_logger()
            assert current is not None
            current.close(timeout=5)
            _logger.set_current_logger(None)
