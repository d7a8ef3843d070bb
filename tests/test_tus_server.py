"""The test infrastructure for resumable uploads works: the tus reference server
(:mod:`tests.servers.tus`) speaks tus 1.0 as the client will see it, and the proxy
(:mod:`tests.servers.cutproxy`) counts bytes and cuts a connection at an exact byte.

Plain ``http.client`` and raw sockets only, not wxtransfer. The fixtures are here, not in
conftest.py, so that only these tests (and the client's, importing them) start node.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.servers.cutproxy import CutProxy
from tests.servers.tus import TusServer

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 10.0
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}


@pytest.fixture(scope="module")
def tus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    """The tus reference server on 127.0.0.1, store in a temporary folder."""
    srv = TusServer(tmp_path_factory.mktemp("tus"))
    try:
        srv.start()
    except FileNotFoundError as exc:
        pytest.skip(f"no node/npm here ({exc}); make test installs them")
    try:
        yield srv
    finally:
        srv.stop()


# --------------------------------------------------------------------------- helpers


Answer = tuple[int, dict[str, str], bytes]


def request(url: str, method: str, headers: dict[str, str], body: bytes = b"") -> Answer:
    """One request on a new connection: (status, lower-cased headers, body)."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1"
    conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=TIMEOUT)
    try:
        conn.request(method, parts.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def create(url: str, length: int) -> str:
    status, headers, _ = request(url, "POST", {**TUS, "Upload-Length": str(length)})
    assert status == 201
    return headers["location"]


def offset_of(location: str) -> int:
    status, headers, _ = request(location, "HEAD", TUS)
    assert status == 200
    return int(headers["upload-offset"])


def settled_offset(location: str, want: int, within: float = TIMEOUT) -> int:
    """HEAD until the offset is ``want`` (the server may still be writing), or give up."""
    deadline = time.monotonic() + within
    while True:
        got = offset_of(location)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def via(proxy: CutProxy, url: str) -> str:
    """The same URL, through the proxy."""
    return proxy.url_for(urlsplit(url).path)


def payload(n: int) -> bytes:
    return os.urandom(n)


def raw_patch_head(location: str, offset: int, length: int) -> bytes:
    parts = urlsplit(location)
    return (
        f"PATCH {parts.path} HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\n"
        "Tus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\n"
        f"Upload-Offset: {offset}\r\n"
        f"Content-Length: {length}\r\n"
        "\r\n"
    ).encode()


def send_until_cut(port: int, data: bytes) -> str:
    """Send ``data`` on a new connection, read; how the connection ended ("reset"/"eof")."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(data)
            answer = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        return "eof" if not answer else f"answer {answer[:40]!r}"


def proxy_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("cutproxy-")]


# --------------------------------------------------------------------------- the server


def test_post_creates_an_upload(tus: TusServer) -> None:
    status, headers, _ = request(tus.url, "POST", {**TUS, "Upload-Length": "1000"})
    assert status == 201
    assert headers["tus-resumable"] == "1.0.0"
    match = re.fullmatch(
        rf"http://127\.0\.0\.1:{tus.port}/files/([0-9a-f]{{32}})", headers["location"]
    )
    assert match, headers["location"]
    upload = tus.upload(match.group(1))
    assert (upload.offset, upload.length) == (0, 1000)
    assert (tus.store / upload.id).is_file()


def test_post_without_tus_resumable_is_refused(tus: TusServer) -> None:
    status, _, _ = request(tus.url, "POST", {"Upload-Length": "10"})
    assert status == 412


def test_patch_everything_stores_identical_bytes(tus: TusServer) -> None:
    data = payload(3 * 1024 * 1024 + 17)
    location = create(tus.url, len(data))
    status, headers, _ = request(location, "PATCH", {**OCTETS, "Upload-Offset": "0"}, data)
    assert status == 204
    assert headers["upload-offset"] == str(len(data))
    upload_id = location.rsplit("/", 1)[1]
    stored = (tus.store / upload_id).read_bytes()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
    assert tus.upload(upload_id).offset == len(data)


def test_head_reports_offset_and_length(tus: TusServer) -> None:
    data = payload(10_000)
    location = create(tus.url, len(data))
    status, headers, _ = request(location, "HEAD", TUS)
    assert status == 200
    assert (headers["upload-offset"], headers["upload-length"]) == ("0", "10000")
    assert headers["cache-control"] == "no-store"
    status, _, _ = request(location, "PATCH", {**OCTETS, "Upload-Offset": "0"}, data[:4000])
    assert status == 204
    assert offset_of(location) == 4000
    # A PATCH at the wrong offset is refused and changes nothing.
    status, _, _ = request(location, "PATCH", {**OCTETS, "Upload-Offset": "0"}, data[:10])
    assert status == 409
    status, headers, _ = request(
        location, "PATCH", {**OCTETS, "Upload-Offset": "4000"}, data[4000:]
    )
    assert (status, headers["upload-offset"]) == (204, "10000")
    assert (tus.store / location.rsplit("/", 1)[1]).read_bytes() == data


def test_unknown_upload_is_404(tus: TusServer) -> None:
    status, _, _ = request(tus.url + "0" * 32, "HEAD", TUS)
    assert status == 404


# --------------------------------------------------------------------------- the server, cut


@pytest.mark.parametrize("keep", [1, 65_536, 300_001])
def test_cut_patch_keeps_the_bytes_it_received(tus: TusServer, keep: int) -> None:
    """What @tus/server keeps of a PATCH cut after ``keep`` body bytes: exactly those.

    The proxy forwards head + ``keep`` body bytes, then RSTs the client and closes toward
    the server with a FIN; the server writes what it got and the offset becomes ``keep``
    (it may take a moment: HEAD until it does). Resuming from there completes the upload.
    """
    data = payload(1024 * 1024)
    location = create(tus.url, len(data))
    head = raw_patch_head(location, 0, len(data))
    with CutProxy("127.0.0.1", tus.port, cut_after=len(head) + keep, cuts=1) as proxy:
        ended = send_until_cut(proxy.port, head + data)
        assert ended == "reset"
        assert proxy.connections == [len(head) + keep]
        assert proxy.cut == [True]
        assert settled_offset(location, keep) == keep
        upload_id = location.rsplit("/", 1)[1]
        assert (tus.store / upload_id).read_bytes() == data[:keep]
        # The next connection through the proxy is not cut: resume there.
        status, headers, _ = request(
            via(proxy, location), "PATCH", {**OCTETS, "Upload-Offset": str(keep)}, data[keep:]
        )
        assert (status, headers["upload-offset"]) == (204, str(len(data)))
        assert proxy.cut == [True, False]
    assert (tus.store / upload_id).read_bytes() == data


def test_cut_after_the_whole_patch_loses_only_the_answer(tus: TusServer) -> None:
    """Cut right after the last body byte: the server stores everything and answers 204,
    but the client never sees that answer (it gets an RST); HEAD tells it is complete."""
    data = payload(200_000)
    location = create(tus.url, len(data))
    head = raw_patch_head(location, 0, len(data))
    with CutProxy("127.0.0.1", tus.port, cut_after=len(head) + len(data), cuts=1) as proxy:
        assert send_until_cut(proxy.port, head + data) == "reset"
        assert proxy.sent_down == 0
    assert settled_offset(location, len(data)) == len(data)
    assert (tus.store / location.rsplit("/", 1)[1]).read_bytes() == data


def test_cut_patch_with_rst_to_the_server_keeps_at_most_what_was_sent(tus: TusServer) -> None:
    """With an RST toward the server too, bytes still in its socket buffer may be lost:
    the offset is then anywhere from 0 to the bytes forwarded, never more."""
    data = payload(1024 * 1024)
    location = create(tus.url, len(data))
    head = raw_patch_head(location, 0, len(data))
    keep = 500_000
    with CutProxy(
        "127.0.0.1", tus.port, cut_after=len(head) + keep, cuts=1, rst_upstream=True
    ) as proxy:
        assert send_until_cut(proxy.port, head + data) == "reset"
        time.sleep(0.5)
        kept = offset_of(location)
    assert 0 <= kept <= keep
    assert (tus.store / location.rsplit("/", 1)[1]).read_bytes() == data[:kept]


def test_location_through_a_proxy_points_at_the_proxy(tus: TusServer) -> None:
    with CutProxy("127.0.0.1", tus.port) as proxy:
        location = create(via(proxy, tus.url), 5)
        assert location.startswith(f"http://127.0.0.1:{proxy.port}/files/")
        status, _, _ = request(location, "PATCH", {**OCTETS, "Upload-Offset": "0"}, b"hello")
        assert status == 204
        assert len(proxy.connections) == 2


# --------------------------------------------------------------------------- the proxy


class _Sink:
    """A plain TCP server (no HTTP): records what each connection sends, answers b"ok"
    when the client half-closes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.stopping = threading.Event()
        self.port: int = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.ends: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with sock:
                sock.settimeout(TIMEOUT)
                got = bytearray()
                end = "eof"
                try:
                    while chunk := sock.recv(65536):
                        got += chunk
                    sock.sendall(b"ok")
                except OSError as exc:
                    end = type(exc).__name__
                self.received.append(bytes(got))
                self.ends.append(end)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(TIMEOUT)
        self.listener.close()


@pytest.fixture
def sink() -> Iterator[_Sink]:
    srv = _Sink()
    try:
        yield srv
    finally:
        srv.close()


def _wait_for(predicate: Callable[[], bool], within: float = TIMEOUT) -> None:
    deadline = time.monotonic() + within
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_proxy_forwards_and_counts_bytes(sink: _Sink) -> None:
    sizes = [0, 1, 100_000, 2 * 1024 * 1024 + 3]
    blobs = [payload(n) for n in sizes]
    with CutProxy("127.0.0.1", sink.port) as proxy:
        for blob in blobs:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as sock:
                sock.sendall(blob)
                sock.shutdown(socket.SHUT_WR)
                assert sock.recv(16) == b"ok"
                assert sock.recv(16) == b""
        _wait_for(lambda: len(sink.received) == len(blobs))
        assert sink.received == blobs
        assert proxy.connections == sizes
        assert proxy.sent_up == sum(sizes)
        assert proxy.sent_down == 2 * len(blobs)
        assert proxy.cut == [False] * len(blobs)
    assert proxy_threads() == []
    assert proxy.errors == []


def test_proxy_counts_http_requests_exactly(tus: TusServer) -> None:
    location = create(tus.url, 3)
    req = (
        f"HEAD {urlsplit(location).path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Tus-Resumable: 1.0.0\r\nConnection: close\r\n\r\n"
    ).encode()
    with CutProxy("127.0.0.1", tus.port) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as sock:
            sock.sendall(req)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        assert b"\r\nupload-offset: 0\r\n" in answer.lower()
        assert proxy.connections == [len(req)]
        assert proxy.sent_up == len(req)
        _wait_for(lambda: proxy.sent_down == len(answer))
        assert proxy.sent_down == len(answer)


@pytest.mark.parametrize("cut_after", [1, 1000, 65_536, 65_537, 700_001])
def test_proxy_cuts_at_the_exact_byte(sink: _Sink, cut_after: int) -> None:
    blob = payload(1024 * 1024)
    with CutProxy("127.0.0.1", sink.port, cut_after=cut_after, cuts=1) as proxy:
        assert send_until_cut(proxy.port, blob) == "reset"
        _wait_for(lambda: len(sink.received) == 1)
        assert sink.received == [blob[:cut_after]]
        assert proxy.connections == [cut_after]
        assert proxy.sent_up == cut_after
        _wait_for(lambda: proxy.cut == [True])
        assert proxy.cut == [True]
    assert proxy_threads() == []
    assert proxy.errors == []


@pytest.mark.parametrize(("cuts", "want"), [(1, [True, False, False]), (2, [True, True, False])])
def test_proxy_cuts_only_the_first_connections(sink: _Sink, cuts: int, want: list[bool]) -> None:
    blob = payload(50_000)
    with CutProxy("127.0.0.1", sink.port, cut_after=10_000, cuts=cuts) as proxy:
        for expect_cut in want:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as sock:
                try:
                    sock.sendall(blob)
                    sock.shutdown(socket.SHUT_WR)
                    answer = sock.recv(16)
                except (ConnectionResetError, BrokenPipeError):
                    answer = b"reset"
            assert answer == (b"reset" if expect_cut else b"ok")
        _wait_for(lambda: len(sink.received) == len(want))
        assert proxy.cut == want
        assert proxy.connections == [10_000 if c else 50_000 for c in want]
        assert sink.received == [blob[:10_000] if c else blob for c in want]


def test_proxy_cuts_every_connection_with_minus_one(sink: _Sink) -> None:
    with CutProxy("127.0.0.1", sink.port, cut_after=5, cuts=-1) as proxy:
        for _ in range(3):
            assert send_until_cut(proxy.port, b"0123456789") == "reset"
        _wait_for(lambda: len(sink.received) == 3)
        assert sink.received == [b"01234"] * 3
        assert proxy.connections == [5, 5, 5]
        assert proxy.sent_up == 15


def test_proxy_connection_shorter_than_cut_after_is_not_cut(sink: _Sink) -> None:
    with CutProxy("127.0.0.1", sink.port, cut_after=100, cuts=-1) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"x" * 99)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(16) == b"ok"
        _wait_for(lambda: len(sink.received) == 1)
        assert proxy.connections == [99]
        assert proxy.cut == [False]


def test_proxy_stop_ends_open_connections(sink: _Sink) -> None:
    proxy = CutProxy("127.0.0.1", sink.port, idle_timeout=60).start()
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT)
    try:
        client.sendall(b"half a request")
        _wait_for(lambda: proxy.sent_up == 14)
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 2
        assert proxy_threads() == []
        assert client.recv(16) in (b"", b"ok")
    finally:
        client.close()


def test_proxy_to_nothing_closes_the_client() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with CutProxy("127.0.0.1", port) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as sock:
            try:
                got = sock.recv(16)
            except ConnectionResetError:
                got = b""
            assert got == b""
    assert proxy.connections == [0]


def test_tus_server_stops_by_pid(tmp_path: Path) -> None:
    try:
        srv = TusServer(tmp_path).start()
    except FileNotFoundError as exc:
        pytest.skip(f"no node/npm here ({exc})")
    pid = srv.pid
    assert create(srv.url, 1).startswith(srv.url)
    srv.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
