"""An HTTP/3 stream reset is retried, and the retried download continues with Range +
If-Range on the same kind of server: SPEC §8 "an HTTP/2 or HTTP/3 stream error".

libcurl (ngtcp2 backend, ``recv_closed_stream`` in lib/vquic/cf-ngtcp2.c) reports a stream
reset by the server as ``CURLE_HTTP3`` (95) only while no byte of the body has arrived;
after one it is ``CURLE_PARTIAL_FILE`` (18). So a reset in the middle of the body, the
one worth continuing, is 18; a reset right after the head is 95 and starts over.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import wxtransfer
from tests.servers.h3faults import H3ResetServer

BODY = os.urandom(200_000)


@pytest.fixture(params=[50_000, 0], ids=["mid-body", "after-head"])
def h3server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[H3ResetServer]:
    with H3ResetServer(tmp_path, BODY, cut_after=request.param, resets=1) as server:
        yield server


@pytest.fixture
def runtime(tmp_path: Path, h3server: H3ResetServer) -> Iterator[wxtransfer.Runtime]:
    with wxtransfer.Runtime(home=tmp_path / "home", ca_file=h3server.ca_file) as rt:
        yield rt


def _curl_code(server: H3ResetServer) -> int:
    return 18 if server.cut_after else 95  # CURLE_PARTIAL_FILE, CURLE_HTTP3


def test_a_reset_stream_is_a_network_error_with_curls_code(
    runtime: wxtransfer.Runtime, h3server: H3ResetServer
) -> None:
    task = runtime.download_file(h3server.url + "/f", enable_quic=True)
    with pytest.raises(wxtransfer.NetworkError) as caught:
        task.result(timeout=20)
    assert caught.value.curl_code == _curl_code(h3server)
    assert "HTTP/3 stream 0 reset by server" in caught.value.err_msg
    assert caught.value.attempts == 1
    assert h3server.protocols == ["h3"]


def test_a_reset_stream_is_retried_and_continued(
    runtime: wxtransfer.Runtime, h3server: H3ResetServer
) -> None:
    events: list[wxtransfer.RetryEvent] = []
    task = runtime.download_file(
        h3server.url + "/f", enable_quic=True, retry=wxtransfer.Retry(total=2, backoff=0)
    )
    task.on_retry(events.append)
    res = task.result(timeout=20)
    assert res.status_code == 200 and res.attempts == 2
    assert Path(res.temp_file_path).read_bytes() == BODY
    assert res.profile["protocol"] == "quic"
    assert [e.error.curl_code for e in events if e.error] == [_curl_code(h3server)]
    assert len(h3server.requests) == 2
    if h3server.cut_after:
        assert h3server.requests[1]["range"] == "bytes=50000-"
        assert h3server.requests[1]["if-range"] == '"h3-v1"'
    else:  # nothing kept: the second request starts over
        assert "range" not in h3server.requests[1]
