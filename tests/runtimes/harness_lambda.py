"""Run a Lambda handler under the real runtime interface client against a local Runtime API.

``awslambdaric`` (the client AWS ships in its Python base images) long-polls
``GET /2018-06-01/runtime/invocation/next`` for an event, calls the handler, and posts the
result to ``/invocation/{id}/response`` (or ``/error``; ``/init/error`` when the handler
cannot even be imported). Then it polls ``next`` again, and that is the moment Lambda freezes
the execution environment: this fake Runtime API SIGSTOPs the process right there, before
answering, so whatever the handler left for later never runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness_common import STEP_TIMEOUT, RuntimeProcess, wait_for

_PREFIX = "/2018-06-01/runtime"


class LambdaFunction:
    """A Lambda function process under awslambdaric plus the Runtime API it talks to.

    ``freeze=False`` keeps it running at its next poll (benchmarks).
    """

    def __init__(self, task_root: Path, handler: str, env: dict[str, str],
                 workdir: Path, freeze: bool = True) -> None:
        self.freeze = freeze
        self._events: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._lock = threading.Lock()
        self.results: dict[str, tuple[str, Any]] = {}
        self.result_times: dict[str, float] = {}
        self.init_error: Any = None
        self.next_calls = 0
        self.frozen_at_next: int | None = None
        self._closing = threading.Event()
        fn = self

        class RuntimeAPI(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle and delayed
            # ACKs add ~40 ms to every exchange.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                if self.path != f"{_PREFIX}/invocation/next":
                    return self._reply(404, {"errorMessage": f"no route {self.path}"})
                with fn._lock:
                    fn.next_calls += 1
                    if fn.next_calls >= 2 and fn.frozen_at_next is None:
                        # The previous invocation's result is in: Lambda freezes here.
                        if fn.freeze:
                            fn.process.freeze()
                        fn.frozen_at_next = fn.next_calls
                # Long poll, as the real API does, until the test queues an event.
                while not fn._closing.is_set():
                    try:
                        item = fn._events.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    if item is None:
                        break
                    request_id, body = item
                    deadline_ms = int((time.time() + 60) * 1000)
                    return self._reply(200, body, {
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn":
                            "arn:aws:lambda:us-east-1:000000000000:function:spanlog-test",
                        "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-x",
                    })
                return self._reply(410, {"errorMessage": "runtime api shutting down"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.path == f"{_PREFIX}/init/error":
                    fn.init_error = json.loads(raw or b"null")
                    return self._reply(202, {"status": "OK"})
                match = re.fullmatch(rf"{_PREFIX}/invocation/([^/]+)/(response|error)",
                                     self.path)
                if match is None:
                    return self._reply(404, {"errorMessage": f"no route {self.path}"})
                try:
                    payload: Any = json.loads(raw) if raw else None
                except ValueError:
                    payload = raw.decode("utf-8", "replace")
                with fn._lock:
                    fn.results[match[1]] = (match[2], payload)
                    fn.result_times[match[1]] = time.monotonic()
                return self._reply(202, {"status": "OK"})

            def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None
                       ) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                # The runtime may be gone (killed at teardown) by the time it is answered.
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), RuntimeAPI)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self._dir = tempfile.mkdtemp(prefix="lambda-", dir=workdir)
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": str(task_root),
            "LAMBDA_TASK_ROOT": str(task_root),
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self._server.server_address[1]}",
            "AWS_LAMBDA_FUNCTION_NAME": "spanlog-test",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_REGION": "us-east-1",
            "_HANDLER": handler,
            **env,
        }
        self.process = RuntimeProcess([sys.executable, "-m", "awslambdaric", handler],
                                      full_env, cwd=str(task_root),
                                      log_path=os.path.join(self._dir, "runtime.log"))
        try:
            wait_for(lambda: self.next_calls >= 1 or self.process.proc.poll() is not None
                     or self.init_error is not None, STEP_TIMEOUT, "the first next call")
            if self.next_calls < 1:
                raise AssertionError(f"runtime never polled for work (init error: "
                                     f"{self.init_error}):\n{self.process.output()}")
        except BaseException:
            self.close()
            raise

    def invoke(self, event: Any) -> tuple[str, Any, float]:
        """Queue one event and wait until the function froze at its following ``next``.

        Returns (``response`` or ``error``, the posted payload, seconds until it was posted).
        """
        request_id = str(uuid.uuid4())
        with self._lock:
            self.frozen_at_next = None
            calls_before = self.next_calls
        self.process.thaw()
        started = time.monotonic()
        self._events.put((request_id, json.dumps(event).encode()))
        try:
            wait_for(lambda: self.frozen_at_next is not None and self.next_calls > calls_before,
                     STEP_TIMEOUT, "the next call after the invocation (freeze point)")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.process.output()}") from None
        kind, payload = self.results[request_id]
        return kind, payload, self.result_times[request_id] - started

    def close(self) -> None:
        """Kill the runtime (frozen or not) and stop the Runtime API."""
        self._closing.set()
        self.process.kill()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=STEP_TIMEOUT)
