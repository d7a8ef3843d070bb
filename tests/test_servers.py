"""Self-test of the local test servers (stdlib clients only)."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.servers.app import pattern, pattern_sha256
from tests.servers.rawsock import (
    Handler,
    RawServer,
    build_response,
    close_after_headers,
    hang,
    read_body_then,
    reset,
    respond,
)
from tests.servers.threaded import ServerThread

RawFactory = Callable[[Handler], RawServer]


def _conn(url: str, timeout: float = 5.0) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1"
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def _request(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = _conn(url)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def _json(url: str, method: str, path: str, **kw: Any) -> Any:
    status, _, body = _request(url, method, path, **kw)
    assert status == 200, body
    return json.loads(body)


def test_pattern() -> None:
    assert pattern(600) == bytes(i % 251 for i in range(600))
    assert pattern(10, 250) == bytes(i % 251 for i in range(250, 260))
    big = pattern(300_000)
    assert big[123_456:123_556] == pattern(100, 123_456)
    assert pattern_sha256(300_000) == hashlib.sha256(big).hexdigest()


def test_bytes(server: ServerThread) -> None:
    with urllib.request.urlopen(f"{server.url}/bytes/200000?type=image/png") as resp:
        data = resp.read()
        assert resp.headers["Content-Length"] == "200000"
        assert resp.headers["Content-Type"] == "image/png"
    assert data == pattern(200_000)


def test_chunked_has_no_content_length(server: ServerThread) -> None:
    status, headers, body = _request(server.url, "GET", "/chunked/70000")
    assert status == 200
    assert headers["Content-Length"] is None
    assert headers["Transfer-Encoding"] == "chunked"
    assert body == pattern(70_000)


def test_truncated_is_short(server: ServerThread) -> None:
    conn = _conn(server.url)
    try:
        conn.request("GET", "/truncated/1000")
        resp = conn.getresponse()
        assert resp.headers["Content-Length"] == "1000"
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == pattern(500)
    finally:
        conn.close()


def test_hang_sends_headers_only(server: ServerThread) -> None:
    conn = _conn(server.url, timeout=0.3)
    try:
        conn.request("GET", "/hang")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.headers["Content-Length"] == "100"
        with pytest.raises(TimeoutError):
            resp.read()
    finally:
        conn.close()


def test_reset(server: ServerThread) -> None:
    conn = _conn(server.url)
    try:
        conn.request("GET", "/reset")
        with pytest.raises(ConnectionResetError):
            conn.getresponse()
    finally:
        conn.close()


def test_upload_multipart(server: ServerThread) -> None:
    boundary = "b0undary"
    payload = pattern(100_000)
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="user"\r\n\r\n'
            "alice\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="a.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    report = _json(
        server.url,
        "POST",
        "/upload",
        body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert report["fields"] == {"user": "alice"}
    assert report["order"] == ["user", "file"]
    assert report["method"] == "POST"
    assert report["content_length"] == len(body)
    assert report["chunked"] is False
    (file,) = report["files"]
    assert file["field"] == "file"
    assert file["filename"] == "a.bin"
    assert file["content_type"] == "application/octet-stream"
    assert file["size"] == len(payload)
    assert file["sha256"] == hashlib.sha256(payload).hexdigest()
    assert _json(server.url, "PUT", "/upload", body=b"xyz")["method"] == "PUT"


def test_redirects_and_status(server: ServerThread) -> None:
    status, headers, _ = _request(server.url, "GET", "/redirect/3?status=307")
    assert (status, headers["Location"]) == (307, "/redirect/2?status=307")
    assert _request(server.url, "GET", "/redirect/0")[2] == b"done"
    status, headers, _ = _request(server.url, "POST", "/redirect-to?url=/upload&status=308")
    assert (status, headers["Location"]) == (308, "/upload")
    assert _request(server.url, "GET", "/redirect-loop")[1]["Location"] == "/redirect-loop"
    assert _request(server.url, "GET", "/status/404")[::2] == (404, b"status 404")
    with urllib.request.urlopen(f"{server.url}/redirect/2") as resp:
        assert resp.read() == b"done"


def test_headers_file_and_concurrency(server: ServerThread) -> None:
    report = _json(server.url, "GET", "/headers", headers={"X-Test": "1"})
    assert report["headers"]["x-test"] == "1"
    status, headers, body = _request(server.url, "GET", "/file/report.pdf")
    assert status == 200
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"] == 'attachment; filename="report.pdf"'
    assert body == pattern(1000)
    _json(server.url, "POST", "/concurrent/reset")
    _json(server.url, "POST", "/concurrent?delay=0.01", body=b"x" * 1000)
    assert _json(server.url, "GET", "/concurrent/stats") == {"max": 1, "current": 0, "total": 1}
    assert _json(server.url, "POST", "/slow-upload?rate=10000000", body=b"y" * 50_000) == {
        "size": 50_000
    }


def test_https_server(https_server: Any) -> None:
    ctx = ssl.create_default_context(cafile=https_server.ca_file)
    with urllib.request.urlopen(f"{https_server.url}/bytes/1000", context=ctx) as resp:
        assert resp.read() == pattern(1000)


def test_raw_respond_and_connections(raw_server: RawFactory) -> None:
    srv = raw_server(respond(build_response(200, b"hello", {"X-Raw": "1"})))
    assert srv.connections == 0
    with urllib.request.urlopen(f"{srv.url}/anything") as resp:
        assert resp.read() == b"hello"
        assert resp.headers["X-Raw"] == "1"
    assert srv.connections == 1
    assert srv.requests[0].startswith(b"GET /anything HTTP/1.1\r\n")
    assert srv.requests[0].endswith(b"\r\n\r\n")


def test_raw_read_body_then(raw_server: RawFactory) -> None:
    handler = read_body_then(build_response(201, b"ok"))
    srv = raw_server(handler)
    status, _, body = _request(srv.url, "POST", "/up", body=b"z" * 300_000)
    assert (status, body) == (201, b"ok")
    assert handler.bodies == [b"z" * 300_000]


def test_raw_faults(raw_server: RawFactory) -> None:
    srv = raw_server(reset())
    with pytest.raises(ConnectionResetError):
        _request(srv.url, "GET", "/")

    srv = raw_server(close_after_headers(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"))
    conn = _conn(srv.url)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead):
            resp.read()
    finally:
        conn.close()

    srv = raw_server(hang())
    with pytest.raises(TimeoutError):
        _request_timeout(srv.url, 0.2)
    assert srv.connections == 1
    start = time.monotonic()
    srv.stop()
    assert time.monotonic() - start < 1.0


def _request_timeout(url: str, timeout: float) -> None:
    conn = _conn(url, timeout=timeout)
    try:
        conn.request("GET", "/")
        conn.getresponse()
    finally:
        conn.close()


def test_raw_server_stops_fast_with_idle_client() -> None:
    with RawServer(hang()) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        assert srv.wait_for_connections(1)
        start = time.monotonic()
    try:
        assert time.monotonic() - start < 1.0
        assert srv.requests == []
    finally:
        sock.close()


def test_httpbin(httpbin_url: str) -> None:
    report = _json(httpbin_url, "GET", "/get?a=1")
    assert report["args"] == {"a": "1"}
