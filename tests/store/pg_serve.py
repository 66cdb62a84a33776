"""`spanlog serve --postgres URL` as a subprocess, for the store suite's CLI tests."""

from __future__ import annotations

import re
import select
import signal
import subprocess
import sys
import time


def start_serve(url: str, *args: str, timeout: float = 60.0,
                stderr: int | None = None) -> tuple[subprocess.Popen[bytes], str, str]:
    """Start `spanlog serve --postgres url` on a free port; once it listens, return the
    process, its base URL and its banner. ``stderr=subprocess.PIPE`` keeps its log."""
    proc = subprocess.Popen([sys.executable, "-m", "spanlog.cli", "serve", "--port", "0",
                             "--log-level", "warning", "--postgres", url, *args],
                            stdout=subprocess.PIPE, stderr=stderr)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    banner = b""
    while b"Ctrl-C" not in banner:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            stop(proc)
            raise AssertionError(f"spanlog serve did not start (exit {proc.returncode}): "
                                 f"{banner.decode(errors='replace')}")
        if select.select([proc.stdout], [], [], min(left, 0.5))[0]:
            banner += proc.stdout.read1(4096)
    text = banner.decode()
    match = re.search(r"listening on (http://\S+)", text)
    assert match, text
    return proc, match.group(1), text


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM ``proc`` (kill it after 30 s), close its pipes; return its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return code
