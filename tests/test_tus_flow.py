"""The tus flow without sockets: which request follows which answer (SPEC §9)."""

from __future__ import annotations

import pytest

from wxtransfer._errors import NetworkError
from wxtransfer._flow import Answer, Exchange, Flow
from wxtransfer._options import Request, TusUpload
from wxtransfer._results import Headers
from wxtransfer._retry import Retry
from wxtransfer._tus import tus_flow

END = "http://h/files/"
UP = "http://h/files/abc"
TUS = {"Tus-Resumable": "1.0.0"}


def _request(size: int = 100, chunk: int = 0, known: str | None = None) -> Request:
    tus = TusUpload("/f", size, 1, "filename Zg==", chunk, "/cp.json", known)
    return Request(api="uploadFile", url=END, headers=[("X-A", "1")], timeout_ms=0, tus=tus)


def _answer(status: int, **head: str) -> Answer:
    named = {k.replace("_", "-"): v for k, v in head.items()}
    return Answer(status=status, head=Headers({**TUS, **named}))


def _drive(flow: Flow, answers: list[Answer]) -> list[Exchange]:
    seen = [next(flow)]
    for answer in answers:
        try:
            seen.append(flow.send(answer))
        except StopIteration:
            return seen
    raise AssertionError("the flow went on after the last answer")


def _sent(exchange: Exchange) -> dict[str, str]:
    return dict(exchange.headers)


def test_create_then_patch_the_whole_file() -> None:
    post, patch = _drive(
        tus_flow(_request()),
        [_answer(201, Location="/files/abc"), _answer(204, Upload_Offset="100")],
    )
    assert post.method == "POST" and post.url == END
    assert _sent(post) == {
        "X-A": "1", "Tus-Resumable": "1.0.0", "Upload-Length": "100",
        "Upload-Metadata": "filename Zg==",
    }  # fmt: skip
    assert (patch.method, patch.url, patch.send, patch.keep) == ("PATCH", UP, (0, 100), UP)
    assert _sent(patch)["Upload-Offset"] == "0"
    assert _sent(patch)["Content-Type"] == "application/offset+octet-stream"


def test_chunks_follow_the_servers_offset() -> None:
    ex = _drive(
        tus_flow(_request(chunk=40)),
        [
            _answer(201, Location=UP),
            _answer(204, Upload_Offset="40"),
            _answer(204, Upload_Offset="80"),
            _answer(204, Upload_Offset="100"),
        ],
    )
    assert [e.send for e in ex[1:]] == [(0, 40), (40, 40), (80, 20)]
    assert [e.keep for e in ex[1:]] == [UP, None, None]


def test_a_kept_upload_asks_its_offset_first() -> None:
    head, patch = _drive(
        tus_flow(_request(known=UP)),
        [_answer(200, Upload_Offset="60", Upload_Length="100"), _answer(204, Upload_Offset="100")],
    )
    assert (head.method, head.url) == ("HEAD", UP)
    assert patch.send == (60, 40) and patch.keep is None


def test_a_finished_kept_upload_ends_at_its_head() -> None:
    [head] = _drive(tus_flow(_request(known=UP)), [_answer(200, Upload_Offset="100")])
    assert head.method == "HEAD"


@pytest.mark.parametrize("status", [404, 410])
def test_an_upload_the_server_forgot_starts_anew_once(status: int) -> None:
    ex = _drive(
        tus_flow(_request(known=UP)),
        [_answer(status), _answer(201, Location="/files/new"), _answer(204, Upload_Offset="100")],
    )
    assert [e.method for e in ex] == ["HEAD", "POST", "PATCH"]
    assert ex[2].keep == "http://h/files/new"


def test_another_length_is_another_files_upload() -> None:
    ex = _drive(
        tus_flow(_request(known=UP)),
        [_answer(200, Upload_Offset="5", Upload_Length="7"), _answer(201, Location=UP + "2"),
         _answer(204, Upload_Offset="100")],
    )  # fmt: skip
    assert [e.method for e in ex] == ["HEAD", "POST", "PATCH"]


def test_an_error_is_retried_from_the_servers_offset() -> None:
    cut = NetworkError("uploadFile:fail failed receiving data (connection reset)", 600003,
                       curl_code=56)  # fmt: skip
    ex = _drive(
        tus_flow(_request(), Retry(total=2, backoff=0.5), draw=lambda: 1.0),
        [
            _answer(201, Location=UP),
            Answer(error=cut),
            _answer(200, Upload_Offset="70"),
            _answer(204, Upload_Offset="100"),
        ],
    )
    assert [e.method for e in ex] == ["POST", "PATCH", "HEAD", "PATCH"]
    assert ex[2].delay == 0.5 and ex[2].event is not None and ex[2].event.attempt == 2
    assert ex[3].send == (70, 30) and ex[3].event is None


def test_without_retry_the_error_is_the_failure() -> None:
    cut = NetworkError("uploadFile:fail x", 600003, curl_code=56)
    flow = tus_flow(_request())
    next(flow)
    flow.send(_answer(201, Location=UP))
    with pytest.raises(NetworkError) as caught:
        flow.send(Answer(error=cut))
    assert caught.value is cut


def test_a_409_asks_the_offset_without_a_retry() -> None:
    ex = _drive(
        tus_flow(_request(known=UP)),
        [_answer(200, Upload_Offset="0"), _answer(409), _answer(200, Upload_Offset="50"),
         _answer(204, Upload_Offset="100")],
    )  # fmt: skip
    assert [e.method for e in ex] == ["HEAD", "PATCH", "HEAD", "PATCH"]
    assert ex[2].event is None and ex[3].send == (50, 50)


def test_a_status_worth_a_retry_waits_as_retry_after_says() -> None:
    ex = _drive(
        tus_flow(_request(), Retry(total=1)),
        [_answer(201, Location=UP), _answer(503, Retry_After="3"), _answer(200, Upload_Offset="0"),
         _answer(204, Upload_Offset="100")],
    )  # fmt: skip
    assert ex[2].method == "HEAD" and ex[2].delay == 3.0
    assert ex[2].event is not None and ex[2].event.status_code == 503


def test_other_statuses_are_the_final_response() -> None:
    ex = _drive(tus_flow(_request(), Retry(total=3)), [_answer(413)])
    assert [e.method for e in ex] == ["POST"]


def test_an_answer_without_tus_resumable_is_not_tus() -> None:
    flow = tus_flow(_request())
    next(flow)
    with pytest.raises(NetworkError, match="does not speak tus"):
        flow.send(Answer(status=200, head=Headers({"Content-Type": "text/html"})))


def test_a_patch_the_server_took_nothing_of_fails() -> None:
    flow = tus_flow(_request(known=UP))
    next(flow)
    flow.send(_answer(200, Upload_Offset="10"))
    with pytest.raises(NetworkError, match="took none of the bytes"):
        flow.send(_answer(204, Upload_Offset="10"))


def test_a_wait_past_the_deadline_is_not_taken() -> None:
    cut = NetworkError("uploadFile:fail x", 600003, curl_code=56)
    flow = tus_flow(
        _request(), Retry(total=3, backoff=10), deadline=lambda: 5.0, clock=lambda: 0.0,
        draw=lambda: 1.0,
    )  # fmt: skip
    next(flow)
    flow.send(_answer(201, Location=UP))
    with pytest.raises(NetworkError):
        flow.send(Answer(error=cut))


def test_the_budget_starts_afresh_while_the_offset_moves_on() -> None:
    cut = NetworkError("uploadFile:fail x", 600003, curl_code=56)
    answers = [_answer(201, Location=UP)]
    for held in (10, 20, 30, 40):  # four cuts, each after the server took 10 more bytes
        answers += [Answer(error=cut), _answer(200, Upload_Offset=str(held))]
    answers.append(_answer(204, Upload_Offset="100"))
    ex = _drive(tus_flow(_request(), Retry(total=1, backoff=0.5), draw=lambda: 1.0), answers)
    assert [e.method for e in ex].count("HEAD") == 4
    assert [e.delay for e in ex if e.method == "HEAD"] == [0.5] * 4  # no growing backoff
    assert [e.event.attempt for e in ex if e.event] == [2, 3, 4, 5]


def test_retries_that_move_nothing_run_out() -> None:
    cut = NetworkError("uploadFile:fail x", 600003, curl_code=56)
    flow = tus_flow(_request(), Retry(total=2, backoff=0), draw=lambda: 1.0)
    next(flow)
    flow.send(_answer(201, Location=UP))
    for _ in range(2):
        assert flow.send(Answer(error=cut)).method == "HEAD"
        assert flow.send(_answer(200, Upload_Offset="0")).method == "PATCH"
    with pytest.raises(NetworkError):
        flow.send(Answer(error=cut))
