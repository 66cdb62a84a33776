"""``python -m spanlog.server``: the same as ``spanlog serve`` (same flags)."""

from __future__ import annotations

import sys

from spanlog.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
