"""Install the real platform runtimes the harnesses run, once, into a cache directory.

Run it directly (``python tests/runtimes/runtimes_setup.py``) to prepare a machine ahead of the
test run; the test fixtures call the same functions and do nothing when all is in place.

- Vercel: a Python 3.12 venv with ``vercel-runtime``, ``vercel`` and this checkout (editable).
- Cloudflare: npm ``pyodide`` (from ``package-lock.json`` here) and the Python sources of
  ``workers-runtime-sdk``.
- Lambda: ``awslambdaric`` runs under the test interpreter itself (the ``dev`` extra).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent.parent

VERCEL_RUNTIME = "vercel-runtime==0.24.1"
VERCEL_SDK = "vercel==0.12.1"
OTEL_SDK = "opentelemetry-sdk==1.45.2"  # for the OpenTelemetry handlers (test_vercel_otel.py)
WORKERS_SDK = "workers-runtime-sdk==1.9.5"
PYODIDE_DIR = HERE / "cloudflare"

# pyenv's layout on the project's machines; SPANLOG_PYTHON312 points elsewhere.
_PYTHON312_CANDIDATES = ("~/.pyenv/versions/3.12.1/bin/python", "/usr/bin/python3.12",
                         "/usr/local/bin/python3.12")


def cache_dir() -> Path:
    """Where installed runtimes live between test sessions (``SPANLOG_RUNTIMES_CACHE``)."""
    root = os.environ.get("SPANLOG_RUNTIMES_CACHE") or "~/.cache/spanlog-runtimes"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(argv: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def python312() -> str:
    """A Python 3.12 interpreter (vercel-runtime needs 3.12 or later)."""
    configured = os.environ.get("SPANLOG_PYTHON312")
    for candidate in ([configured] if configured else []) + list(_PYTHON312_CANDIDATES):
        path = Path(candidate).expanduser()
        if path.exists():
            return str(path)
    raise RuntimeError("no Python 3.12 found; install it (pyenv install 3.12.1) or set "
                       "SPANLOG_PYTHON312 to its path")


def vercel_python() -> Path:
    """The interpreter of a venv holding the Vercel runtime and this checkout of spanlog."""
    # Keyed by the checkout path too: spanlog is installed editable, pointing at it.
    key = hashlib.sha256(f"{VERCEL_RUNTIME} {VERCEL_SDK} {OTEL_SDK} {CHECKOUT}".encode()
                         ).hexdigest()[:12]
    venv = cache_dir() / f"vercel-venv-{key}"
    python = venv / "bin" / "python"
    if (venv / ".ready").exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    _run([python312(), "-m", "venv", str(venv)])
    _run([str(python), "-m", "pip", "install", "-q", VERCEL_RUNTIME, VERCEL_SDK, OTEL_SDK])
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(CHECKOUT)])
    (venv / ".ready").write_text("ok\n")
    return python


def pyodide_package() -> Path:
    """The npm ``pyodide`` package directory, installed from the committed lockfile."""
    package = PYODIDE_DIR / "node_modules" / "pyodide"
    if not (package / "pyodide.asm.wasm").exists():
        _run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PYODIDE_DIR)
    return package


def workers_sdk() -> Path:
    """A directory holding the unpacked Python sources of ``workers-runtime-sdk``."""
    target = cache_dir() / WORKERS_SDK.replace("==", "-")
    if (target / ".ready").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    download = cache_dir() / "downloads"
    download.mkdir(exist_ok=True)
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
          "-d", str(download), WORKERS_SDK])
    name, version = WORKERS_SDK.split("==")
    wheels = sorted(download.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download of {WORKERS_SDK} left no wheel in {download}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(target)
    (target / ".ready").write_text("ok\n")
    return target


if __name__ == "__main__":
    print("vercel python:", vercel_python())
    print("pyodide:", pyodide_package())
    print("workers-runtime-sdk:", workers_sdk())
