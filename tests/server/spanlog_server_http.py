"""Helpers for the collector's tests: raw HTTP calls, `spanlog serve` as a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
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


def start_serve(db: str, *args: str) -> tuple[subprocess.Popen[str], str, str]:
    """`spanlog serve` on a free port as a subprocess, once listening: it, its URL, its banner."""
    proc = subprocess.Popen([sys.executable, "-m", "spanlog.server", "--port", "0", "--db", db,
                             "--log-level", "warning", *args], stdout=subprocess.PIPE, text=True)
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
