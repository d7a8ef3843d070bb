"""Retries (SPEC §8): what is tried again, when, and how a download continues.

The value object, the backoff maths and the flow are tested without sockets (a fake
clock and a fixed draw); the whole against raw-socket servers that fail on purpose
(tests/servers/faults.py), asserting what the client sent as well as what it kept.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.helpers import leftovers, runtime
from tests.servers.faults import Faulty
from tests.servers.rawsock import RawServer
from wxtransfer._errors import NetworkError
from wxtransfer._flow import Answer, Exchange, advance, transfer_flow
from wxtransfer._options import validate_download, validate_upload
from wxtransfer._retry import backoff_delay, parse_retry_after
from wxtransfer._transport import map_curl_error

RawFactory = Callable[..., RawServer]
BODY = os.urandom(200_000)
FAST = wxtransfer.Retry(total=3, backoff=0.01)


# ---- the value object and its maths -------------------------------------------------------


def test_retry_is_a_frozen_value_with_the_specs_defaults() -> None:
    r = wxtransfer.Retry()
    assert (r.total, r.backoff, r.max_backoff, r.retry_after, r.resend_uploads) == (
        3,
        0.5,
        30.0,
        True,
        False,
    )
    assert r.statuses == frozenset({408, 429, 500, 502, 503, 504})
    with pytest.raises(AttributeError):
        r.total = 5  # type: ignore[misc]
    assert wxtransfer.Retry(statuses=[503]).statuses == frozenset({503})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"total": -1},
        {"total": True},
        {"backoff": -0.1},
        {"max_backoff": float("inf")},
        {"statuses": [42]},
    ],
)
def test_a_bad_retry_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Retry"):
        wxtransfer.Retry(**kwargs)


def test_backoff_is_full_jitter_over_a_capped_doubling() -> None:
    r = wxtransfer.Retry(backoff=0.5, max_backoff=3.0)
    top = [backoff_delay(r, n, lambda: 0.999999) for n in range(2, 8)]
    assert top == pytest.approx([0.5, 1.0, 2.0, 3.0, 3.0, 3.0], rel=1e-5)
    assert backoff_delay(r, 4, lambda: 0.0) == 0.0
    assert backoff_delay(r, 4, lambda: 0.25) == pytest.approx(0.5)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 0 ", now) == 0.0
    date = "Fri, 15 Jan 2027 08:00:10 GMT"  # 1800000010
    assert parse_retry_after(date, now) == pytest.approx(10.0)
    assert parse_retry_after(date, now + 60) == 0.0  # in the past: at once
    for bad in (None, "soon", "-3", "1.5"):
        assert parse_retry_after(bad, now) is None


# ---- the flow, without sockets -----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def flow_for(request: Any, retry: Any, deadline: float | None = None, clock: Any = None) -> Any:
    clock = clock or Clock()
    return transfer_flow(
        request,
        None,
        retry,
        deadline=lambda: deadline,
        clock=clock,
        wall_clock=lambda: 1_800_000_000.0,
        draw=lambda: 0.5,
    )


def refused() -> wxtransfer.TransferError:
    return map_curl_error("downloadFile", 7, "Connection refused")


def cut() -> wxtransfer.TransferError:
    return map_curl_error("downloadFile", 18, "end of response with 5 bytes missing")


def test_a_failure_worth_it_is_tried_again_after_its_wait() -> None:
    flow = flow_for(validate_download("http://a.test/f"), wxtransfer.Retry(total=2, backoff=1.0))
    first = next(flow)
    assert first.event is None and first.delay == 0
    second = advance(flow, Answer(error=refused()))
    assert isinstance(second, Exchange)
    assert second.delay == 0.5  # 1.0 * 2**0, half of it drawn
    assert second.event == wxtransfer.RetryEvent(2, 0.5, second.event.error, 0)
    third = advance(flow, Answer(error=refused()))
    assert third is not None and third.delay == 1.0 and third.event is not None
    assert third.event.attempt == 3
    with pytest.raises(NetworkError):  # retries spent: the last error
        advance(flow, Answer(error=refused()))


def test_what_is_never_tried_again() -> None:
    never = [
        map_curl_error("downloadFile", 60, "certificate"),  # TLS certificate
        map_curl_error("downloadFile", 28, "deadline"),  # the deadline itself
        wxtransfer.FileError("downloadFile:fail download save file error: full", 603300),
        wxtransfer.AbortError("downloadFile:fail abort", 600003),
    ]
    for error in never:
        flow = flow_for(validate_download("http://a.test/f"), FAST)
        next(flow)
        with pytest.raises(type(error)):
            advance(flow, Answer(error=error))


def test_a_stall_is_tried_again() -> None:
    flow = flow_for(validate_download("http://a.test/f"), FAST)
    next(flow)
    stall = wxtransfer.TimeoutError("downloadFile:fail timeout (stalled: no byte ...)", 5)
    assert advance(flow, Answer(error=stall)) is not None


def test_a_download_with_a_validator_continues_else_starts_over() -> None:
    flow = flow_for(validate_download("http://a.test/f"), FAST)
    next(flow)
    held = Answer(error=cut(), held=1000, validator='"v1"', total=5000)
    again = advance(flow, held)
    assert again is not None and again.resume == (1000, '"v1"', 5000)
    assert ("Range", "bytes=1000-") in again.headers and ("If-Range", '"v1"') in again.headers
    unknown = advance(flow, Answer(error=cut(), held=1000, validator=None, total=0))
    assert unknown is not None and unknown.resume is None
    assert not any(k in ("Range", "If-Range") for k, _ in unknown.headers)


def test_a_range_answer_that_did_not_fit_starts_over() -> None:
    flow = flow_for(validate_download("http://a.test/f"), FAST)
    next(flow)
    misfit = NetworkError("downloadFile:fail the server's range answer does not fit", 600003)
    again = advance(
        flow, Answer(error=misfit, held=1000, validator='"v1"', total=5000, restart=True)
    )
    assert again is not None and again.resume is None


def test_a_callers_own_range_gets_no_resume_logic() -> None:
    request = validate_download("http://a.test/f", header={"Range": "bytes=0-99"})
    flow = flow_for(request, FAST)
    next(flow)
    again = advance(flow, Answer(error=cut(), held=50, validator='"v1"', total=100))
    assert again is not None and again.resume is None


def test_a_wait_past_the_deadline_is_not_taken() -> None:
    clock = Clock()
    flow = flow_for(
        validate_download("http://a.test/f"), wxtransfer.Retry(backoff=10.0), 102.0, clock
    )
    first = next(flow)
    with pytest.raises(NetworkError):  # a 5 s wait, 2 s left: the last error at once
        advance(flow, Answer(error=refused()))
    assert first.judge is not None
    assert first.judge(503, {}) is None  # nor for a status: it is the final response
    assert first.judge(503, {"retry-after": "1"}) == 1.0  # a wait that fits is taken


def test_statuses_are_judged_while_their_body_can_still_be_kept() -> None:
    flow = flow_for(validate_download("http://a.test/f"), wxtransfer.Retry(total=1))
    first = next(flow)
    assert first.judge is not None
    assert first.judge(404, {}) is None  # not in statuses: final
    assert first.judge(503, {"retry-after": "3"}) == 3.0  # exactly, uncapped
    assert first.judge(500, {"retry-after": "3"}) == 0.25  # Retry-After only on 429/503
    second = advance(flow, Answer(status=503, retry_wait=3.0))
    assert second is not None and second.delay == 3.0
    assert second.event is not None and second.event.status_code == 503
    assert second.event.error is None
    assert second.judge is None  # no retry left: whatever comes is the result


def test_uploads_are_tried_again_only_when_nothing_left(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    request = validate_upload("http://a.test/u", f, "file")
    flow = flow_for(request, FAST)
    first = next(flow)
    assert first.judge is not None and first.judge(503, {}) is None  # the body was sent
    refused_up = map_curl_error("uploadFile", 7, "Connection refused")
    assert advance(flow, Answer(error=refused_up)) is not None
    with pytest.raises(NetworkError):
        advance(flow, Answer(error=map_curl_error("uploadFile", 56, "reset")))
    resend = flow_for(request, wxtransfer.Retry(resend_uploads=True, backoff=0.01))
    first = next(resend)
    assert first.judge is not None and first.judge(503, {}) is not None
    assert advance(resend, Answer(error=map_curl_error("uploadFile", 56, "reset"))) is not None


# ---- against servers that fail on purpose --------------------------------------------------


def test_a_cut_download_continues_with_range_and_if_range(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    gate = threading.Event()  # retry events are not replayed: listen before they come
    faulty = Faulty(BODY, cut_after=70_000, cuts=2, gate=gate)
    srv = raw_server(faulty)
    retries: list[wxtransfer.RetryEvent] = []
    progress: list[int] = []
    with runtime(tmp_path) as rt:
        task = rt.download_file(srv.url + "/f", file_path=tmp_path / "f.bin", retry=FAST)
        task.on_retry(retries.append)
        task.on_progress_update(lambda p: progress.append(p.total_bytes_written))
        gate.set()
        res = task.result(20)
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert (res.status_code, res.data_length, res.attempts) == (200, len(BODY), 3)
    ranges = [(r.get("range"), r.get("if-range")) for r in faulty.requests]
    assert ranges == [(None, None), ("bytes=70000-", '"v1"'), ("bytes=140000-", '"v1"')]
    assert faulty.sent == len(BODY)  # not a byte sent twice
    assert [(e.attempt, e.status_code) for e in retries] == [(2, 0), (3, 0)]
    assert all(isinstance(e.error, wxtransfer.NetworkError) for e in retries)
    assert progress == sorted(progress) and progress[-1] == len(BODY)


def test_without_an_etag_last_modified_validates(tmp_path: Path, raw_server: RawFactory) -> None:
    faulty = Faulty(BODY, cut_after=50_000, cuts=1, etag=None)
    srv = raw_server(faulty)
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/f", retry=FAST).result(20)
        assert Path(res.temp_file_path or "").read_bytes() == BODY
    assert faulty.requests[1]["if-range"] == "Wed, 21 Oct 2026 07:28:00 GMT"


def test_a_weak_etag_alone_starts_over(tmp_path: Path, raw_server: RawFactory) -> None:
    faulty = Faulty(BODY, cut_after=50_000, cuts=1, etag='W/"weak"', last_modified=None)
    srv = raw_server(faulty)
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/f", retry=FAST).result(20)
        assert Path(res.temp_file_path or "").read_bytes() == BODY
    assert "range" not in faulty.requests[1]
    assert faulty.sent == 50_000 + len(BODY)


def test_a_200_that_ignores_range_starts_over_in_the_same_file(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    faulty = Faulty(BODY, cut_after=120_000, cuts=1, ignore_range=True)
    srv = raw_server(faulty)
    progress: list[int] = []
    with runtime(tmp_path) as rt:
        task = rt.download_file(srv.url + "/f", file_path=tmp_path / "f.bin", retry=FAST)
        task.on_progress_update(lambda p: progress.append(p.progress))
        res = task.result(20)
    assert (tmp_path / "f.bin").read_bytes() == BODY  # not 120 kB of the first + the whole
    assert res.data_length == len(BODY)
    assert faulty.requests[1]["range"] == "bytes=120000-"
    assert progress == sorted(progress)  # it never went backwards while starting over


def test_a_new_version_is_never_joined_to_the_old(tmp_path: Path, raw_server: RawFactory) -> None:
    faulty = Faulty(BODY, cut_after=60_000, cuts=1, versions=True)
    srv = raw_server(faulty)
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/f", retry=FAST).result(20)
        data = Path(res.temp_file_path or "").read_bytes()
    assert data == faulty.version(1)[0]  # the second version, whole
    assert faulty.requests[1]["if-range"] == '"v1"'


def test_a_206_that_does_not_fit_is_discarded_and_counts(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    faulty = Faulty(BODY, cut_after=60_000, cuts=1, bad_range=True)
    srv = raw_server(faulty)
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/f", retry=FAST).result(20)
        assert Path(res.temp_file_path or "").read_bytes() == BODY
    assert res.attempts == 3  # cut, misfit 206, then whole from byte 0
    assert "range" not in faulty.requests[2]


def test_503_with_retry_after_waits_then_succeeds(tmp_path: Path, raw_server: RawFactory) -> None:
    gate = threading.Event()
    faulty = Faulty(BODY, statuses=[503], retry_after="1", gate=gate)
    srv = raw_server(faulty)
    headers: list[int] = []
    retries: list[wxtransfer.RetryEvent] = []
    with runtime(tmp_path) as rt:
        started = time.monotonic()
        task = rt.download_file(srv.url + "/f", retry=wxtransfer.Retry(total=2))
        task.on_headers_received(lambda h: headers.append(h.status_code))
        task.on_retry(retries.append)
        gate.set()
        res = task.result(20)
        took = time.monotonic() - started
    assert res.status_code == 200 and res.data_length == len(BODY)
    assert took >= 1.0  # Retry-After: 1, exactly
    assert [(e.attempt, e.delay, e.error, e.status_code) for e in retries] == [(2, 1.0, None, 503)]
    assert headers == [200]  # the 503 was not the response kept


def test_when_retries_run_out_on_a_status_that_response_is_the_result(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    faulty = Faulty(BODY, statuses=[503, 503, 503])
    srv = raw_server(faulty)
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/f", retry=wxtransfer.Retry(total=2, backoff=0.01))
        result = res.result(20)
        assert Path(result.temp_file_path or "").read_bytes() == b"busy"
    assert (result.status_code, result.attempts) == (503, 3)


def test_a_retry_after_past_the_deadline_returns_the_response_at_once(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    srv = raw_server(Faulty(BODY, statuses=[503], retry_after="30"))
    with runtime(tmp_path) as rt:
        started = time.monotonic()
        res = rt.download_file(srv.url + "/f", retry=3, timeout=2000).result(20)
        assert time.monotonic() - started < 2
    assert res.status_code == 503


def test_a_stalled_download_is_tried_again_and_continued(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    faulty = Faulty(BODY, stall_first=True)
    srv = raw_server(faulty)
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/f", retry=FAST, stall_timeout=300).result(20)
        assert Path(res.temp_file_path or "").read_bytes() == BODY
    assert faulty.requests[1]["range"] == "bytes=1000-"


def test_cannot_connect_is_tried_again_for_uploads_too(tmp_path: Path) -> None:
    import socket

    from tests.servers import free_port
    from tests.servers.rawsock import read_body_then

    port = free_port()
    upload = tmp_path / "u.bin"
    upload.write_bytes(b"u" * 1000)
    handler = read_body_then(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    late: list[Any] = []

    def listen_later() -> None:
        time.sleep(0.3)
        sock = socket.create_server(("127.0.0.1", port))
        late.append(sock)
        conn, _ = sock.accept()
        with conn:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += conn.recv(1)
            handler(conn, head)

    thread = threading.Thread(target=listen_later, daemon=True)
    thread.start()
    try:
        with runtime(tmp_path) as rt:
            res = rt.upload_file(
                f"http://127.0.0.1:{port}/u",
                upload,
                "file",
                retry=wxtransfer.Retry(total=8, backoff=0.2, max_backoff=0.2),
            ).result(20)
        assert (res.status_code, res.data) == (200, "ok")
        assert res.attempts >= 2
        assert handler.bodies and handler.bodies[0].count(b"u" * 1000) == 1
    finally:
        thread.join(10)
        for sock in late:
            sock.close()


def test_an_abort_during_the_wait_ends_at_once(tmp_path: Path, raw_server: RawFactory) -> None:
    gate = threading.Event()
    srv = raw_server(Faulty(BODY, statuses=[503], retry_after="20", gate=gate))
    with runtime(tmp_path) as rt:
        task = rt.download_file(srv.url + "/f", retry=3, timeout=0)
        got = threading.Event()
        task.on_retry(lambda e: got.set())
        gate.set()
        assert got.wait(10)
        started = time.monotonic()
        task.abort()
        assert isinstance(task.exception(10), wxtransfer.AbortError)
        assert time.monotonic() - started < 5
        assert leftovers(tmp_path / "tmp") == []


def test_the_runtime_default_and_a_calls_zero(tmp_path: Path, raw_server: RawFactory) -> None:
    faulty = Faulty(BODY, cut_after=10_000, cuts=1)
    srv = raw_server(faulty)
    with runtime(tmp_path, default_retry=FAST) as rt:
        assert rt.download_file(srv.url + "/f").result(20).data_length == len(BODY)
        faulty.cuts = len(faulty.requests) + 1  # the next one is cut again
        err = rt.download_file(srv.url + "/f", retry=0).exception(20)
    assert isinstance(err, wxtransfer.NetworkError) and err.attempts == 1


def test_a_bad_retry_argument_is_a_parameter_error(tmp_path: Path) -> None:
    with runtime(tmp_path) as rt:
        err = rt.download_file("http://127.0.0.1:1/x", retry=-1).exception(10)
    assert isinstance(err, wxtransfer.InvalidArgumentError) and "retry" in err.err_msg
    assert err.attempts == 0


def test_a_retry_is_no_redirect_in_the_profile(
    tmp_path: Path, raw_server: RawFactory, server: Any
) -> None:
    srv = raw_server(Faulty(BODY, cut_after=10_000, cuts=1))
    with runtime(tmp_path) as rt:
        retried = rt.download_file(srv.url + "/f", retry=FAST).result(20)
        redirected = rt.download_file(server.url + "/redirect/1").result(20)
    assert retried.profile is not None and redirected.profile is not None
    assert retried.attempts == 2 and retried.profile["redirectStart"] == 0
    assert redirected.attempts == 2 and redirected.profile["redirectStart"] > 0


# ---- connect_timeout and max_time -----------------------------------------------------------


@pytest.fixture
def unanswered_port() -> Any:
    """A port whose accept queue is full: a new connection's SYN goes unanswered, so a
    connect hangs (on loopback, without sending anything anywhere else)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    time.sleep(0.1)
    yield port
    for s in fillers:
        s.close()
    server.close()


def test_connect_timeout_is_cannot_connect_and_retried(
    tmp_path: Path, unanswered_port: int
) -> None:
    url = f"http://127.0.0.1:{unanswered_port}/x"
    with runtime(tmp_path) as rt:
        started = time.monotonic()
        err = rt.download_file(url, connect_timeout=200, timeout=10_000).exception(10)
        assert time.monotonic() - started < 5  # its own limit, not the deadline
        again = rt.download_file(
            url, connect_timeout=200, timeout=10_000, retry=wxtransfer.Retry(total=2, backoff=0)
        ).exception(10)
    assert isinstance(err, wxtransfer.NetworkError) and not isinstance(err, TimeoutError)
    assert (err.errno, err.curl_code) == (600001, 28)
    assert err.err_msg == "downloadFile:fail could not connect: no connection within 200 ms"
    assert isinstance(again, wxtransfer.NetworkError) and again.attempts == 3


def test_no_attempt_starts_past_max_time() -> None:
    clock = Clock()
    retry = wxtransfer.Retry(total=10, backoff=2.0, max_backoff=2.0, max_time=5.0)
    flow = flow_for(validate_download("http://a.test/f"), retry, None, clock)  # waits: 1 s
    next(flow)  # the first attempt starts at 0 s
    clock.now += 3.0  # and fails at 3 s: the next would start at 4 s
    assert advance(flow, Answer(error=refused())) is not None
    clock.now += 1.5  # that one fails at 4.5 s: the next would start at 5.5 s, past 5 s
    with pytest.raises(NetworkError):
        advance(flow, Answer(error=refused()))


# ---- more of what is tried again, and how ----------------------------------------------------


class Sequence:
    """A raw-socket handler answering request n with ``answers[n]`` (bytes sent, then
    closed); records the heads."""

    def __init__(self, *answers: bytes) -> None:
        self.answers = list(answers)
        self.heads: list[bytes] = []
        self._lock = threading.Lock()

    def __call__(self, sock: Any, head: bytes) -> None:
        from tests.servers.rawsock import graceful_close

        with self._lock:
            self.heads.append(head)
            raw = self.answers.pop(0) if self.answers else b""
        if raw:
            sock.sendall(raw)
        graceful_close(sock)


def whole(body: bytes, *extra: str) -> bytes:
    head = [f"Content-Length: {len(body)}", 'ETag: "v1"', *extra]
    return ("HTTP/1.1 200 OK\r\n" + "\r\n".join(head) + "\r\n\r\n").encode() + body


def test_an_empty_reply_is_tried_again(tmp_path: Path, raw_server: RawFactory) -> None:
    seq = Sequence(b"", whole(BODY))  # the first connection closes without a byte
    srv = raw_server(seq)
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/f", retry=FAST).result(20)
        assert Path(res.temp_file_path or "").read_bytes() == BODY
    assert res.attempts == 2


def test_a_chunked_body_cut_short_starts_over(tmp_path: Path, raw_server: RawFactory) -> None:
    chunk = BODY[:50_000]
    cut = (
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: "v1"\r\n\r\n'
        + f"{len(chunk):x}\r\n".encode()
        + chunk
        + b"\r\n"
    )  # no last chunk: no length known, nothing to continue
    seq = Sequence(cut, whole(BODY))
    srv = raw_server(seq)
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/f", retry=FAST).result(20)
        assert Path(res.temp_file_path or "").read_bytes() == BODY
    assert b"range:" not in seq.heads[1].lower()


def test_retry_events_are_not_replayed_to_a_late_listener(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    gate = threading.Event()
    srv = raw_server(Faulty(BODY, statuses=[503], retry_after="1", gate=gate))
    early: list[wxtransfer.RetryEvent] = []
    late: list[wxtransfer.RetryEvent] = []
    first = threading.Event()
    with runtime(tmp_path) as rt:
        task = rt.download_file(srv.url + "/f", retry=2)
        task.on_retry(lambda e: (early.append(e), first.set()))
        gate.set()
        assert first.wait(10)
        task.onRetry(late.append)  # after the only retry: nothing to replay
        assert task.result(20).status_code == 200
    assert len(early) == 1 and late == []
