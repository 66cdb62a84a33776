"""One request to a collector's HTTP API for the command line (``spanlog logs``, ``spanlog
export``): the key as a bearer token, and an error answer raised with its message."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def open_api(url: str, key: str | None, method: str, path: str, body: Any = None,
             timeout: float = 30) -> Any:
    """The response to ``method path`` on the collector at ``url`` (a context manager);
    RuntimeError("<status>: <the collector's error message>") for an error answer."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method,
                                 headers=headers)
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", "")
        except ValueError:
            detail = exc.reason
        finally:
            exc.close()
        raise RuntimeError(f"{exc.code}: {detail}") from None
