"""Clients that trickle their requests ("slowloris") are cut off at the documented
deadlines, and cannot crowd out a client that sends (docs/collector.md, "What it
guarantees")."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from spanlog_server_http import call

from spanlog.server.http._context import Settings
from spanlog.server.http._guard import BODY_GRACE, HEADER_TIMEOUT
from spanlog.server.http._runner import BackgroundCollector


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536, socket.MSG_DONTWAIT) == b"" or False
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.slow  # about 14 s: 60 trickling clients, held until the collector closes them
def test_trickling_clients_are_closed_and_others_served(tmp_path: Path) -> None:
    settings = Settings(max_connections=50)
    with BackgroundCollector(str(tmp_path / "slow.sqlite3"), settings=settings) as server:
        head = (f"POST /logs3 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n").encode()
        socks: list[tuple[socket.socket, bytes, float]] = []
        started = time.monotonic()
        for i in range(60):
            sock = socket.create_connection(("127.0.0.1", server.port))
            # Half trickle their headers, half a body after complete headers.
            if i % 2:
                sock.sendall(head)
                socks.append((sock, b'{"rows":[' + b" " * 100000, started))
            else:
                socks.append((sock, head, started))
        closed_after: dict[int, float] = {}
        sent = 0
        served = []
        deadline = max(HEADER_TIMEOUT, BODY_GRACE) + 6
        while len(closed_after) < len(socks) and time.monotonic() - started < deadline + 10:
            for i, (sock, payload, _) in enumerate(socks):
                if i in closed_after:
                    continue
                if _closed(sock):
                    closed_after[i] = time.monotonic() - started
                    continue
                try:
                    sock.send(payload[sent:sent + 1])
                except OSError:
                    closed_after[i] = time.monotonic() - started
            sent += 1
            if len(served) < 3:  # a normal client, while the trickling ones hold on
                status, _ = call(server.url, "POST", "/logs3", timeout=5, raw=json.dumps(
                    {"rows": [{"id": f"ok{sent}", "project_name": "p"}]}).encode(),
                    headers={"Content-Type": "application/json"})
                served.append(status)
            time.sleep(2)
        for sock, _, _ in socks:
            sock.close()
        assert served == [200, 200, 200]
        assert len(closed_after) == 60, f"{60 - len(closed_after)} trickling clients still open"
        assert max(closed_after.values()) < deadline, sorted(closed_after.values())


def test_a_trickling_overflow_upload_gets_408(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The overflow upload's PUT has the body deadline of every other request."""
    import spanlog.server.http._body as body

    monkeypatch.setattr(body, "BODY_GRACE", 1.0)  # the rule as documented, sooner
    with BackgroundCollector(str(tmp_path / "put.sqlite3")) as server:
        status, grant = call(server.url, "POST", "/logs3/overflow", {"size_bytes": 100000},
                             headers={"Content-Type": "application/json"})
        assert status == 200, grant
        path = grant["signedUrl"][len(server.url):]
        sock = socket.create_connection(("127.0.0.1", server.port))
        try:
            sock.sendall((f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                          "Content-Length: 100000\r\n\r\n").encode())
            # One byte every 0.1 s (the wait for the answer paces it), far below the rate.
            sock.settimeout(0.1)
            answer = b""
            started = time.monotonic()
            while not answer and time.monotonic() - started < 10:
                sock.send(b"x")
                try:
                    answer = sock.recv(65536)
                except TimeoutError:
                    continue
            elapsed = time.monotonic() - started
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 408"), (elapsed, answer[:200])
        assert b"KiB/s" in answer, answer
        assert elapsed < 5, elapsed
