"""Downloads: streamed to disk, temp files, file_path, progress, headers, redirects."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.helpers import Recorder, leftovers, runtime
from tests.servers.app import pattern
from tests.servers.rawsock import respond


def test_download_to_a_temp_file(tmp_path: Path, server: Any) -> None:
    with runtime(tmp_path) as rt:
        res = rt.download_file(server.url + "/bytes/300000").result(10)
        path = Path(res.temp_file_path or "")
        assert path.read_bytes() == pattern(300000)
        assert res.data_length == 300000
        assert res.status_code == 200
        assert res.file_path is None
        assert res["tempFilePath"] == str(path)
        assert res.header["Content-Length"] == "300000"
        assert path.parent.parent == tmp_path / "tmp"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not path.exists()  # removed when the runtime closed


def test_temp_file_keeps_the_extension(tmp_path: Path, server: Any) -> None:
    with runtime(tmp_path) as rt:
        from_url = rt.download_file(server.url + "/file/photo.JPG").result(10)
        from_type = rt.download_file(server.url + "/bytes/10?type=image/png").result(10)
        neither = rt.download_file(server.url + "/bytes/10").result(10)
    assert str(from_url.temp_file_path).endswith(".jpg")
    assert str(from_type.temp_file_path).endswith(".png")
    assert os.path.splitext(str(neither.temp_file_path))[1] in ("", ".bin")


def test_download_to_file_path_overwrites_only_when_complete(tmp_path: Path, server: Any) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with runtime(tmp_path) as rt:
        res = rt.download_file(server.url + "/bytes/5000", file_path=target).result(10)
    assert res.file_path == str(target)
    assert res.temp_file_path is None
    assert "tempFilePath" not in res
    assert target.read_bytes() == pattern(5000)
    assert [p for p in os.listdir(tmp_path) if p != "tmp"] == ["out.bin"]


def test_failed_download_keeps_the_old_file(tmp_path: Path, server: Any) -> None:
    target = tmp_path / "keep.bin"
    target.write_bytes(b"precious")
    with runtime(tmp_path) as rt:
        err = rt.download_file(server.url + "/truncated/10000", file_path=target).exception(10)
    assert isinstance(err, wxtransfer.NetworkError)
    assert target.read_bytes() == b"precious"
    assert [p for p in os.listdir(tmp_path) if p.endswith(".wxpart")] == []


def test_404_is_a_success(tmp_path: Path, server: Any) -> None:
    with runtime(tmp_path) as rt:
        res = rt.download_file(server.url + "/status/404").result(10)
        assert res.status_code == 404
        assert Path(str(res.temp_file_path)).read_bytes() == b"status 404"


def test_progress_is_monotonic_and_ends_at_the_total(tmp_path: Path, server: Any) -> None:
    rec = Recorder()
    n = 2_000_000
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + f"/bytes/{n}?delay=0.001", **rec.callbacks())
        task.on_progress_update(rec("progress"))
        task.on_headers_received(rec("headers"))
        task.result(10)
    kinds = rec.kinds()
    assert kinds[0] == "headers"
    assert kinds[-2:] == ["success", "complete"]
    events = [e for k, e in rec.events if k == "progress"]
    percents = [e.progress for e in events]
    written = [e.total_bytes_written for e in events]
    assert percents == sorted(percents) and written == sorted(written)
    assert len(set(percents)) == len(percents), "one event per percent change"
    assert len(percents) > 5
    assert all(e.total_bytes_expected_to_write == n for e in events)
    assert (events[-1].progress, events[-1].total_bytes_written) == (100, n)
    assert all(e.progress == e.total_bytes_written * 100 // n for e in events)


def test_unknown_length_progress_stays_zero_then_ends_at_100(tmp_path: Path, server: Any) -> None:
    rec = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/chunked/300000?delay=0.02", **rec.callbacks())
        task.on_progress_update(rec("progress"))
        res = task.result(10)
    events = [e for k, e in rec.events if k == "progress"]
    assert res.data_length == 300000
    *moving, last = events
    assert moving, "events at least every 100 ms while bytes move"
    assert all((e.progress, e.total_bytes_expected_to_write) == (0, 0) for e in moving)
    assert [e.total_bytes_written for e in moving] == sorted(e.total_bytes_written for e in moving)
    assert (last.progress, last.total_bytes_written, last.total_bytes_expected_to_write) == (
        100,
        300000,
        300000,
    )


def test_empty_body_still_ends_with_a_final_event(tmp_path: Path, server: Any) -> None:
    rec = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/bytes/0")
        task.on_progress_update(rec("progress"))
        res = task.result(10)
    assert res.data_length == 0
    assert [(e.progress, e.total_bytes_written) for _, e in rec.events] == [(100, 0)]


def test_headers_event_carries_header_and_status(tmp_path: Path, server: Any) -> None:
    rec = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/status/201")
        task.on_headers_received(rec("headers"))
        task.result(10)
    [(_, event)] = rec.events
    assert event.status_code == 201
    assert event["header"]["Content-Length"] == "10"


def test_redirects_are_followed_and_only_the_final_headers_are_reported(
    tmp_path: Path, server: Any
) -> None:
    rec = Recorder()
    with runtime(tmp_path) as rt:
        for status in (301, 302, 303, 307, 308):
            task = rt.download_file(server.url + f"/redirect/3?status={status}")
            task.on_headers_received(rec("headers"))
            res = task.result(10)
            assert res.status_code == 200
            assert Path(str(res.temp_file_path)).read_bytes() == b"done"
            assert res.profile is not None and res.profile["redirectEnd"] > 0
    assert [e.status_code for _, e in rec.events] == [200] * 5


def test_private_headers_are_not_carried_to_another_host(
    tmp_path: Path, server: Any, httpbin_url: str
) -> None:
    import json

    secret = {"Authorization": "Bearer s3cret", "Cookie": "a=b", "X-Keep": "yes"}
    with runtime(tmp_path) as rt:
        same = rt.download_file(server.url + "/redirect-to?url=/headers", header=secret).result(10)
        other = rt.download_file(
            server.url + f"/redirect-to?url={httpbin_url}/headers", header=secret
        ).result(10)
        same_seen = json.loads(Path(str(same.temp_file_path)).read_text())["headers"]
        other_seen = json.loads(Path(str(other.temp_file_path)).read_text())["headers"]
    assert {"authorization", "cookie", "x-keep"} <= set(same_seen)
    assert "X-Keep" in other_seen
    assert "Authorization" not in other_seen and "Cookie" not in other_seen


def test_custom_headers_are_sent_and_no_referer(tmp_path: Path, server: Any) -> None:
    import json

    with runtime(tmp_path) as rt:
        res = rt.download_file(
            server.url + "/headers", header={"X-Num": 1.5, "User-Agent": "mine"}
        ).result(10)
        seen = json.loads(Path(str(res.temp_file_path)).read_text())["headers"]
    assert seen["x-num"] == "1.5"
    assert seen["user-agent"] == "mine"
    assert "referer" not in seen


def test_profile_has_the_platform_fields(tmp_path: Path, server: Any) -> None:
    with runtime(tmp_path) as rt:
        res = rt.download_file(server.url + "/bytes/1000").result(10)
        quiet = rt.download_file(server.url + "/bytes/1", enable_profile=False).result(10)
    p = res.profile
    assert p is not None
    for key in (
        "fetchStart", "domainLookUpStart", "domainLookUpEnd", "connectStart", "connectEnd",
        "SSLconnectionStart", "SSLconnectionEnd", "requestStart", "requestEnd",
        "responseStart", "responseEnd", "queueStart", "queueEnd", "peerIP", "port",
        "socketReused", "protocol", "sendBytesCount", "receivedBytedCount", "throughputKbps",
    ):  # fmt: skip
        assert key in p, key
    assert p["peerIP"] == "127.0.0.1"
    assert p["protocol"] == "http1.1"
    assert p["fetchStart"] <= p["requestStart"] <= p["responseStart"] <= p["responseEnd"]
    assert p["receivedBytedCount"] > 1000
    assert "profile" not in quiet


def test_many_downloads_leave_only_their_results(tmp_path: Path, server: Any) -> None:
    with runtime(tmp_path) as rt:
        tasks = [rt.download_file(server.url + f"/bytes/{i * 100}") for i in range(30)]
        results = [t.result(20) for t in tasks]
        assert len(leftovers(tmp_path / "tmp")) == 30
    assert [r.data_length for r in results] == [i * 100 for i in range(30)]


def test_a_thousand_quick_posts_all_finish(tmp_path: Path, server: Any) -> None:
    # Commands posted while the engine drains its wake-up pipe must never be stranded.
    f = tmp_path / "up.bin"
    f.write_bytes(b"x" * 1024)
    with runtime(tmp_path) as rt:
        for _ in range(4):
            tasks: list[Any] = [
                rt.upload_file(server.url + "/concurrent", f, "f") for _ in range(500)
            ]
            tasks += [rt.download_file(server.url + "/bytes/1024") for _ in range(500)]
            assert all(t.result(30).status_code == 200 for t in tasks)


def test_an_announced_length_without_a_body_leaves_an_empty_file(
    tmp_path: Path, raw_server: Any
) -> None:
    # Big announced lengths reserve the file's blocks first (fallocate); a response that
    # announces 2 MB but has no body (304) must still leave exactly the bytes received.
    srv = raw_server(respond(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 2000000\r\n\r\n"))
    target = tmp_path / "out.bin"
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/x", file_path=target).result(10)
    assert (res.status_code, res.data_length) == (304, 0)
    assert target.stat().st_size == 0
    assert os.stat(target).st_blocks == 0  # nothing reserved is left allocated


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_file_path_gets_the_mode_of_a_new_file(tmp_path: Path, server: Any, umask: int) -> None:
    # SPEC §5: 0666 less the umask, also when it replaces a private file. The umask is
    # process-wide: set it in a child of its own, not under the test server's threads.
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    target.chmod(0o600)
    script = (
        "import os, sys, wxtransfer\n"
        f"os.umask({umask})\n"
        "wxtransfer.download_file(sys.argv[1], file_path=sys.argv[2]).result(20)\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, server.url + "/bytes/100", str(target)],
        check=True,
        timeout=30,
        env=dict(os.environ, WXTRANSFER_HOME=str(tmp_path / "home")),
    )
    assert target.stat().st_size == 100
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
