"""stall_timeout (SPEC §8): no byte moved either way for that long fails the transfer.

Against the test server's hanging and dripping routes and a raw socket that takes an
upload and never answers. Times here bound behaviour (the stall, not the deadline, ended
it); they measure no speed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.helpers import leftovers, runtime
from tests.servers.rawsock import RawServer, read_body, wait_until_closed

RawFactory = Callable[..., RawServer]
DEADLINE_MS = 10000


def failure(task: Any) -> wxtransfer.TransferError:
    err = task.exception(20)
    assert err is not None
    return err


@pytest.mark.parametrize("route", ["/hang", "/hang-before-headers"])
def test_a_download_that_stops_moving_fails_as_stalled(
    tmp_path: Path, server: Any, route: str
) -> None:
    with runtime(tmp_path) as rt:
        started = time.monotonic()
        err = failure(rt.download_file(server.url + route, timeout=DEADLINE_MS, stall_timeout=300))
        took = time.monotonic() - started
        assert leftovers(tmp_path / "tmp") == []
    assert isinstance(err, wxtransfer.TimeoutError) and isinstance(err, TimeoutError)
    assert err.errno == 5
    assert err.err_msg == "downloadFile:fail timeout (stalled: no byte moved for 300 ms)"
    assert 0.3 <= took < DEADLINE_MS / 1000 / 2, "the stall, not the deadline, ended it"


def test_a_slow_download_that_keeps_moving_is_no_stall(tmp_path: Path, server: Any) -> None:
    # 1 KiB every 50 ms for about 1 s: longer than the stall timeout, never still for it.
    with runtime(tmp_path) as rt:
        res = rt.download_file(server.url + "/slow/20480?delay=0.05", stall_timeout=300)
        assert res.result(20).data_length == 20480


def test_an_upload_whose_answer_never_comes_fails_as_stalled(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    def take_body_never_answer(sock: socket.socket, head: bytes) -> None:
        read_body(sock, head)
        wait_until_closed(sock)

    srv = raw_server(take_body_never_answer)
    upload = tmp_path / "up.bin"
    upload.write_bytes(b"u" * 200_000)
    with runtime(tmp_path) as rt:
        err = failure(
            rt.upload_file(srv.url + "/u", upload, "file", timeout=DEADLINE_MS, stall_timeout=300)
        )
    assert isinstance(err, wxtransfer.TimeoutError)
    assert err.err_msg == "uploadFile:fail timeout (stalled: no byte moved for 300 ms)"


def test_the_runtime_default_applies_and_a_call_can_turn_it_off(
    tmp_path: Path, server: Any
) -> None:
    with runtime(tmp_path, default_stall_timeout=300) as rt:
        stalled = failure(rt.download_file(server.url + "/hang", timeout=DEADLINE_MS))
        deadline = failure(rt.download_file(server.url + "/hang", timeout=800, stall_timeout=0))
    assert "stalled" in stalled.err_msg
    assert deadline.err_msg == "downloadFile:fail timeout"  # the deadline, not a stall


@pytest.mark.parametrize("value", [-1, "300", True, float("nan")])
def test_a_bad_stall_timeout_is_a_parameter_error(
    tmp_path: Path, server: Any, value: object
) -> None:
    with runtime(tmp_path) as rt:
        err = failure(rt.download_file(server.url + "/bytes/10", stall_timeout=value))  # type: ignore[arg-type]
    assert isinstance(err, wxtransfer.InvalidArgumentError)
    assert "stall_timeout" in err.err_msg


def test_a_bad_runtime_default_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="default_stall_timeout"):
        wxtransfer.Runtime(default_stall_timeout=-5, temp_dir=tmp_path)


def test_the_module_functions_take_it(tmp_path: Path, server: Any) -> None:
    previous = wxtransfer.set_default_runtime(
        wxtransfer.Runtime(home=tmp_path / "home", temp_dir=tmp_path / "tmp")
    )
    try:
        err = failure(
            wxtransfer.download_file(server.url + "/hang", timeout=DEADLINE_MS, stall_timeout=300)
        )
        assert "stalled" in err.err_msg
    finally:
        mine = wxtransfer.set_default_runtime(previous)
        assert mine is not None
        mine.close()
