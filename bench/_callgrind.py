"""What bench/instructions.py and bench/collector_instructions.py share: running a process
under ``valgrind --tool=callgrind`` and reading how many instructions it executed."""

from __future__ import annotations

import glob
import os
import sys


def command(out_dir: str, *args: str) -> list[str]:
    """The command line that runs ``python args...`` under callgrind, its output in
    ``out_dir``, one file per thread (the interpreter itself, not a wrapper script: pyenv
    shims are shell scripts)."""
    return ["valgrind", "--tool=callgrind", "--separate-threads=yes",
            f"--callgrind-out-file={out_dir}/callgrind.%p", os.path.realpath(sys.executable),
            *args]


def total(out_dir: str, what: str) -> int:
    """The instructions of the one process whose callgrind output is in ``out_dir``, all its
    threads together."""
    outs = glob.glob(os.path.join(out_dir, "callgrind.*-[0-9][0-9]"))
    if not outs:
        raise RuntimeError(f"no callgrind output of {what}")
    return sum(_summary(out, what) for out in outs)


def main_thread(out_dir: str, what: str) -> int:
    """The instructions of the main thread of the process whose output is in ``out_dir``."""
    [out] = glob.glob(os.path.join(out_dir, "callgrind.*-01"))
    return _summary(out, what)


def _summary(out: str, what: str) -> int:
    with open(out) as fh:
        for line in fh:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError(f"no summary in the callgrind output of {what}")
