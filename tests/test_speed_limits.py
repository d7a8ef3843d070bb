"""max_speed and the runtime's caps (SPEC §8): libcurl's own rate limit.

A limit shows as a floor on the time a transfer takes: 300 kB at 300 kB/s cannot end
much before 1 s (libcurl lets a first burst through, hence the margin). Unlimited, the
same transfers take milliseconds on loopback.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.helpers import runtime

SIZE = 300_000
RATE = 300_000  # bytes per second
FLOOR = 0.7  # seconds: SIZE / RATE, less a first burst


def test_a_download_keeps_under_its_max_speed(tmp_path: Path, server: Any) -> None:
    with runtime(tmp_path) as rt:
        started = time.monotonic()
        res = rt.download_file(server.url + f"/bytes/{SIZE}", max_speed=RATE).result(20)
        took = time.monotonic() - started
    assert res.data_length == SIZE
    assert took >= FLOOR


def test_an_upload_keeps_under_its_max_speed(tmp_path: Path, server: Any) -> None:
    upload = tmp_path / "up.bin"
    upload.write_bytes(b"u" * SIZE)
    with runtime(tmp_path) as rt:
        started = time.monotonic()
        res = rt.upload_file(server.url + "/upload", upload, "file", max_speed=RATE).result(20)
        took = time.monotonic() - started
    assert res.status_code == 200
    assert took >= FLOOR


def test_the_runtime_cap_holds_for_the_sum_of_its_downloads(tmp_path: Path, server: Any) -> None:
    with runtime(tmp_path, max_download_speed=RATE) as rt:
        started = time.monotonic()
        tasks = [rt.download_file(server.url + f"/bytes/{SIZE // 2}") for _ in range(2)]
        results = [t.result(20) for t in tasks]
        took = time.monotonic() - started
    assert [r.data_length for r in results] == [SIZE // 2] * 2
    assert took >= FLOOR  # each alone would fit twice in that time


def test_the_runtime_cap_holds_for_the_sum_of_its_uploads(tmp_path: Path, server: Any) -> None:
    upload = tmp_path / "up.bin"
    upload.write_bytes(b"u" * (SIZE // 2))
    with runtime(tmp_path, max_upload_speed=RATE) as rt:
        started = time.monotonic()
        tasks = [rt.upload_file(server.url + "/upload", upload, "file") for _ in range(2)]
        assert all(t.result(20).status_code == 200 for t in tasks)
        took = time.monotonic() - started
    assert took >= FLOOR


def test_a_cap_in_one_direction_leaves_the_other_alone(tmp_path: Path, server: Any) -> None:
    with runtime(tmp_path, max_upload_speed=1000) as rt:
        started = time.monotonic()
        rt.download_file(server.url + f"/bytes/{SIZE}").result(20)
        assert time.monotonic() - started < 5  # 300 s at the upload cap


@pytest.mark.parametrize("value", [-1, "fast", True, float("nan")])
def test_a_bad_max_speed_is_a_parameter_error(tmp_path: Path, server: Any, value: object) -> None:
    with runtime(tmp_path) as rt:
        err = rt.download_file(server.url + "/bytes/10", max_speed=value).exception(10)  # type: ignore[arg-type]
    assert isinstance(err, wxtransfer.InvalidArgumentError)
    assert "max_speed" in err.err_msg


@pytest.mark.parametrize("option", ["max_download_speed", "max_upload_speed"])
def test_a_bad_runtime_cap_is_refused(tmp_path: Path, option: str) -> None:
    with pytest.raises(ValueError, match=option):
        wxtransfer.Runtime(temp_dir=tmp_path, **{option: -1})
