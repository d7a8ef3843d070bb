"""What a server's answer does to the result: answers that are not HTTP, chunked bodies that
break, the bytes ``profile["sendBytesCount"]`` counts, and ``header`` as the server sent it
(SPEC §2, §5, §6). Real sockets on 127.0.0.1; the raw-socket server gives byte-exact answers.
"""

from __future__ import annotations

import json
import pickle
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pycurl
import pytest
from click.testing import CliRunner

import wxtransfer
from tests.helpers import leftovers, runtime
from tests.servers.rawsock import (
    RawServer,
    build_response,
    read_body,
    read_body_then,
    respond,
)

RawFactory = Callable[[Any], RawServer]

SSH_BANNER = b"SSH-2.0-OpenSSH_9.2\r\n"
HTTP_1_7 = b"HTTP/1.7 200 OK\r\nContent-Length: 2\r\n\r\nhi"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def _fail(task: wxtransfer.Task[Any, Any]) -> wxtransfer.TransferError:
    err = task.exception(timeout=10)
    assert err is not None, "expected the task to fail"
    return err


def _transfer(rt: wxtransfer.Runtime, api: str, url: str, tmp_path: Path) -> Any:
    """Start a download, or an upload of a small file."""
    if api == "downloadFile":
        return rt.download_file(url)
    upload = tmp_path / "up.txt"
    upload.write_bytes(b"0123456789")
    return rt.upload_file(url, upload, "file")


def _answer(raw: bytes, api: str) -> Any:
    """A handler sending ``raw``: after reading the whole request body for an upload, so
    that the request was sent in full before the answer comes."""
    return respond(raw) if api == "downloadFile" else read_body_then(raw)


APIS = ["downloadFile", "uploadFile"]


# --------------------------------------------------------------------------- not HTTP


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("answer", [SSH_BANNER, HTTP_1_7], ids=["ssh-banner", "http-1.7"])
def test_an_answer_that_is_not_http_is_interrupted_not_an_invalid_url(
    tmp_path: Path, raw_server: RawFactory, api: str, answer: bytes
) -> None:
    # libcurl says code 1, "Received HTTP/0.9 when not allowed" / "Unsupported HTTP/1
    # subversion in response": the same code as a scheme it lacks, but the URL was fine.
    srv = raw_server(_answer(answer, api))
    with runtime(tmp_path) as rt:
        err = _fail(_transfer(rt, api, srv.url + "/x", tmp_path))
    assert srv.connections == 1 and len(srv.requests) == 1  # the request reached the server
    assert isinstance(err, wxtransfer.NetworkError)
    assert not isinstance(err, ValueError)
    assert err.errno == 600003
    assert err.err_msg.startswith(f"{api}:fail the server's answer is not HTTP: ")
    assert "invalid URL" not in err.err_msg
    assert leftovers(tmp_path / "tmp") == []


def test_code_1_tells_a_scheme_libcurl_lacks_from_an_answer_that_is_not_http(
    raw_server: RawFactory,
) -> None:
    """The premise of the mapping, on libcurl itself: after a refused scheme nothing was
    sent and there is no peer; after a non-HTTP answer both are there."""
    from wxtransfer._transport import map_curl_error

    srv = raw_server(respond(SSH_BANNER))
    seen = {}
    for url in ("ftp://127.0.0.1/x", srv.url + "/x"):
        c = pycurl.Curl()
        try:
            c.setopt(pycurl.URL, url)
            c.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
            c.setopt(pycurl.TIMEOUT_MS, 5000)
            c.setopt(pycurl.WRITEFUNCTION, lambda data: None)
            with pytest.raises(pycurl.error) as info:
                c.perform()
            code = info.value.args[0]
            seen[url] = (code, c.getinfo(pycurl.REQUEST_SIZE), c.getinfo(pycurl.PRIMARY_IP))
        finally:
            c.close()
    assert seen["ftp://127.0.0.1/x"] == (1, 0, "")
    code, request_size, peer = seen[srv.url + "/x"]
    assert (code, peer) == (1, "127.0.0.1") and request_size > 0

    scheme = map_curl_error("downloadFile", 1, 'Protocol "ftp" is disabled')
    assert isinstance(scheme, wxtransfer.InvalidArgumentError)
    assert (scheme.err_msg, scheme.errno) == (
        "downloadFile:fail invalid URL: unsupported protocol",
        600009,
    )
    answer = map_curl_error("uploadFile", 1, "Received HTTP/0.9 when not allowed", answered=True)
    assert isinstance(answer, wxtransfer.NetworkError)
    assert (answer.err_msg, answer.errno) == (
        "uploadFile:fail the server's answer is not HTTP: Received HTTP/0.9 when not allowed",
        600003,
    )


def test_an_unsupported_scheme_is_still_refused_before_any_request(tmp_path: Path) -> None:
    with runtime(tmp_path) as rt:
        err = _fail(rt.download_file("ftp://127.0.0.1/x"))
    assert isinstance(err, wxtransfer.InvalidArgumentError)
    assert err.errno == 600009


# --------------------------------------------------------------------------- chunked bodies


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "body",
    [b"5\r\nhello\r\n", b"50\r\nhello"],
    ids=["between-chunks", "inside-a-chunk"],
)
def test_a_chunked_body_cut_short_says_so(
    tmp_path: Path, raw_server: RawFactory, api: str, body: bytes
) -> None:
    # libcurl: 18, "transfer closed with outstanding read data remaining"
    srv = raw_server(_answer(CHUNKED_HEAD + body, api))
    with runtime(tmp_path) as rt:
        err = _fail(_transfer(rt, api, srv.url + "/x", tmp_path))
    assert isinstance(err, wxtransfer.NetworkError)
    assert err.errno == 600003
    assert err.err_msg.startswith(
        f"{api}:fail the connection closed before the end of the chunked body"
    )
    assert "Content-Length" not in err.err_msg
    assert leftovers(tmp_path / "tmp") == []


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "body",
    [b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n"],
    ids=["bad-size-line", "bad-chunk-end"],
)
def test_a_malformed_chunked_body_says_so(
    tmp_path: Path, raw_server: RawFactory, api: str, body: bytes
) -> None:
    # libcurl: 56, "chunk hex-length char not a hex digit: 0x7a" / "Malformed encoding
    # found in chunked-encoding"
    srv = raw_server(_answer(CHUNKED_HEAD + body, api))
    with runtime(tmp_path) as rt:
        err = _fail(_transfer(rt, api, srv.url + "/x", tmp_path))
    assert isinstance(err, wxtransfer.NetworkError)
    assert err.errno == 600003
    assert err.err_msg.startswith(f"{api}:fail malformed chunked body from the server: ")
    assert "reset" not in err.err_msg
    assert leftovers(tmp_path / "tmp") == []


def test_a_reset_inside_a_chunked_body_is_still_a_reset(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    srv = raw_server(respond(CHUNKED_HEAD + b"50\r\nhello", then="reset"))
    with runtime(tmp_path) as rt:
        err = _fail(rt.download_file(srv.url + "/x"))
    assert err.errno == 600003
    assert "chunked" not in err.err_msg


@pytest.mark.parametrize("api", APIS)
def test_a_content_length_cut_keeps_its_message(
    tmp_path: Path, raw_server: RawFactory, api: str
) -> None:
    srv = raw_server(_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", api))
    with runtime(tmp_path) as rt:
        err = _fail(_transfer(rt, api, srv.url + "/x", tmp_path))
    assert err.errno == 600003
    assert err.err_msg.startswith(f"{api}:fail body shorter than its Content-Length")


# --------------------------------------------------------------------------- sendBytesCount


class CountingServer:
    """Answers ``POST /start`` with ``redirect`` (to /final) when given, anything else with
    200; records, per connection and in the order the requests came, every byte the client
    sent until it closed."""

    def __init__(self, redirect: int | None = None) -> None:
        self.redirect = redirect
        # (arrival, path, bytes), one per connection, as connections end
        self._received: list[tuple[int, str, int]] = []
        self._arrivals = 0
        self._lock = threading.Condition()

    def __call__(self, sock: socket.socket, head: bytes) -> None:
        with self._lock:
            arrival = self._arrivals
            self._arrivals += 1
        sock.settimeout(5)
        body = read_body(sock, head)
        path = head.split(b" ", 2)[1].decode()
        if self.redirect and path == "/start":
            headers = {"Location": "/final", "Connection": "close"}
            sock.sendall(build_response(self.redirect, b"", headers))
        else:
            sock.sendall(build_response(200, b"ok", {"Connection": "close"}))
        sock.shutdown(socket.SHUT_WR)
        count = len(head) + len(body)
        while data := sock.recv(65536):  # anything after the request: counted too
            count += len(data)
        with self._lock:
            self._received.append((arrival, path, count))
            self._lock.notify_all()

    def wait_for(self, connections: int, timeout: float = 10) -> list[tuple[str, int]]:
        """The counts, once ``connections`` have ended (the client may see its response
        before the server has read the end of the connection)."""
        with self._lock:
            self._lock.wait_for(lambda: len(self._received) >= connections, timeout)
            # in the order the requests came: a connection may end after a later one's
            return [(path, count) for _, path, count in sorted(self._received)]


@pytest.mark.parametrize("redirect", [None, 307, 308])
@pytest.mark.parametrize(
    "size", [10, 60_000, 300_000], ids=["small", "in-memory-60k", "streamed-mime"]
)
def test_send_bytes_count_is_what_the_server_received(
    tmp_path: Path, raw_server: RawFactory, size: int, redirect: int | None
) -> None:
    # Files up to 64 KiB go out from memory (POSTFIELDS), larger ones through libcurl's
    # MIME reader. After a 307/308 the body is sent again: the profile describes the final
    # hop, so it counts that request's bytes, each once.
    counter = CountingServer(redirect)
    srv = raw_server(counter)
    upload = tmp_path / "up.bin"
    upload.write_bytes(b"a" * size)
    with runtime(tmp_path) as rt:
        res = rt.upload_file(srv.url + "/start", upload, "file", form_data={"k": "v"}).result(20)
    assert res.status_code == 200 and res.data == "ok"
    received = counter.wait_for(2 if redirect else 1)
    paths = [path for path, _ in received]
    assert paths == (["/start", "/final"] if redirect else ["/start"])
    final = received[-1][1]
    assert final > size
    if redirect:
        assert received[0][1] == final  # the same request, sent twice
    profile = res.profile
    assert profile is not None
    assert profile["sendBytesCount"] == final
    # kbit/s of what was sent, over the final hop's duration (domainLookUpStart is its start)
    elapsed_ms = profile["responseEnd"] - profile["domainLookUpStart"]
    assert profile["throughputKbps"] == pytest.approx(final * 8 / elapsed_ms, rel=0.02)


def test_send_bytes_count_of_a_download_is_its_request_head(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    counter = CountingServer()
    srv = raw_server(counter)
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/start").result(10)
    assert res.profile is not None
    assert res.profile["sendBytesCount"] == counter.wait_for(1)[0][1]
    assert res.profile["sendBytesCount"] == len(srv.requests[0])


# --------------------------------------------------------------------------- header


MIXED_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"X-MiXed-CaSe: yes\r\n"
    b"x-lower: 1\r\n"
    b"X-Twice: a\r\n"
    b"X-Twice: b\r\n"
    b"Content-Length: 2\r\n"
    b"\r\n"
    b"ok"
)
SERVER_NAMES = ["Content-Type", "X-MiXed-CaSe", "x-lower", "X-Twice", "Content-Length"]


@pytest.mark.parametrize("api", APIS)
def test_header_keeps_the_servers_names_and_looks_up_in_any_case(
    tmp_path: Path, raw_server: RawFactory, api: str
) -> None:
    srv = raw_server(_answer(MIXED_HEAD, api))
    events: list[wxtransfer.HeadersReceived] = []
    got = threading.Event()

    def on_headers(event: wxtransfer.HeadersReceived) -> None:
        events.append(event)
        got.set()

    with runtime(tmp_path) as rt:
        task = _transfer(rt, api, srv.url + "/x", tmp_path)
        task.on_headers_received(on_headers)
        res = task.result(10)
        assert got.wait(5)
    for header in (res.header, res["header"], events[0].header, events[0]["header"]):
        assert list(header) == SERVER_NAMES
        assert header["content-type"] == header["CONTENT-TYPE"] == "text/plain"
        assert header.get("content-type") == "text/plain"
        assert header.get("x-mixed-case") == "yes"
        assert header.get("X-LOWER") == "1"
        assert "content-length" in header and "X-Nope" not in header
        assert header.get("x-nope") is None and header.get("x-nope", "-") == "-"
        assert header["x-twice"] == "a, b"  # a repeated name: values joined, as before
        with pytest.raises(KeyError):
            header["x-nope"]
        with pytest.raises(TypeError):
            header["X-New"] = "1"  # type: ignore[index]
    assert dict(res.header) == {
        "Content-Type": "text/plain",
        "X-MiXed-CaSe": "yes",
        "x-lower": "1",
        "X-Twice": "a, b",
        "Content-Length": "2",
    }
    assert json.loads(json.dumps(res.to_dict()))["header"] == dict(res.header)
    assert json.loads(json.dumps(dict(res.header))) == dict(res.header)
    assert res.header == {name.lower(): value for name, value in res.header.items()}


def test_cli_json_shows_the_servers_header_names(
    tmp_path: Path, raw_server: RawFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wxtransfer.cli import cli

    srv = raw_server(respond(MIXED_HEAD))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["download", srv.url + "/x.txt", "-o", "x.txt", "--json"], prog_name="wxtransfer"
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert list(out["header"]) == SERVER_NAMES
    assert out["header"]["X-MiXed-CaSe"] == "yes"
    assert (tmp_path / "x.txt").read_bytes() == b"ok"


def test_headers_class() -> None:
    from wxtransfer._results import Headers

    h = Headers([("Content-Type", "a"), ("set-cookie", "x=1"), ("Set-Cookie", "y=2")])
    # a repeat in another case joins the first spelling (one entry per name, in any case)
    assert dict(h) == {"Content-Type": "a", "set-cookie": "x=1, y=2"}
    assert h["SET-COOKIE"] == "x=1, y=2"
    assert len(h) == 2 and list(h.keys()) == ["Content-Type", "set-cookie"]
    assert list(h.values()) == ["a", "x=1, y=2"] and ("Content-Type", "a") in h.items()
    assert repr(h) == "Headers({'Content-Type': 'a', 'set-cookie': 'x=1, y=2'})"
    # equality: names in any case, values exactly
    assert h == {"content-type": "a", "Set-Cookie": "x=1, y=2"}
    assert h == Headers({"CONTENT-TYPE": "a", "set-cookie": "x=1, y=2"})
    assert h != {"content-type": "A", "set-cookie": "x=1, y=2"}
    assert h != {"Content-Type": "a", "content-type": "a", "set-cookie": "x=1, y=2"}
    assert h != {"content-type": "a"} and h != [("Content-Type", "a")]
    assert Headers() == {} and Headers({"A": "1"}) != {1: "1"}
    # not a key, in any form
    assert 1 not in h and h.get(1) is None  # type: ignore[call-overload]
    with pytest.raises(KeyError):
        h[1]  # type: ignore[index]
    # read-only, unhashable like dict, picklable with its spelling
    with pytest.raises((TypeError, AttributeError)):
        h.update({"x": "1"})  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        h.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        hash(h)
    copy = pickle.loads(pickle.dumps(h))
    assert type(copy) is Headers and list(copy) == list(h) and copy["set-cookie"] == "x=1, y=2"
    # results turn a plain mapping into Headers; to_dict gives a plain dict back
    res = wxtransfer.UploadFileResult("ok", 200, {"Content-Type": "a"})
    assert isinstance(res.header, Headers) and res.header["content-type"] == "a"
    assert type(res.to_dict()["header"]) is dict
    assert wxtransfer.HeadersReceived(h, 200).header is h
    assert re.fullmatch(
        r"UploadFileResult\(.*header=Headers\(\{'Content-Type': 'a'\}\).*\)", repr(res)
    )
