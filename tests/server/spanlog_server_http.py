"""Helpers for the collector's tests: raw HTTP calls, `spanlog serve` as a subprocess."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any


def call(url: str, method: str, path: str, body: Any = None, *, token: str | None = None,
         raw: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, Any]:
    """One HTTP request; returns (status, decoded JSON body or None). Never raises on 4xx/5xx."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url + path, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        try:
            text = exc.read()
        finally:
            exc.close()
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, text.decode("utf-8", "replace")


def start_serve(db: str, *args: str,
                stderr: int | None = None) -> tuple[subprocess.Popen[str], str, str]:
    """`spanlog serve` on a free port as a subprocess, once listening: it, its URL, its banner.
    ``stderr=subprocess.PIPE`` keeps its log for :func:`until_logged`."""
    proc = subprocess.Popen([sys.executable, "-m", "spanlog.server", "--port", "0", "--db", db,
                             "--log-level", "warning", *args], stdout=subprocess.PIPE,
                            stderr=stderr, text=True)
    assert proc.stdout is not None
    banner = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        banner += line
        match = re.search(r"listening on (http://\S+)", banner)
        if match and "Ctrl-C" in line:
            return proc, match.group(1), banner
        if not line and proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    raise AssertionError(f"spanlog serve did not start: {banner}")


def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` (every 10 ms) until it holds; fail naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)  # polling interval between condition checks, not a wait


def until_logged(proc: subprocess.Popen[Any], pattern: str, timeout: float = 30.0) -> str:
    """Read the log of ``proc`` (its stderr, a pipe) until a line matches the regular
    expression ``pattern``; return that line. Fails after ``timeout`` seconds or when ``proc``
    ends first."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()  # read raw: the pipe's buffered reader would hide lines from select
    regex = re.compile(pattern)
    seen = b""
    deadline = time.monotonic() + timeout
    while True:
        *lines, seen = seen.split(b"\n")
        for line in lines:
            text = line.decode(errors="replace")
            if regex.search(text):
                return text
        left = deadline - time.monotonic()
        assert left > 0, f"no log line matching {pattern!r} within {timeout} s"
        if select.select([fd], [], [], min(left, 0.5))[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"the collector ended before logging a line matching {pattern!r}"
            seen += chunk
