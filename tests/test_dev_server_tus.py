"""tus 1.0 on the dev server (``wxtransfer._server_tus``), over real sockets.

Requests are made by hand with :mod:`http.client` and raw sockets, not with wxtransfer's
resumable client, so these tests pin the protocol itself: creation, HEAD, PATCH in
pieces, the errors (409, 412, 415, 400, 404, 413, 401), a client that vanishes in the
middle of a PATCH (its bytes stay), and the finished file stored like a ``POST /upload``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import wxtransfer._server
from tests.server_checks import ACCESS, access_lines, rst_close, troubles, wait_until
from wxtransfer._server import DevServer

pytestmark = pytest.mark.timeout(60)

SRC_DIR = str(Path(wxtransfer._server.__file__).resolve().parents[1])
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
SOCKET_TIMEOUT = 10.0
# 127.0.0.1 "PATCH /tus/<id>" - - 812.4 ms client disconnected
GONE = re.compile(r'127\.0\.0\.1 "PATCH /tus/[0-9a-f]{32}" - - \d+\.\d ms client disconnected')
LINE = re.compile(r'(\S+) "(\S+) (\S+)" (\d{3}) (\d+) B (\d+\.\d) ms')


# --------------------------------------------------------------------------- helpers


class Reply:
    """One response: status, headers (lower-cased names) and body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | Iterable[bytes] | None = None,
    headers: dict[str, str] | None = None,
    *,
    tus: bool = True,
    chunked: bool = False,
) -> Reply:
    """One request on a fresh connection; ``Tus-Resumable: 1.0.0`` unless ``tus=False``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SOCKET_TIMEOUT)
    try:
        sent = {**(TUS if tus else {}), **(headers or {})}
        if chunked:
            sent["Transfer-Encoding"] = "chunked"
        conn.request(method, path, body=body, headers=sent, encode_chunked=chunked)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def create(port: int, length: int, metadata: str | None = None, **extra: str) -> str:
    """POST /tus/; returns the upload's path (``/tus/<id>``)."""
    headers = {"Upload-Length": str(length), **extra}
    if metadata is not None:
        headers["Upload-Metadata"] = metadata
    reply = request(port, "POST", "/tus/", headers=headers)
    assert reply.status == 201, reply.body
    location = reply.headers["location"]
    match = re.fullmatch(rf"http://127\.0\.0\.1:{port}(/tus/[0-9a-f]{{32}})", location)
    assert match, location
    return match.group(1)


def patch(port: int, path: str, offset: int, body: bytes, **extra: str) -> Reply:
    headers = {"Content-Type": OCTETS, "Upload-Offset": str(offset), **extra}
    return request(port, "PATCH", path, body, headers)


def head_offset(port: int, path: str) -> int:
    reply = request(port, "HEAD", path)
    assert reply.status == 200, reply.status
    return int(reply.headers["upload-offset"])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored(root: Path) -> list[str]:
    """Files published into the root (not the state directory)."""
    return sorted(p.name for p in root.iterdir() if p.is_file())


def start_half_patch(port: int, path: str, offset: int, body: bytes) -> socket.socket:
    """Send a PATCH's head and the first half of ``body``; the caller closes the socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: {OCTETS}\r\nUpload-Offset: {offset}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body[: len(body) // 2])
    return sock


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
    with DevServer(root, max_size=5_000_000) as srv:
        yield srv


# --------------------------------------------------------------------------- the protocol


def test_options_advertises_version_extension_and_max_size(dev: DevServer, root: Path) -> None:
    for path in ("/tus/", "/tus"):
        reply = request(dev.port, "OPTIONS", path, tus=False)
        assert reply.status == 204, path
        assert reply.headers["tus-version"] == "1.0.0"
        assert reply.headers["tus-extension"] == "creation"
        assert reply.headers["tus-max-size"] == "5000000"
        assert reply.headers["tus-resumable"] == "1.0.0"
    with DevServer(root) as unlimited:
        reply = request(unlimited.port, "OPTIONS", "/tus/", tus=False)
        assert reply.status == 204 and "tus-max-size" not in reply.headers


def test_create_patch_in_two_chunks_and_publish(dev: DevServer, root: Path) -> None:
    data = os.urandom(1_234_567)
    name = "报告 ü.bin"
    path = create(dev.port, len(data), f"filename {b64(name)},filetype {b64('x/y')},flag")
    uid = path.rsplit("/", 1)[1]
    tus_dir = root / ".wxtransfer" / "tus"
    assert (tus_dir / uid).read_bytes() == b""
    record = json.loads((tus_dir / f"{uid}.json").read_text())
    assert record["length"] == len(data) and record["filename"] == name

    reply = request(dev.port, "HEAD", path)
    assert reply.status == 200 and reply.body == b""
    assert reply.headers["upload-offset"] == "0"
    assert reply.headers["upload-length"] == str(len(data))
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["tus-resumable"] == "1.0.0"
    assert reply.headers["upload-metadata"] == f"filename {b64(name)},filetype {b64('x/y')},flag"

    half = 600_001
    reply = patch(dev.port, path, 0, data[:half])
    assert reply.status == 204, reply.body
    assert reply.headers["upload-offset"] == str(half)
    assert reply.headers["tus-resumable"] == "1.0.0"
    assert "x-wxtransfer-file" not in reply.headers
    assert head_offset(dev.port, path) == half
    assert stored(root) == []  # nothing published before the last byte

    reply = patch(dev.port, path, half, data[half:])
    assert reply.status == 204, reply.body
    assert reply.headers["upload-offset"] == str(len(data))
    file_url = reply.headers["x-wxtransfer-file"]

    # Published exactly like an /upload file: <16 hex>_<sanitised name>, meta sidecar.
    (published,) = stored(root)
    assert re.fullmatch(r"[0-9a-f]{16}_报告 ü\.bin", published), published
    assert (root / published).read_bytes() == data
    assert file_url == f"{dev.url}/files/{quote(published, safe='')}"
    meta = json.loads((root / ".wxtransfer" / "meta" / f"{published}.json").read_text())
    assert meta["filename"] == name
    assert meta["size"] == len(data) and meta["sha256"] == sha256(data)
    assert not (tus_dir / uid).exists()
    got = request(dev.port, "GET", file_url.removeprefix(dev.url), tus=False)
    assert got.status == 200 and sha256(got.body) == sha256(data)
    assert "filename*=UTF-8''" + quote(name, safe="") in got.headers["content-disposition"]
    listing = request(dev.port, "GET", "/?format=json", tus=False).json()["files"]
    assert [(f["name"], f["size"], f["sha256"]) for f in listing] == [
        (published, len(data), sha256(data))
    ]

    # A finished upload still answers HEAD (a client that lost the last reply sees it is
    # done) and an empty PATCH at the end, and points at the stored file.
    reply = request(dev.port, "HEAD", path)
    assert reply.headers["upload-offset"] == str(len(data))
    assert reply.headers["x-wxtransfer-file"] == file_url
    reply = patch(dev.port, path, len(data), b"")
    assert (reply.status, reply.headers["x-wxtransfer-file"]) == (204, file_url)
    assert patch(dev.port, path, len(data), b"more").status == 400
    assert stored(root) == [published]


def test_name_falls_back_to_name_key_then_to_the_id(dev: DevServer, root: Path) -> None:
    path = create(dev.port, 3, f"name {b64('from-name.txt')}")
    assert patch(dev.port, path, 0, b"abc").status == 204
    path = create(dev.port, 2)
    assert patch(dev.port, path, 0, b"de").status == 204
    names = stored(root)
    assert any(n.endswith("_from-name.txt") for n in names), names
    assert any(n.endswith("_" + path.rsplit("/", 1)[1]) for n in names), names


def test_empty_upload_is_complete_at_creation(dev: DevServer, root: Path) -> None:
    reply = request(dev.port, "POST", "/tus/", headers={"Upload-Length": "0"})
    assert reply.status == 201
    (published,) = stored(root)
    assert (root / published).read_bytes() == b""
    assert reply.headers["x-wxtransfer-file"].endswith("/files/" + quote(published, safe=""))
    assert head_offset(dev.port, reply.headers["location"].removeprefix(dev.url)) == 0


def test_wrong_offset_is_409(dev: DevServer) -> None:
    path = create(dev.port, 100)
    assert patch(dev.port, path, 0, b"x" * 40).status == 204
    for offset in (0, 39, 41, 100):
        reply = patch(dev.port, path, offset, b"y" * 10)
        assert reply.status == 409, offset
        assert reply.headers["upload-offset"] == "40"
        assert "40" in reply.json()["error"]
    assert head_offset(dev.port, path) == 40


def test_patch_needs_the_offset_content_type_and_offset(dev: DevServer) -> None:
    path = create(dev.port, 10)
    for content_type in ("application/octet-stream", "text/plain", ""):
        headers = {"Upload-Offset": "0"}
        if content_type:
            headers["Content-Type"] = content_type
        reply = request(dev.port, "PATCH", path, b"abc", headers)
        assert reply.status == 415, content_type
    reply = request(dev.port, "PATCH", path, b"abc", {"Content-Type": f"{OCTETS}; x=y"})
    assert reply.status == 400 and "Upload-Offset" in reply.json()["error"]
    reply = patch(dev.port, path, 0, b"abc", **{"Upload-Offset": "-1"})
    assert reply.status == 400
    assert head_offset(dev.port, path) == 0


def test_missing_tus_resumable_is_412(dev: DevServer) -> None:
    path = create(dev.port, 10)
    for version in (None, "0.2.2", "1.0"):
        headers = {} if version is None else {"Tus-Resumable": version}
        for method, target, body, extra in (
            ("POST", "/tus/", None, {"Upload-Length": "10"}),
            ("HEAD", path, None, {}),
            ("PATCH", path, b"abc", {"Content-Type": OCTETS, "Upload-Offset": "0"}),
        ):
            reply = request(dev.port, method, target, body, {**headers, **extra}, tus=False)
            assert reply.status == 412, (version, method)
            assert reply.headers["tus-version"] == "1.0.0"
            assert reply.headers["tus-resumable"] == "1.0.0"
    assert head_offset(dev.port, path) == 0


def test_body_over_upload_length_is_400_and_kept_out(dev: DevServer, root: Path) -> None:
    path = create(dev.port, 100)
    partial = root / ".wxtransfer" / "tus" / path.rsplit("/", 1)[1]
    assert patch(dev.port, path, 0, b"a" * 60).status == 204
    # Content-Length says so: refused before a byte is read.
    reply = patch(dev.port, path, 60, b"b" * 41)
    assert reply.status == 400 and "Upload-Length" in reply.json()["error"]
    assert head_offset(dev.port, path) == 60 and partial.read_bytes() == b"a" * 60
    # Chunked: only seen while reading; the whole PATCH is cut back off.
    chunks = [b"c" * 30, b"d" * 30]
    reply = request(
        dev.port,
        "PATCH",
        path,
        iter(chunks),
        {"Content-Type": OCTETS, "Upload-Offset": "60"},
        chunked=True,
    )
    assert reply.status == 400 and "Upload-Length" in reply.json()["error"]
    assert head_offset(dev.port, path) == 60 and partial.read_bytes() == b"a" * 60
    # A chunked body that fits is fine.
    reply = request(
        dev.port,
        "PATCH",
        path,
        iter([b"e" * 20, b"f" * 20]),
        {"Content-Type": OCTETS, "Upload-Offset": "60"},
        chunked=True,
    )
    assert (reply.status, reply.headers["upload-offset"]) == (204, "100")
    (published,) = stored(root)
    assert (root / published).read_bytes() == b"a" * 60 + b"e" * 20 + b"f" * 20


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 400, "missing Upload-Length"),
        ({"Upload-Length": "ten"}, 400, "whole number"),
        ({"Upload-Length": "-5"}, 400, "whole number"),
        ({"Upload-Defer-Length": "1"}, 400, "Upload-Defer-Length"),
        ({"Upload-Length": "5000001"}, 413, "larger than 5000000"),
        ({"Upload-Length": "5", "Upload-Metadata": "filename not*base64"}, 400, "base64"),
        ({"Upload-Length": "5", "Upload-Metadata": "bad key eA=="}, 400, "malformed"),
        ({"Upload-Length": "5", "Upload-Metadata": "a eA==,a eQ=="}, 400, "malformed"),
        ({"Upload-Length": "5", "Upload-Metadata": "filename //4="}, 400, "UTF-8"),
    ],
)
def test_creation_errors(
    dev: DevServer, root: Path, headers: dict[str, str], status: int, message: str
) -> None:
    reply = request(dev.port, "POST", "/tus/", headers=headers)
    assert reply.status == status, reply.body
    assert message in reply.json()["error"]
    assert "location" not in reply.headers
    assert list((root / ".wxtransfer" / "tus").iterdir()) == []


def test_creation_with_a_body_is_refused(dev: DevServer, root: Path) -> None:
    reply = request(dev.port, "POST", "/tus/", b"abc", {"Upload-Length": "3"})
    assert reply.status == 400 and "creation-with-upload" in reply.json()["error"]
    assert list((root / ".wxtransfer" / "tus").iterdir()) == []


@pytest.mark.parametrize("target", ["/tus/" + "0" * 32, "/tus/not-an-id", "/tus/..%2Fmeta"])
def test_unknown_upload_is_404(dev: DevServer, target: str) -> None:
    assert request(dev.port, "HEAD", target).status == 404
    reply = patch(dev.port, target, 0, b"abc")
    assert reply.status == 404 and reply.headers["tus-resumable"] == "1.0.0"


def test_token_required(root: Path) -> None:
    with DevServer(root, token="tok") as dev:
        good = {"Authorization": "Bearer tok"}
        reply = request(dev.port, "POST", "/tus/", headers={"Upload-Length": "3"})
        assert reply.status == 401 and reply.headers["tus-resumable"] == "1.0.0"
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert request(dev.port, "OPTIONS", "/tus/", tus=False).status == 401
        path = create(dev.port, 3, None, **good)
        assert request(dev.port, "HEAD", path).status == 401
        assert patch(dev.port, path, 0, b"abc").status == 401
        wrong = patch(dev.port, path, 0, b"abc", Authorization="Bearer nope")
        assert wrong.status == 401
        assert head_offset_with(dev.port, path, good) == 0
        reply = patch(dev.port, path, 0, b"abc", **good)
        assert reply.status == 204 and "x-wxtransfer-file" in reply.headers
        assert [(root / n).read_bytes() for n in stored(root)] == [b"abc"]


def head_offset_with(port: int, path: str, headers: dict[str, str]) -> int:
    reply = request(port, "HEAD", path, headers=headers)
    assert reply.status == 200, reply.status
    return int(reply.headers["upload-offset"])


# --------------------------------------------------------------------------- clients that leave


@pytest.mark.parametrize("close", [socket.socket.close, rst_close], ids=["fin", "rst"])
def test_client_leaving_mid_patch_keeps_the_bytes(
    dev: DevServer,
    root: Path,
    logs: pytest.LogCaptureFixture,
    close: Callable[[socket.socket], None],
) -> None:
    data = os.urandom(2_000_000)
    path = create(dev.port, len(data), f"filename {b64('cut.bin')}")
    sock = start_half_patch(dev.port, path, 0, data)
    half = len(data) // 2
    try:
        # The bytes are on disk as they arrive: HEAD sees them while the PATCH is open.
        wait_until(lambda: head_offset(dev.port, path) == half, "half of the body on disk")
    finally:
        close(sock)
    wait_until(lambda: any(GONE.fullmatch(line) for line in access_lines(logs)), "the PATCH log")
    assert troubles(logs) == []
    offset = head_offset(dev.port, path)
    assert offset == half
    assert stored(root) == []
    # The client continues from HEAD's offset and the file is whole.
    reply = patch(dev.port, path, offset, data[offset:])
    assert reply.status == 204, reply.body
    (published,) = stored(root)
    assert sha256((root / published).read_bytes()) == sha256(data)
    dev.stop()
    lines = access_lines(logs)
    assert sum(bool(GONE.fullmatch(line)) for line in lines) == 1, lines
    patches = [line for line in lines if '"PATCH ' in line]
    assert len(patches) == 2 and LINE.fullmatch(patches[1]), patches
    assert troubles(logs) == []


def test_serve_prints_no_traceback_for_a_cut_patch(root: Path) -> None:
    """``wxtransfer serve``: a PATCH cut in the middle is one access line on stderr."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC_DIR, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "wxtransfer", "serve", "--port", "0", "--root", str(root)]
    lines: list[str] = []
    with subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    ) as proc:
        assert proc.stderr is not None and proc.stdout is not None
        stream = proc.stderr
        reader = threading.Thread(target=lambda: lines.extend(stream), daemon=True)
        reader.start()
        try:
            banner = proc.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", banner)
            assert match, banner
            port = int(match.group(1))
            data = os.urandom(1_000_000)
            path = create(port, len(data))
            sock = start_half_patch(port, path, 0, data)
            try:
                wait_until(lambda: head_offset(port, path) == len(data) // 2, "half on disk")
            finally:
                rst_close(sock)
            wait_until(lambda: any(GONE.fullmatch(x.strip()) for x in lines), "the PATCH log")
            assert head_offset(port, path) == len(data) // 2
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
            reader.join(10)
    stderr = "".join(lines)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "Error handling request" not in stderr, stderr
