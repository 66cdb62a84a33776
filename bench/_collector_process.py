"""What the benchmarks share: a collector in a process of its own, and spanlog's bytecode.

Imported by the scripts in this folder (run as ``python3 bench/NAME.py``, so this folder is
on ``sys.path``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any


def start_collector(workdir: str, *extra: str) -> tuple[subprocess.Popen[str], str, Any]:
    """``python -m spanlog.server`` on a free loopback port (``extra``: more flags, e.g.
    ``--workers 0``); the process, its URL and its log file (closed by stop_collector)."""
    log = open(os.path.join(workdir, "collector.log"), "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "spanlog.server", "--port", "0", "--db",
         os.path.join(workdir, "bench.sqlite3"), "--log-level", "warning", *extra],
        stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # ends when the process does
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return proc, match.group(1), log
    log.close()
    with open(os.path.join(workdir, "collector.log")) as fh:
        raise RuntimeError(f"the collector did not start: {fh.read()[-2000:]}")


def stop_collector(proc: subprocess.Popen[str], log: Any) -> None:
    """Stop a collector from :func:`start_collector` and close its log."""
    proc.terminate()
    try:
        proc.wait(30)
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()


def compile_spanlog(where: str) -> str:
    """Give the measured processes spanlog's bytecode, as ``pip install`` does: drop
    ``PYTHONDONTWRITEBYTECODE`` from the environment they inherit and compile the package
    at ``where`` into its ``__pycache__`` (else, with that variable set, every fresh process
    would compile spanlog from source while the installed packages load their bytecode)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run([sys.executable, "-m", "compileall", "-q", where],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        return (f"bytecode: could not compile {where} ({done.stdout.strip()[-200:]}); "
                "spanlog may be compiled from source in every process")
    return f"bytecode: {where} compiled (python -m compileall), PYTHONDONTWRITEBYTECODE unset"
