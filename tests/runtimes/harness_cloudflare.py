"""Drive ``cloudflare/harness.mjs``: a Python Worker in real Pyodide under Node.

The harness keeps one Pyodide instance (a warm isolate) and runs one invocation per
:meth:`Worker.invoke`: response, then the wait for every ``ctx.waitUntil`` promise, then the
teardown after which ``fetch`` rejects. It reports each step on stdout and waits for the next
command, so the test looks at the collector at the teardown moment.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from harness_common import STEP_TIMEOUT

HARNESS = Path(__file__).resolve().parent / "cloudflare" / "harness.mjs"

# Loading Pyodide takes a few seconds on a busy machine.
READY_TIMEOUT = 120.0


class Worker:
    """One Node process running a Python Worker module in Pyodide."""

    def __init__(self, worker_dir: Path, module: str, env: dict[str, str],
                 python_environ: dict[str, str], workers_sdk: Path, spanlog_package: Path,
                 workdir: Path, settle_timeout: float = STEP_TIMEOUT) -> None:
        fd, config_path = tempfile.mkstemp(prefix="worker-", suffix=".json", dir=workdir)
        with os.fdopen(fd, "w") as f:
            json.dump({"workerDir": str(worker_dir), "module": module, "env": env,
                       "pythonEnviron": python_environ, "workersSdk": str(workers_sdk),
                       "spanlogPackage": str(spanlog_package),
                       "settleTimeoutMs": int(settle_timeout * 1000)}, f)
        self._stderr_path = os.path.join(workdir, f"{Path(config_path).stem}.log")
        self._stderr = open(self._stderr_path, "wb")
        self.proc = subprocess.Popen(["node", str(HARNESS), config_path],
                                     cwd=HARNESS.parent, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr)
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.ready = self._expect("ready", READY_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self._events.put(json.loads(line))
        self._events.put(None)

    def _expect(self, kind: str, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {kind!r} from the worker harness within {timeout:g}s\n"
                                 f"{self.output()}") from None
        if event is None or event.get("event") != kind:
            raise AssertionError(f"expected {kind!r} from the worker harness, got {event}\n"
                                 f"{self.output()}")
        return event

    def _send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()

    def invoke(self, path: str, body: Any = None, method: str = "POST"
               ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run one invocation to its teardown; return the response and teardown events.

        The harness then waits for the next command, so the collector can be inspected as it
        is at the end of the invocation.
        """
        self._send({"request": {"path": path, "method": method, "body": body}})
        response = self._expect("response")
        return response, self._expect("teardown")

    def fetches_after_teardown(self) -> int:
        """How many times Python called ``fetch`` after an invocation was torn down."""
        self._send({"status": True})
        return int(self._expect("status")["fetchesAfterTeardown"])

    def output(self) -> str:
        """What Python and the harness printed (stderr)."""
        if not self._stderr.closed:
            self._stderr.flush()
        with open(self._stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def close(self) -> dict[str, Any] | None:
        """Ask the harness to exit (killing it if it will not); return its exit report."""
        report = None
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, AssertionError):
                self._send({"exit": True})
                report = self._expect("exit")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STEP_TIMEOUT)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STEP_TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._reader.join(timeout=STEP_TIMEOUT)
        self._stderr.close()
        return report
