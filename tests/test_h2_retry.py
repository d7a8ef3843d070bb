"""An HTTP/2 stream error (libcurl's 92) is retried, and the retried download continues with
Range + If-Range on the same kind of server: SPEC §8 "an HTTP/2 or HTTP/3 stream error"."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import wxtransfer
from tests.servers.h2faults import H2ResetServer

BODY = os.urandom(200_000)


@pytest.fixture
def h2server(tmp_path: Path) -> Iterator[H2ResetServer]:
    with H2ResetServer(tmp_path, BODY, cut_after=50_000, resets=1) as server:
        yield server


@pytest.fixture
def runtime(tmp_path: Path, h2server: H2ResetServer) -> Iterator[wxtransfer.Runtime]:
    with wxtransfer.Runtime(home=tmp_path / "home", ca_file=h2server.ca_file) as rt:
        yield rt


def test_a_reset_stream_is_a_network_error_with_curls_code(
    runtime: wxtransfer.Runtime, h2server: H2ResetServer
) -> None:
    task = runtime.download_file(h2server.url + "/f", enable_http2=True)
    with pytest.raises(wxtransfer.NetworkError) as caught:
        task.result(timeout=20)
    assert caught.value.curl_code == 92  # CURLE_HTTP2_STREAM
    assert caught.value.attempts == 1
    assert h2server.protocols == ["h2"]


def test_a_reset_stream_is_retried_and_continued(
    runtime: wxtransfer.Runtime, h2server: H2ResetServer
) -> None:
    events: list[wxtransfer.RetryEvent] = []
    task = runtime.download_file(
        h2server.url + "/f", enable_http2=True, retry=wxtransfer.Retry(total=2, backoff=0)
    )
    task.on_retry(events.append)
    res = task.result(timeout=20)
    assert res.status_code == 200 and res.attempts == 2
    assert Path(res.temp_file_path).read_bytes() == BODY
    assert res.profile["protocol"] == "h2"
    assert [e.error.curl_code for e in events if e.error] == [92]
    assert h2server.requests[1]["range"] == "bytes=50000-"
    assert h2server.requests[1]["if-range"] == '"h2-v1"'
