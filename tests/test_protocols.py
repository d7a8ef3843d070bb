"""SPEC §10 on real servers: ``enable_http2`` negotiates h2 by ALPN and falls back to
HTTP/1.1 where it is not offered, ``enable_quic`` speaks HTTP/3 and falls back fast where
QUIC fails, ``profile["protocol"]`` says which (``http1.1``, ``h2``, ``quic``, else
``unknown``), and the transfers of one runtime to one origin share one h2 connection.

nginx (Debian's nginx-light) serves HTTP/2 and HTTP/1.1 over TLS, Caddy (Debian's caddy)
HTTP/3; both hand ``/upload`` to the aiohttp test app, which hashes what it got. Their
access logs say which protocol and connection each request came on.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple, TypeVar

import pycurl
import pytest

import wxtransfer
from tests.helpers import runtime
from tests.servers.h3 import CaddyH3Process
from tests.servers.nginx_h2 import NginxTLSProcess
from tests.servers.rawsock import Handler, RawServer, respond
from tests.servers.threaded import ServerThread

BIG = os.urandom(4 << 20)
SMALL = [os.urandom(256 << 10) for _ in range(50)]

needs_http3 = pytest.mark.skipif(
    not pycurl.version_info()[4] & pycurl.VERSION_HTTP3,
    reason=f"this libcurl has no HTTP/3: {pycurl.version}",
)


@pytest.fixture(scope="module")
def www(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("www")
    (root / "big.bin").write_bytes(BIG)
    (root / "m").mkdir()
    for i, body in enumerate(SMALL):
        (root / "m" / f"{i}.bin").write_bytes(body)
    return root


_S = TypeVar("_S", NginxTLSProcess, CaddyH3Process)


def _running(srv: _S) -> Iterator[_S]:
    """``srv`` started for the fixture's life, stopped after; skips when it is absent."""
    try:
        srv.start()
    except FileNotFoundError as exc:
        srv.stop()
        pytest.skip(str(exc))
    except BaseException:
        srv.stop()
        raise
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def nginx_h2(www: Path, server: ServerThread) -> Iterator[NginxTLSProcess]:
    """nginx offering h2 and http/1.1 by ALPN."""
    yield from _running(NginxTLSProcess(www, http2=True, upstream=server.url))


@pytest.fixture(scope="module")
def nginx_h1(www: Path, server: ServerThread) -> Iterator[NginxTLSProcess]:
    """nginx offering http/1.1 only."""
    yield from _running(NginxTLSProcess(www, http2=False, upstream=server.url))


@pytest.fixture(scope="module")
def caddy(www: Path, server: ServerThread) -> Iterator[CaddyH3Process]:
    """Caddy: HTTP/3 on UDP, h2 and http/1.1 on TCP."""
    yield from _running(CaddyH3Process(www, upstream=server.url))


def records(srv: NginxTLSProcess | CaddyH3Process, uri: str) -> list[dict[str, str]]:
    """The server's log records for ``uri``, once there is one (or after 5 s): a server
    writes its record when the request ends, maybe just after the client saw the end."""
    deadline = time.monotonic() + 5
    while True:
        found = [r for r in srv.log() if r["uri"] == uri]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


class Got(NamedTuple):
    """A download's result, its bytes (read while its runtime is open) and its duration."""

    res: wxtransfer.DownloadFileResult
    body: bytes
    seconds: float
    protocol: str


def download(
    tmp_path: Path, url: str, ca_file: str | None = None, *, http2: bool = False, quic: bool = False
) -> Got:
    with runtime(tmp_path, ca_file=ca_file) as rt:
        started = time.monotonic()
        res = rt.download_file(url, enable_http2=http2, enable_quic=quic).result(30)
        seconds = time.monotonic() - started
        body = Path(str(res.temp_file_path)).read_bytes()
    assert res.status_code == 200 and res.profile is not None
    return Got(res, body, seconds, res.profile["protocol"])


def upload(
    tmp_path: Path,
    srv: NginxTLSProcess | CaddyH3Process,
    uri: str,
    *,
    http2: bool = False,
    quic: bool = False,
) -> wxtransfer.UploadFileResult:
    """Upload 3 MiB + 1 byte to ``srv`` (``uri``: /upload?...) and check that the app behind
    it got the very bytes (its size and sha256)."""
    body = os.urandom((3 << 20) + 1)
    path = tmp_path / "up.bin"
    path.write_bytes(body)
    with runtime(tmp_path, ca_file=srv.ca_file) as rt:
        res = rt.upload_file(
            srv.url + uri, path, "file", enable_http2=http2, enable_quic=quic
        ).result(30)
    assert res.status_code == 200 and res.profile is not None
    (got,) = json.loads(res.data)["files"]
    assert got["size"] == len(body)
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    return res


# ---- HTTP/1.1 and others -------------------------------------------------------------------


@pytest.mark.parametrize("flag", [None, "enable_http2", "enable_quic"])
def test_cleartext_http_is_http11_whatever_the_flag(
    tmp_path: Path, server: ServerThread, flag: str | None
) -> None:
    url = server.url + "/bytes/1000"
    got = download(tmp_path, url, http2=flag == "enable_http2", quic=flag == "enable_quic")
    assert got.protocol == "http1.1" and len(got.body) == 1000


def test_without_the_flag_h2_offered_is_not_taken(
    tmp_path: Path, nginx_h2: NginxTLSProcess
) -> None:
    got = download(tmp_path, nginx_h2.url + "/m/0.bin?plain", nginx_h2.ca_file)
    assert got.protocol == "http1.1" and got.body == SMALL[0]
    assert [r["protocol"] for r in records(nginx_h2, "/m/0.bin?plain")] == ["HTTP/1.1"]


def test_an_http10_answer_is_unknown(
    tmp_path: Path, raw_server: Callable[[Handler], RawServer]
) -> None:
    srv = raw_server(respond(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"))
    got = download(tmp_path, srv.url + "/")
    assert got.protocol == "unknown" and got.body == b"hi"


# ---- HTTP/2 --------------------------------------------------------------------------------


def test_h2_download_is_negotiated_and_byte_identical(
    tmp_path: Path, nginx_h2: NginxTLSProcess
) -> None:
    got = download(tmp_path, nginx_h2.url + "/big.bin", nginx_h2.ca_file, http2=True)
    assert got.protocol == "h2" and got.body == BIG
    (rec,) = records(nginx_h2, "/big.bin")
    assert rec["protocol"] == "HTTP/2.0" and rec["sent"] == str(len(BIG))


def test_h2_upload_is_byte_identical(tmp_path: Path, nginx_h2: NginxTLSProcess) -> None:
    res = upload(tmp_path, nginx_h2, "/upload?h2", http2=True)
    assert res.profile is not None and res.profile["protocol"] == "h2"
    (rec,) = records(nginx_h2, "/upload?h2")
    assert rec["protocol"] == "HTTP/2.0" and rec["status"] == "200"
    # the multipart body nginx counted: the file and a few hundred bytes of framing;
    # sendBytesCount adds the request head to it
    body = int(rec["content_length"])
    assert 3 << 20 < body < (3 << 20) + 1024
    assert 0 < res.profile["sendBytesCount"] - body < 1024


def test_h2_falls_back_to_http11_where_the_server_offers_only_that(
    tmp_path: Path, nginx_h1: NginxTLSProcess
) -> None:
    got = download(tmp_path, nginx_h1.url + "/big.bin?h1", nginx_h1.ca_file, http2=True)
    assert got.protocol == "http1.1" and got.body == BIG
    up = upload(tmp_path, nginx_h1, "/upload?h1", http2=True)
    assert up.profile is not None and up.profile["protocol"] == "http1.1"
    logged = records(nginx_h1, "/big.bin?h1") + records(nginx_h1, "/upload?h1")
    assert [r["protocol"] for r in logged] == ["HTTP/1.1", "HTTP/1.1"]


def test_fifty_downloads_at_once_share_one_h2_connection(
    tmp_path: Path, nginx_h2: NginxTLSProcess
) -> None:
    uris = [f"/m/{i}.bin?fifty" for i in range(len(SMALL))]
    with runtime(tmp_path, ca_file=nginx_h2.ca_file, max_concurrent_downloads=50) as rt:
        tasks = [rt.download_file(nginx_h2.url + uri, enable_http2=True) for uri in uris]
        results = [task.result(30) for task in tasks]
        bodies = [Path(str(res.temp_file_path)).read_bytes() for res in results]
    assert bodies == SMALL
    profiles = [res.profile for res in results if res.profile]
    assert {p["protocol"] for p in profiles} == {"h2"}
    logged = [r for uri in uris for r in records(nginx_h2, uri)]
    assert len(logged) == 50
    assert {r["protocol"] for r in logged} == {"HTTP/2.0"}
    assert len({r["connection"] for r in logged}) == 1, logged  # one TCP connection
    # multiplexed, not one after another on it: every request went out before the first
    # response ended (one by one, only the first would have); one connect, 49 reuses
    first_end = min(p["responseEnd"] for p in profiles)
    assert sum(p["requestStart"] < first_end for p in profiles) == 50
    assert sum(p["socketReused"] for p in profiles) == 49


# ---- HTTP/3 --------------------------------------------------------------------------------


@needs_http3
def test_quic_download_is_negotiated_and_byte_identical(
    tmp_path: Path, caddy: CaddyH3Process
) -> None:
    got = download(tmp_path, caddy.url + "/big.bin", caddy.ca_file, quic=True)
    assert got.protocol == "quic" and got.body == BIG
    (rec,) = records(caddy, "/big.bin")
    assert rec["protocol"] == "HTTP/3.0" and rec["sent"] == str(len(BIG))


@needs_http3
def test_quic_upload_is_byte_identical(tmp_path: Path, caddy: CaddyH3Process) -> None:
    res = upload(tmp_path, caddy, "/upload?quic", quic=True)
    assert res.profile is not None and res.profile["protocol"] == "quic"
    (rec,) = records(caddy, "/upload?quic")
    assert rec["protocol"] == "HTTP/3.0" and rec["status"] == "200"


@needs_http3
def test_fifty_downloads_at_once_share_one_quic_connection(
    tmp_path: Path, caddy: CaddyH3Process
) -> None:
    uris = [f"/m/{i}.bin?fifty" for i in range(len(SMALL))]
    with runtime(tmp_path, ca_file=caddy.ca_file, max_concurrent_downloads=50) as rt:
        tasks = [rt.download_file(caddy.url + uri, enable_quic=True) for uri in uris]
        results = [task.result(30) for task in tasks]
        bodies = [Path(str(res.temp_file_path)).read_bytes() for res in results]
    assert bodies == SMALL
    profiles = [res.profile for res in results if res.profile]
    assert {p["protocol"] for p in profiles} == {"quic"}
    assert sum(p["socketReused"] for p in profiles) == 49
    logged = [r for uri in uris for r in records(caddy, uri)]
    assert len(logged) == 50
    assert {r["protocol"] for r in logged} == {"HTTP/3.0"}
    assert len({r["remote_port"] for r in logged}) == 1, logged  # one UDP flow


@needs_http3
@pytest.mark.parametrize(("which", "expected"), [("nginx_h2", "h2"), ("nginx_h1", "http1.1")])
def test_quic_falls_back_fast_where_nothing_answers_on_udp(
    tmp_path: Path, request: pytest.FixtureRequest, which: str, expected: str
) -> None:
    srv: NginxTLSProcess = request.getfixturevalue(which)
    uri = f"/m/1.bin?quic-{expected}"
    got = download(tmp_path, srv.url + uri, srv.ca_file, quic=True)
    assert got.protocol == expected and got.body == SMALL[1]
    assert got.seconds < 3, got.seconds  # QUIC and TCP raced: no wait for a QUIC timeout
    (rec,) = records(srv, uri)
    assert rec["protocol"] == {"h2": "HTTP/2.0", "http1.1": "HTTP/1.1"}[expected]


@needs_http3
def test_quic_falls_back_fast_where_udp_is_silent(
    tmp_path: Path, nginx_h2: NginxTLSProcess
) -> None:
    """A UDP socket on the port that swallows every datagram: QUIC is tried (its Initial
    packet, padded to 1200 bytes, arrives) and never answered; h2 wins the race."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", nginx_h2.port))
        got = download(tmp_path, nginx_h2.url + "/m/2.bin?silent", nginx_h2.ca_file, quic=True)
        udp.settimeout(1)
        initial = udp.recv(65536)
    assert got.protocol == "h2" and got.body == SMALL[2]
    assert got.seconds < 3, got.seconds
    assert len(initial) >= 1200
    (rec,) = records(nginx_h2, "/m/2.bin?silent")
    assert rec["protocol"] == "HTTP/2.0"
