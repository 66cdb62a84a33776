"""Run a Vercel Python function under the real ``vercel_runtime.vc_init`` with a fake platform.

The platform side of Vercel's Python runtime is a Unix socket (``VERCEL_IPC_PATH``) that
``vc_init`` connects to at import and writes NUL-terminated JSON messages on (read from
vercel-runtime 0.24.1's ``vc_init.py``):

- ``server-started`` ``{"httpPort": N, ...}`` once its HTTP server listens on 127.0.0.1:N;
- per request ``handler-started``, then ``log`` lines, then ``end`` with the request's
  ``{"context": {"invocationId", "requestId"}}`` once the response is sent *and* everything
  handed to ``wait_until`` has drained.

The platform freezes the function after ``end``; this fake freezes it with SIGSTOP at once.
Requests carry ``x-vercel-internal-invocation-id`` / ``x-vercel-internal-request-id``.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness_common import STEP_TIMEOUT, RuntimeProcess, http_request, wait_for


class VercelFunction:
    """One Vercel Python function process plus the fake platform end of its IPC socket.

    ``entrypoint`` is the function's file; ``variable`` the name ``vc_init`` looks up in it
    (``app`` for ASGI/WSGI, ``handler`` for a ``BaseHTTPRequestHandler`` class).
    ``freeze_on_end=False`` keeps it running (benchmarks).
    """

    def __init__(self, python: Path, entrypoint: Path, variable: str,
                 env: dict[str, str], workdir: Path, freeze_on_end: bool = True) -> None:
        self.freeze_on_end = freeze_on_end
        self._dir = tempfile.mkdtemp(prefix="vercel-", dir=workdir)
        # A Unix socket path is limited to ~107 bytes: keep it short, outside ``workdir``.
        self._ipc_dir = tempfile.mkdtemp(prefix="vc-ipc-")
        ipc_path = os.path.join(self._ipc_dir, "ipc.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(ipc_path)
        self._listener.listen(1)
        self._lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.ends: list[dict[str, Any]] = []
        self.end_times: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._conn: socket.socket | None = None
        self.port: int | None = None

        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "VERCEL": "1",  # as the platform sets it in every function
            "VERCEL_IPC_PATH": ipc_path,
            "__VC_HANDLER_ENTRYPOINT": entrypoint.name,
            "__VC_HANDLER_ENTRYPOINT_ABS": str(entrypoint),
            "__VC_HANDLER_MODULE_NAME": entrypoint.stem,
            "__VC_HANDLER_VARIABLE_NAME": variable,
            **env,
        }
        self.process = RuntimeProcess([str(python), "-m", "vercel_runtime.vc_init"], full_env,
                                      cwd=str(entrypoint.parent),
                                      log_path=os.path.join(self._dir, "runtime.log"))
        self._reader = threading.Thread(target=self._read_ipc, daemon=True)
        self._reader.start()
        try:
            wait_for(lambda: self.port or self.process.proc.poll() is not None, STEP_TIMEOUT,
                     "server-started from vc_init")
            if self.port is None:
                raise AssertionError(f"vc_init exited before server-started:\n{self.describe()}")
        except BaseException:
            self.close()
            raise

    # -- the platform end of the IPC socket --------------------------------------------------

    def _read_ipc(self) -> None:
        self._listener.settimeout(STEP_TIMEOUT)
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        self._conn = conn
        buffer = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            *complete, buffer = buffer.split(b"\0")
            for raw in complete:
                self._on_message(json.loads(raw))

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        payload = message.get("payload") or {}
        if kind == "end":
            # Freeze first, bookkeeping after: nothing may run between `end` and the freeze.
            if self.freeze_on_end:
                self.process.freeze()
            invocation = payload["context"]["invocationId"]
            with self._lock:
                self.end_times[invocation] = time.monotonic()
                self.ends.append(payload)
        elif kind == "server-started":
            self.port = int(payload["httpPort"])
        with self._lock:
            self.messages.append(message)

    # -- what a test does ---------------------------------------------------------------------

    def invoke(self, path: str, body: Any = None, method: str = "POST"
               ) -> tuple[int, Any, float, str]:
        """Send one invocation; return (status, body, response seconds, invocation id).

        A frozen function is thawed first, as the platform does for a warm instance.
        """
        self.process.thaw()
        number = next(self._ids)
        invocation = f"inv-{number}"
        headers = {"x-vercel-internal-invocation-id": invocation,
                   "x-vercel-internal-request-id": str(number)}
        status, reply, elapsed = http_request(f"http://127.0.0.1:{self.port}{path}", method,
                                              body, headers)
        return status, reply, elapsed, invocation

    def wait_end(self, invocation: str, timeout: float = STEP_TIMEOUT) -> float:
        """Wait for the ``end`` of ``invocation`` (the function is frozen by then)."""
        def ended() -> float | None:
            with self._lock:
                return self.end_times.get(invocation)
        try:
            return wait_for(ended, timeout, f"IPC end of {invocation}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None

    def logs(self) -> str:
        """What the function wrote through the platform's log channel, decoded."""
        lines = []
        with self._lock:
            messages = list(self.messages)
        for message in messages:
            if message.get("type") == "log":
                lines.append(base64.b64decode(message["payload"]["message"]).decode(
                    "utf-8", "replace"))
        return "".join(lines)

    def describe(self) -> str:
        """Runtime output and IPC log lines, for assertion messages."""
        return f"--- runtime output ---\n{self.process.output()}\n--- ipc logs ---\n{self.logs()}"

    def close(self) -> None:
        """Kill the runtime (frozen or not) and close the socket."""
        self.process.kill()
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        self._listener.close()
        self._reader.join(timeout=STEP_TIMEOUT)
        shutil.rmtree(self._ipc_dir, ignore_errors=True)
