"""The dev server (``wxtransfer._server``) against malformed bodies and vanishing clients.

Everything goes over real sockets on 127.0.0.1: byte-exact requests from
:func:`socket.create_connection`, clients that close (FIN) or reset (RST) half-way through
an upload, and ``wxtransfer serve`` as a subprocess whose stderr is read. Each test checks
the reply, that nothing was stored under the root, that no traceback was logged, and the
access log (one line per request).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import wxtransfer._server
from tests.server_checks import ACCESS, access_lines, rst_close, troubles, wait_until
from wxtransfer._server import DevServer

pytestmark = pytest.mark.timeout(60)

SRC_DIR = str(Path(wxtransfer._server.__file__).resolve().parents[1])
# 127.0.0.1 "POST /upload" 200 1234 B 12.3 ms
LINE = re.compile(r'(\S+) "(\S+) (\S+)" (\d{3}) (\d+) B (\d+\.\d) ms')
# 127.0.0.1 "POST /upload" - - 812.4 ms client disconnected
GONE = re.compile(r'(\S+) "(\S+) (\S+)" - - (\d+\.\d) ms client disconnected')
SOCKET_TIMEOUT = 10.0


# --------------------------------------------------------------------------- helpers


def stored_files(root: Path) -> list[str]:
    """Every file anywhere under ``root`` (the state directories included)."""
    return sorted(
        str(Path(dirpath, name).relative_to(root))
        for dirpath, _, names in os.walk(root)
        for name in names
    )


def part(headers: bytes, body: bytes, boundary: bytes = b"zzz") -> bytes:
    return b"--" + boundary + b"\r\n" + headers + b"\r\n" + body + b"\r\n"


def multipart(*parts: bytes, boundary: bytes = b"zzz") -> bytes:
    return b"".join(parts) + b"--" + boundary + b"--\r\n"


def file_headers(filename: bytes = b"a.bin", name: bytes = b"f") -> bytes:
    return b'Content-Disposition: form-data; name="' + name + b'"; filename="' + filename + b'"\r\n'


def upload_head(length: int, *extra: bytes, boundary: bytes = b"zzz") -> bytes:
    lines = [
        b"POST /upload HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Content-Type: multipart/form-data; boundary=" + boundary,
        b"Content-Length: " + str(length).encode(),
        b"Connection: close",
        *extra,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def read_to_eof(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes (bounded in time and size)."""
    data = bytearray()
    deadline = time.monotonic() + SOCKET_TIMEOUT
    while len(data) < limit and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response: {raw[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` byte for byte (it asks for ``Connection: close``), read the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(request)
        return parse_response(read_to_eof(sock))


def post_upload(port: int, body: bytes, *extra: bytes) -> tuple[int, Any]:
    status, headers, reply = exchange(port, upload_head(len(body), *extra) + body)
    assert headers.get("content-type", "").startswith("application/json"), (status, reply)
    return status, json.loads(reply)


def assert_no_trouble(caplog: pytest.LogCaptureFixture) -> None:
    assert troubles(caplog) == []


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=ACCESS)
    return caplog


@pytest.fixture
def dev(root: Path, logs: pytest.LogCaptureFixture) -> Iterator[DevServer]:
    with DevServer(root) as srv:
        yield srv


# --------------------------------------------------------------------------- malformed bodies

GOOD_FILE = part(file_headers(b"good.bin"), b"a complete file")

MALFORMED = {
    # The first case: a line inside a part's headers without a colon.
    "header without colon": (
        multipart(part(b"garbage\r\n" + file_headers(), b"data")),
        "invalid part header 'garbage'",
    ),
    # The second case (it also left a metadata sidecar behind).
    "file name not UTF-8": (
        multipart(part(file_headers(b"\xff\xfe.bin"), b"data")),
        "file name of part 1 is not valid UTF-8",
    ),
    "file name not UTF-8 after a good file": (
        multipart(GOOD_FILE, part(file_headers(b"\xff\xfe.bin"), b"data")),
        "file name of part 2 is not valid UTF-8",
    ),
    "field name not UTF-8 on a file part": (
        multipart(part(file_headers(name=b"\xe9t\xe9"), b"data")),
        "field name of part 1 is not valid UTF-8",
    ),
    "space before the colon": (
        multipart(part(file_headers() + b"Content-Type : text/plain\r\n", b"data")),
        "invalid part header 'Content-Type : text/plain'",
    ),
    "folded header line": (
        multipart(part(file_headers() + b"X-Note: one\r\n two\r\n", b"data")),
        "invalid part header ' two'",
    ),
    "control character in a header": (
        multipart(part(file_headers() + b"X-Note: a\x01b\r\n", b"data")),
        "invalid part header",
    ),
    "header line too long": (
        multipart(GOOD_FILE, part(file_headers() + b"X-Long: " + b"a" * 20_000 + b"\r\n", b"d")),
        "malformed multipart body: Got more than",
    ),
    "too many headers": (
        multipart(part(file_headers() + b"X-A: 1\r\n" * 200, b"data")),
        "Too many headers",
    ),
    "duplicate Content-Type": (
        multipart(part(file_headers() + b"Content-Type: a/b\r\nContent-Type: c/d\r\n", b"d")),
        "Duplicate 'Content-Type' header",
    ),
    "file name charset not decodable": (
        multipart(
            GOOD_FILE,
            part(b'Content-Disposition: form-data; name="f"; filename*0="\xff\'en\'%41"\r\n', b"d"),
        ),
        "part 2 has a malformed Content-Disposition header",
    ),
    "field charset not a charset name": (
        multipart(
            part(
                b'Content-Disposition: form-data; name="t"\r\n'
                b"Content-Type: text/plain; charset=\xff\r\n",
                b"text",
            )
        ),
        "form field 't' has an unknown charset",
    ),
    "malformed Content-Disposition": (
        multipart(GOOD_FILE, part(b"Content-Disposition: form-data; name\r\n", b"data")),
        # aiohttp warns here; under pytest's "error" filter that is an exception.
        "malformed Content-Disposition header",
    ),
    "no Content-Disposition": (
        multipart(GOOD_FILE, part(b"Content-Type: text/plain\r\n", b"data")),
        "part 2 has no Content-Disposition header",
    ),
}


@pytest.mark.parametrize(("body", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_part_is_400_and_stores_nothing(
    dev: DevServer, root: Path, logs: pytest.LogCaptureFixture, body: bytes, message: str
) -> None:
    status, reply = post_upload(dev.port, body)
    assert status == 400, reply
    assert reply["status"] == 400 and message in reply["error"], reply
    assert stored_files(root) == []
    assert_no_trouble(logs)
    dev.stop()
    (line,) = access_lines(logs)
    match = LINE.fullmatch(line)
    assert match and match.groups()[:4] == ("127.0.0.1", "POST", "/upload", "400"), line


def test_good_upload_still_works(
    dev: DevServer, root: Path, logs: pytest.LogCaptureFixture
) -> None:
    """The stricter parsing keeps ordinary bodies, including non-ASCII UTF-8 names."""
    body = multipart(
        part(file_headers("报告 ü.txt".encode()), b"content"),
        part('Content-Disposition: form-data; name="note é"\r\n'.encode(), "héllo".encode()),
    )
    status, reply = post_upload(dev.port, body)
    assert status == 200, reply
    assert reply["form"] == {"note é": "héllo"}
    (entry,) = reply["files"]
    assert entry["filename"] == "报告 ü.txt"
    assert (root / entry["name"]).read_bytes() == b"content"
    assert_no_trouble(logs)


# --------------------------------------------------------------------------- clients that leave


def start_half_upload(port: int, *, expect: bool) -> socket.socket:
    """Send a complete first file and half of a second one, announcing 10 MB."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    extra = (b"Expect: 100-continue",) if expect else ()
    sock.sendall(upload_head(10_000_000, *extra))
    if expect:
        assert read_exact_line(sock) == b"HTTP/1.1 100 Continue\r\n"
        assert read_exact_line(sock) == b"\r\n"
    sock.sendall(GOOD_FILE + b"--zzz\r\n" + file_headers(b"half.bin") + b"\r\n" + b"x" * 300_000)
    return sock


def read_exact_line(sock: socket.socket) -> bytes:
    line = bytearray()
    while not line.endswith(b"\n") and len(line) < 1000:
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return bytes(line)


def shutdown_and_read(sock: socket.socket) -> None:
    """Half-close, then check the server closes without sending anything."""
    sock.shutdown(socket.SHUT_WR)
    try:
        assert read_to_eof(sock) == b""
    finally:
        sock.close()


CLOSERS: dict[str, Callable[[socket.socket], None]] = {
    "fin": socket.socket.close,
    "rst": rst_close,
    "half-close": shutdown_and_read,
}


@pytest.mark.parametrize("expect", [False, True], ids=["plain", "expect-100"])
@pytest.mark.parametrize("close", CLOSERS.values(), ids=CLOSERS.keys())
def test_client_leaving_mid_upload(
    dev: DevServer,
    root: Path,
    logs: pytest.LogCaptureFixture,
    close: Callable[[socket.socket], None],
    expect: bool,
) -> None:
    tmp = root / ".wxtransfer" / "tmp"
    sock = start_half_upload(dev.port, expect=expect)
    try:
        # Both files are on disk under temporary names before the client goes.
        wait_until(lambda: len(list(tmp.iterdir())) == 2, "two partial files")
    finally:
        close(sock)
    wait_until(lambda: access_lines(logs) or troubles(logs), "the request to be logged")
    assert_no_trouble(logs)
    wait_until(lambda: stored_files(root) == [], "the partial files to be deleted")
    dev.stop()
    (line,) = access_lines(logs)
    match = GONE.fullmatch(line)
    assert match and match.groups()[:3] == ("127.0.0.1", "POST", "/upload"), line
    assert stored_files(root) == []
    assert_no_trouble(logs)


def test_client_leaving_mid_download(
    dev: DevServer, root: Path, logs: pytest.LogCaptureFixture
) -> None:
    (root / "big.bin").write_bytes(os.urandom(32_000_000))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # A small window (set before connecting) keeps most of the file on the server.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(SOCKET_TIMEOUT)
        sock.connect(("127.0.0.1", dev.port))
        sock.sendall(b"GET /files/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        rst_close(sock)
    wait_until(lambda: access_lines(logs) or troubles(logs), "the request to be logged")
    dev.stop()
    assert_no_trouble(logs)
    (line,) = access_lines(logs)
    assert GONE.fullmatch(line) and line.startswith('127.0.0.1 "GET /files/big.bin" '), line


# --------------------------------------------------------------------------- access log


def test_access_log_one_line_per_request(
    dev: DevServer, root: Path, logs: pytest.LogCaptureFixture
) -> None:
    payload = os.urandom(300_000)
    body = multipart(part(file_headers(b"blob.bin"), payload))
    status, reply = post_upload(dev.port, body)
    assert status == 200, reply
    url = reply["files"][0]["url"]
    get = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    sent: list[tuple[str, str, str, int]] = [("POST", "/upload", "200", -1)]
    for method, target in [
        ("GET", url),
        ("HEAD", url),
        ("GET", "/?format=json"),
        ("GET", "/files/missing.bin"),
    ]:
        request = (get % target.encode()).replace(b"GET", method.encode(), 1)
        code, _, data = exchange(dev.port, request)
        sent.append((method, target, str(code), len(data)))
    code, _, data = exchange(dev.port, upload_head(5) + b"12345")
    sent.append(("POST", "/upload", str(code), len(data)))
    dev.stop()

    assert [code for _, _, code, _ in sent] == ["200", "200", "200", "200", "404", "400"]
    assert sent[1][3] == len(payload)

    lines = access_lines(logs)
    assert len(lines) == len(sent), lines
    for line, (method, target, code, size) in zip(lines, sent, strict=True):
        match = LINE.fullmatch(line)
        assert match, line
        assert match.groups()[:4] == ("127.0.0.1", method, target, code), line
        if size >= 0:
            assert int(match.group(5)) == size, line  # body bytes, sendfile() included
    assert_no_trouble(logs)


# --------------------------------------------------------------------------- subprocesses


def python_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([SRC_DIR, os.environ.get("PYTHONPATH", "")]))


class StderrReader:
    """Collect a subprocess's stderr lines in a thread, so tests can wait for them."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        self.lines: list[str] = []
        self._stream = proc.stderr
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for line in self._stream:
            self.lines.append(line.rstrip("\n"))

    def access(self) -> list[str]:
        return [line for line in self.lines if LINE.fullmatch(line) or GONE.fullmatch(line)]

    def join(self) -> str:
        self._thread.join(10)
        return "\n".join(self.lines)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def test_cli_serve_prints_access_log_and_no_traceback(root: Path) -> None:
    """``wxtransfer serve``: access lines on stderr, no traceback, nothing stored."""
    cmd = [sys.executable, "-m", "wxtransfer", "serve", "--port", "0", "--root", str(root)]
    with subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=python_env(),
        text=True,
    ) as proc:
        err = StderrReader(proc)
        try:
            assert proc.stdout is not None
            banner = proc.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", banner)
            assert match, (banner, err.lines)
            port = int(match.group(1))

            status, reply = post_upload(port, multipart(GOOD_FILE))
            assert status == 200, reply
            name = reply["files"][0]["name"]
            for body, message in (
                MALFORMED["header without colon"],
                MALFORMED["file name not UTF-8 after a good file"],
                # Outside pytest aiohttp only warns here: the 400 comes from our own check.
                MALFORMED["malformed Content-Disposition"],
            ):
                status, reply = post_upload(port, body)
                assert status == 400 and message in reply["error"], reply
            # A request aiohttp cannot parse (a header without a colon): its 400, and
            # no "Error handling request" traceback.
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
                assert raw.recv(100).startswith(b"HTTP/1.0 400 "), "no 400 for a bad header"
            sock = start_half_upload(port, expect=False)
            tmp = root / ".wxtransfer" / "tmp"
            wait_until(lambda: len(list(tmp.iterdir())) == 2, "two partial files")
            rst_close(sock)
            wait_until(lambda: len(err.access()) == 6, "six access log lines")
        finally:
            stop(proc)
        stderr = err.join()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "Error handling request" not in stderr, stderr
    lines = err.access()
    statuses = [m.group(4) for m in map(LINE.fullmatch, lines[:5]) if m]
    assert statuses == ["200", "400", "400", "400", "400"], lines
    assert all(line.startswith('127.0.0.1 "POST /upload" ') for line in lines[:4]), lines
    assert GONE.fullmatch(lines[5]), lines
    assert stored_files(root) == sorted([name, os.path.join(".wxtransfer", "meta", name + ".json")])


def test_embedded_dev_server_is_quiet(root: Path) -> None:
    """Without logging configured, a DevServer prints nothing, even for a client that leaves."""
    code = """if True:
        import pathlib, socket, struct, sys, time
        from wxtransfer._server import DevServer

        def wait(predicate):
            deadline = time.monotonic() + 10
            while not predicate() and time.monotonic() < deadline:
                time.sleep(0.01)

        root = pathlib.Path(sys.argv[1])
        tmp = root / ".wxtransfer" / "tmp"
        with DevServer(root) as srv:
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            sock.sendall(
                b"POST /upload HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 100000\\r\\n"
                b"Content-Type: multipart/form-data; boundary=zzz\\r\\n\\r\\n"
                b'--zzz\\r\\nContent-Disposition: form-data; name="f"; filename="a"\\r\\n\\r\\n'
                + b"x" * 5000
            )
            wait(lambda: any(tmp.iterdir()))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            wait(lambda: not any(tmp.iterdir()))
            time.sleep(0.2)  # a traceback would come just after the file is deleted
        print("done")
    """
    proc = subprocess.run(
        [sys.executable, "-c", code, str(root)],
        capture_output=True,
        env=python_env(),
        text=True,
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "done\n", "")
    assert stored_files(root) == []
