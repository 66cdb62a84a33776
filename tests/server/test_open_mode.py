"""Open mode (loopback, no keys) serves this machine's SDKs and curl, not web pages of other
sites: unknown Host names (DNS rebinding) and cross-site writes are refused
(docs/collector.md, open mode)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from spanlog.server.http._context import Settings
from spanlog.server.http._runner import BackgroundCollector

ROWS = json.dumps({"rows": [{"id": "a", "project_name": "p"}]}).encode()


def raw_request(port: int, method: str, path: str, headers: dict[str, str],
                body: bytes = b"") -> tuple[int, dict[str, object] | None]:
    """One HTTP/1.1 request with exactly ``headers`` (Host included) over a raw socket."""
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()),
             f"Content-Length: {len(body)}", "Connection: close", "", ""]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, None


@pytest.fixture
def server(tmp_path: Path) -> BackgroundCollector:
    with BackgroundCollector(str(tmp_path / "open.sqlite3"),
                             settings=Settings(public_url="https://logs.example.com/")) as s:
        yield s


@pytest.mark.parametrize("host", ["evil.example:8700", "attacker.test", "127.0.0.2",
                                  "localhost.evil.example"])
def test_an_unknown_host_is_refused(server: BackgroundCollector, host: str) -> None:
    for method, path, body in (("GET", "/v1/project", b""), ("POST", "/logs3", ROWS),
                               ("GET", "/", b"")):
        status, answer = raw_request(server.port, method, path, {"Host": host}, body)
        assert status == 403, (method, path, status, answer)
        assert answer is not None and "Host" in str(answer["error"])


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "localhost",
                                  "[::1]:{port}", "logs.example.com", "LOCALHOST"])
def test_the_collectors_own_names_are_served(server: BackgroundCollector, host: str) -> None:
    host = host.format(port=server.port)
    assert raw_request(server.port, "GET", "/v1/project", {"Host": host})[0] == 200
    assert raw_request(server.port, "POST", "/logs3", {"Host": host}, ROWS)[0] == 200


@pytest.mark.parametrize("headers", [
    {"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://evil.example",
     "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
    {"Content-Type": "text/plain"},
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "same-site"},
    {"Content-Type": "application/x-www-form-urlencoded", "Referer": "https://evil.example/"},
    {"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Mode": "no-cors"},
    {"Content-Type": "multipart/form-data; boundary=x"},
])
def test_a_cross_site_write_is_refused(server: BackgroundCollector,
                                       headers: dict[str, str]) -> None:
    base = {"Host": f"127.0.0.1:{server.port}"}
    for path in ("/logs3", "/v1/project"):
        body = ROWS if path == "/logs3" else b'{"name": "p2"}'
        status, answer = raw_request(server.port, "POST", path, {**base, **headers}, body)
        assert status == 403, (path, headers, status, answer)
    assert raw_request(server.port, "GET", "/v1/project", base)[1] == {"objects": []}


@pytest.mark.parametrize("headers", [
    {},  # curl --data-binary, the braintrust SDK without a type
    {"Content-Type": "application/json"},
    {"Content-Type": "application/json", "Origin": "http://127.0.0.1:{port}",
     "Sec-Fetch-Site": "same-origin"},  # the viewer
    {"Content-Type": "application/json", "Sec-Fetch-Site": "none"},
    # Python's urllib and `curl -d` label JSON as a form.
    {"Content-Type": "application/x-www-form-urlencoded"},
])
def test_sdks_curl_and_the_viewer_still_write(server: BackgroundCollector,
                                              headers: dict[str, str]) -> None:
    base = {"Host": f"127.0.0.1:{server.port}"}
    filled = {k: v.format(port=server.port) for k, v in headers.items()}
    status, answer = raw_request(server.port, "POST", "/logs3", {**base, **filled}, ROWS)
    assert status == 200, answer


def test_a_collector_with_keys_does_not_check_names(tmp_path: Path) -> None:
    from spanlog.server.http._auth import create_key
    from spanlog.server.store._records import DEFAULT_ORG
    with BackgroundCollector(str(tmp_path / "keyed.sqlite3")) as server:
        _, token = server.call(lambda: create_key(server.store, DEFAULT_ORG))
        status, _ = raw_request(server.port, "GET", "/v1/project",
                                {"Host": "collector.internal", "Authorization": f"Bearer {token}"})
        assert status == 200


def test_urls_handed_out_do_not_reflect_the_host_header(tmp_path: Path) -> None:
    with BackgroundCollector(str(tmp_path / "u.sqlite3")) as server:
        base = {"Host": f"localhost:{server.port}", "X-Forwarded-Host": "evil.example"}
        status, answer = raw_request(server.port, "POST", "/api/apikey/login", base)
        assert status == 200 and answer is not None
        assert answer["org_info"][0]["api_url"] == server.url  # type: ignore[index]
        status, answer = raw_request(server.port, "POST", "/logs3/overflow", base,
                                     b'{"size_bytes": 10}')
        assert status == 200 and answer is not None
        assert str(answer["signedUrl"]).startswith(server.url + "/logs3/overflow/")
    with BackgroundCollector(str(tmp_path / "v.sqlite3"),
                             settings=Settings(public_url="https://logs.example.com/")) as server:
        status, answer = raw_request(server.port, "POST", "/api/apikey/login",
                                     {"Host": f"127.0.0.1:{server.port}"})
        assert answer is not None
        assert answer["org_info"][0]["api_url"] == "https://logs.example.com"  # type: ignore[index]
