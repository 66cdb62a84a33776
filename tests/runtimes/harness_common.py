"""Pieces shared by the serverless runtime harnesses: deadlines, a slow link, frozen processes.

The harnesses run each platform's real runtime in a child process and freeze it (SIGSTOP) the
moment the platform would; what is in the collector at that moment is what a user would keep.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

T = TypeVar("T")

# Every wait in these harnesses is bounded; this is the ceiling for a single step.
STEP_TIMEOUT = 30.0

# How long the slow link holds each request on its way to the collector. The harness tests
# assert that a response comes back well before this (the flush did not hold it up) and that
# the rows still arrive before the freeze.
LINK_DELAY = 0.4


def wait_for(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.01
) -> T:
    """Poll ``condition`` until it returns something truthy, or fail saying ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        # Polling interval between checks of a condition, bounded by the deadline above.
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlowLink:
    """An HTTP relay to the collector that holds every request for ``delay`` seconds.

    Put between an app and the collector it makes a flush take at least ``delay``, so a test
    can tell a response that waited for the flush from one that did not, and a flush that
    finished before the freeze from one that was still on its way.
    """

    def __init__(self, target_url: str, delay: float) -> None:
        self.delay = delay
        self.requests: list[tuple[str, str]] = []
        # (path, time.monotonic()) when each request left the link for the collector.
        self.forwarded: list[tuple[str, float]] = []
        target = urllib.parse.urlsplit(target_url)
        host, port = target.hostname or "127.0.0.1", target.port or 80
        link = self

        class Relay(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle and delayed
            # ACKs add ~40 ms to every exchange.
            disable_nagle_algorithm = True

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                link.requests.append((self.command, self.path))
                # Simulated network latency on the way to the collector (not a wait for a
                # condition): the whole point of the relay.
                time.sleep(link.delay)
                link.forwarded.append((self.path, time.monotonic()))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length")}
                conn = http.client.HTTPConnection(host, port, timeout=STEP_TIMEOUT)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for key, value in resp.getheaders():
                        if key.lower() not in ("transfer-encoding", "connection",
                                               "content-length", "date", "server"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    # The app was killed while its request was held: nobody to answer.
                    self.close_connection = True
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def first_forwarded(self, path: str) -> float:
        """When the first request for ``path`` left the link (``time.monotonic()``)."""
        times = [at for forwarded, at in self.forwarded if forwarded == path]
        assert times, f"no request for {path} went through the link: {self.requests}"
        return min(times)

    def close(self) -> None:
        """Stop relaying and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=STEP_TIMEOUT)


class RuntimeProcess:
    """A platform runtime in a child process that the test can freeze, thaw and kill.

    Output goes to a file so a failing test can show what the runtime said.
    """

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str, log_path: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.frozen_at: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def freeze(self) -> None:
        """SIGSTOP the runtime, as the platform freezes it after the invocation."""
        if self.frozen_at is None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.frozen_at = time.monotonic()

    def thaw(self) -> None:
        """SIGCONT a frozen runtime (the platform reusing a warm instance)."""
        if self.frozen_at is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen_at = None

    def output(self) -> str:
        """Everything the runtime printed so far."""
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill(self) -> None:
        """SIGKILL (works on a stopped process too) and reap; idempotent."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STEP_TIMEOUT)
        self._log.close()


def http_request(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None,
    timeout: float = STEP_TIMEOUT,
) -> tuple[int, dict[str, Any] | str, float]:
    """Send one request; return (status, JSON body or text, seconds until the full response)."""
    parts = urllib.parse.urlsplit(url)
    data = json.dumps(body).encode() if body is not None else None
    all_headers = {"Content-Type": "application/json"} if data is not None else {}
    all_headers.update(headers or {})
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        started = time.monotonic()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=data, headers=all_headers)
        resp = conn.getresponse()
        raw = resp.read()
        elapsed = time.monotonic() - started
    finally:
        conn.close()
    text = raw.decode("utf-8", "replace")
    try:
        return resp.status, json.loads(text), elapsed
    except ValueError:
        return resp.status, text, elapsed
