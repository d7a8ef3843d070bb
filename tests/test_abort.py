"""SPEC §3 abort(): in every state, idempotent, from any thread or callback, nothing left."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import wxtransfer
from tests.helpers import Recorder, leftovers, runtime
from tests.servers.rawsock import hang


def _wait_for(predicate: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def _assert_aborted(rec: Recorder, err: BaseException | None, api: str) -> None:
    assert isinstance(err, wxtransfer.AbortError)
    assert (err.err_msg, err.errno) == (f"{api}:fail abort", 600003)
    assert rec.kinds()[-2:] == ["fail", "complete"]
    assert rec.kinds().count("fail") == 1 and rec.kinds().count("complete") == 1


def test_abort_while_queued_never_starts(tmp_path: Path, raw_server: Any) -> None:
    srv = raw_server(hang())
    rec = Recorder()
    with runtime(tmp_path, max_concurrent_downloads=1) as rt:
        first = rt.download_file(srv.url + "/first", timeout=0)
        srv.wait_for_connections(1, 5)
        queued = rt.download_file(srv.url + "/second", **rec.callbacks())
        queued.abort()
        err = queued.exception(5)
        first.abort()
        first.exception(5)
    _assert_aborted(rec, err, "downloadFile")
    assert srv.connections == 1


def test_abort_while_connecting_or_waiting_for_headers(tmp_path: Path, server: Any) -> None:
    rec = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/hang-before-headers", **rec.callbacks())
        time.sleep(0.05)
        task.abort()
        err = task.exception(5)
        assert leftovers(tmp_path / "tmp") == []
    _assert_aborted(rec, err, "downloadFile")


def test_abort_while_sending(tmp_path: Path, server: Any) -> None:
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(32 << 20))  # more than loopback socket buffers can hold
    rec = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.upload_file(server.url + "/slow-upload?rate=200000", f, "file", **rec.callbacks())
        task.on_progress_update(rec("progress"))
        _wait_for(lambda: "progress" in rec.kinds())
        task.abort()
        err = task.exception(5)
    _assert_aborted(rec, err, "uploadFile")
    progress = [e for k, e in rec.events if k == "progress"]
    assert progress[-1].total_bytes_sent < progress[-1].total_bytes_expected_to_send
    assert f.stat().st_size == 32 << 20  # the upload's file is untouched


def test_abort_while_receiving_leaves_no_file(tmp_path: Path, server: Any) -> None:
    target = tmp_path / "out.bin"
    for path in (None, target):
        rec = Recorder()
        with runtime(tmp_path) as rt:
            task = rt.download_file(
                server.url + "/slow/100000?delay=0.01", file_path=path, **rec.callbacks()
            )
            task.on_progress_update(rec("progress"))
            _wait_for(lambda rec=rec: "progress" in rec.kinds())
            task.abort()
            err = task.exception(5)
            assert leftovers(tmp_path / "tmp") == []
        _assert_aborted(rec, err, "downloadFile")
        assert not target.exists()
        assert [p for p in os.listdir(tmp_path) if "wxpart" in p] == []


def test_abort_after_done_does_nothing(tmp_path: Path, server: Any) -> None:
    rec = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/bytes/10", **rec.callbacks())
        res = task.result(5)
        task.abort()
        task.abort()
        time.sleep(0.05)
        assert task.result(5) is res
        assert os.path.exists(str(res.temp_file_path))
    assert rec.kinds() == ["success", "complete"]


def test_abort_is_idempotent_and_works_from_other_threads(tmp_path: Path, server: Any) -> None:
    rec = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/hang", **rec.callbacks())
        threads = [threading.Thread(target=task.abort) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        err = task.exception(5)
        time.sleep(0.05)
    _assert_aborted(rec, err, "downloadFile")


def test_abort_from_inside_a_progress_callback(tmp_path: Path, server: Any) -> None:
    rec = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/slow/50000?delay=0.01", **rec.callbacks())

        def on_progress(event: Any) -> None:
            rec("progress")(event)
            task.abort()

        task.on_progress_update(on_progress)
        err = task.exception(5)
    _assert_aborted(rec, err, "downloadFile")
    assert rec.kinds().count("progress") >= 1


def test_abort_before_the_engine_sees_the_task(tmp_path: Path, server: Any) -> None:
    rec = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/bytes/10", **rec.callbacks())
        task.abort()
        err = task.exception(5)
    if isinstance(err, wxtransfer.AbortError):
        _assert_aborted(rec, err, "downloadFile")
    else:  # the transfer won the race: then it must have completed normally
        assert err is None and rec.kinds() == ["success", "complete"]


def test_closing_the_runtime_aborts_what_runs(tmp_path: Path, server: Any) -> None:
    rec = Recorder()
    rt = wxtransfer.Runtime(home=tmp_path / "home", temp_dir=tmp_path / "tmp")
    task = rt.download_file(server.url + "/hang", **rec.callbacks())
    queued = [rt.download_file(server.url + "/hang") for _ in range(15)]
    time.sleep(0.05)
    rt.close()
    _assert_aborted(rec, task.exception(5), "downloadFile")
    assert all(isinstance(t.exception(5), wxtransfer.AbortError) for t in queued)
    late = rt.download_file(server.url + "/bytes/1").exception(5)
    assert isinstance(late, wxtransfer.AbortError)
    assert "closed" in late.err_msg
    assert not (tmp_path / "tmp").exists() or leftovers(tmp_path / "tmp") == []
