"""SPEC §3: callback order, exactly once, one dispatcher thread, listeners."""

from __future__ import annotations

import gc
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.helpers import Recorder, runtime


def test_success_then_complete_once_with_the_same_object(tmp_path: Path, server: Any) -> None:
    rec = Recorder()
    with runtime(tmp_path) as rt:
        res = rt.download_file(server.url + "/bytes/100", **rec.callbacks()).result(10)
    assert rec.kinds() == ["success", "complete"]
    assert rec.events[0][1] is rec.events[1][1] is res


def test_fail_then_complete_once_with_the_same_error(tmp_path: Path, server: Any) -> None:
    rec = Recorder()
    with runtime(tmp_path) as rt:
        err = rt.download_file(server.url + "/truncated/1000", **rec.callbacks()).exception(10)
    assert rec.kinds() == ["fail", "complete"]
    assert rec.events[0][1] is rec.events[1][1] is err


def test_invalid_call_still_calls_fail_and_complete(tmp_path: Path) -> None:
    rec = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.upload_file("", "nope", "file", **rec.callbacks())
        assert isinstance(task, wxtransfer.UploadTask)
        assert rec.done.wait(5)
    assert rec.kinds() == ["fail", "complete"]


def test_callbacks_run_on_one_dispatcher_thread_one_at_a_time(tmp_path: Path, server: Any) -> None:
    active = 0
    overlaps = 0
    threads: set[str] = set()
    lock = threading.Lock()

    def slow_callback(_: Any) -> None:
        nonlocal active, overlaps
        with lock:
            active += 1
            overlaps += active > 1
            threads.add(threading.current_thread().name)
        time.sleep(0.002)
        with lock:
            active -= 1

    with runtime(tmp_path) as rt:
        tasks = []
        for _ in range(20):
            task = rt.download_file(
                server.url + "/bytes/200000", success=slow_callback, complete=slow_callback
            )
            task.on_progress_update(slow_callback)
            task.on_headers_received(slow_callback)
            tasks.append(task)
        for task in tasks:
            task.result(20)
    assert overlaps == 0
    assert len(threads) == 1
    assert threads.pop().startswith("wxtransfer-dispatch")


def test_callbacks_never_run_on_the_engine_thread_or_the_caller(
    tmp_path: Path, server: Any
) -> None:
    rec = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/bytes/100000", **rec.callbacks())
        task.on_progress_update(rec("progress"))
        task.result(10)
    assert rec.threads == {"wxtransfer-dispatch"}


def test_an_exception_in_a_callback_is_logged_and_the_transfer_goes_on(
    tmp_path: Path, server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()

    def boom(_: Any) -> None:
        raise RuntimeError("listener exploded")

    with runtime(tmp_path) as rt, caplog.at_level(logging.ERROR, logger="wxtransfer"):
        task = rt.download_file(
            server.url + "/bytes/100000", success=boom, complete=rec("complete")
        )
        task.on_progress_update(boom)
        res = task.result(10)
    assert res.data_length == 100000
    assert rec.kinds() == ["complete"]
    assert "listener exploded" in caplog.text


def test_no_progress_after_success(tmp_path: Path, server: Any) -> None:
    rec = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/bytes/500000", **rec.callbacks())
        task.on_progress_update(rec("progress"))
        task.result(10)
        task.on_progress_update(rec("late"))  # after the end: never called
        time.sleep(0.1)
    kinds = rec.kinds()
    assert kinds.index("success") == len(kinds) - 2
    assert "late" not in kinds


def test_a_late_listener_gets_the_latest_event_at_once(tmp_path: Path, server: Any) -> None:
    first = Recorder()
    late = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/hang")  # headers, then nothing
        task.on_headers_received(first("headers"))
        deadline = time.monotonic() + 5
        while not first.events and time.monotonic() < deadline:
            time.sleep(0.01)
        task.on_headers_received(late("headers"))
        deadline = time.monotonic() + 5
        while not late.events and time.monotonic() < deadline:
            time.sleep(0.01)
        task.abort()
        task.exception(10)
    assert [e.status_code for _, e in first.events] == [200]
    assert [e.status_code for _, e in late.events] == [200]


def test_events_nobody_heard_are_replayed_whole_to_a_late_listener(
    tmp_path: Path, server: Any
) -> None:
    # A listener that comes late gets the latest event of its kind at once, whole, even
    # though nobody listened when it happened.
    late = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/slow/20480?delay=0.3")  # 1 KiB every 0.3 s
        time.sleep(1)  # the head and a few chunks arrive with nobody listening
        task.on_headers_received(late("headers"))
        task.on_progress_update(late("progress"))
        deadline = time.monotonic() + 5
        while len(late.events) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        task.abort()
        task.exception(10)
    kinds = late.kinds()
    assert kinds[:2] == ["headers", "progress"]
    head = late.events[0][1]
    assert isinstance(head, wxtransfer.HeadersReceived)
    assert head.status_code == 200 and head.header["content-length"] == "20480"
    progress = late.events[1][1]
    assert isinstance(progress, wxtransfer.DownloadProgress)
    assert progress.total_bytes_expected_to_write == 20480
    assert 0 < progress.total_bytes_written < 20480
    assert progress.progress == progress.total_bytes_written * 100 // 20480


def test_a_late_listener_is_served_before_the_outcome(tmp_path: Path, server: Any) -> None:
    # The replay of the latest event to a new listener is queued like any event: the
    # outcome (and result()) waits for it, even for a task without callbacks.
    late = Recorder()
    busy = threading.Event()

    def hold_the_dispatcher(_: Any) -> None:
        busy.set()
        time.sleep(1)

    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/hang")  # headers, then nothing
        time.sleep(0.5)  # the headers arrive with nobody listening
        rt.download_file(server.url + "/bytes/10", complete=hold_the_dispatcher)
        assert busy.wait(5)
        task.on_headers_received(late("headers"))  # the replay queues behind the sleep
        task.abort()
        task.exception(10)
        assert [e.status_code for _, e in late.events] == [200]


def test_off_removes_one_listener_or_all(tmp_path: Path, server: Any) -> None:
    kept, removed, all_gone = Recorder(), Recorder(), Recorder()
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/bytes/300000?delay=0.001")
        keep_fn, remove_fn = kept("p"), removed("p")
        task.on_progress_update(keep_fn)
        task.on_progress_update(remove_fn)
        task.off_progress_update(remove_fn)
        task.on_headers_received(all_gone("h"))
        task.onHeadersReceived(all_gone("h2"))
        task.offHeadersReceived()
        task.result(10)
    assert kept.events
    assert removed.events == []
    assert all_gone.events == []


def test_camel_case_aliases_are_the_same_methods() -> None:
    for snake, camel in [
        ("on_progress_update", "onProgressUpdate"),
        ("off_progress_update", "offProgressUpdate"),
        ("on_headers_received", "onHeadersReceived"),
        ("off_headers_received", "offHeadersReceived"),
    ]:
        assert getattr(wxtransfer.Task, snake) is getattr(wxtransfer.Task, camel)


def test_result_inside_a_callback_before_done_is_a_clear_error(tmp_path: Path, server: Any) -> None:
    seen: list[BaseException] = []
    with runtime(tmp_path) as rt:
        task: Any = None

        def on_headers(_: Any) -> None:
            try:
                task.result()
            except RuntimeError as exc:
                seen.append(exc)

        task = rt.download_file(server.url + "/hang")  # headers, then never done
        task.on_headers_received(on_headers)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        task.abort()
        task.exception(10)
    assert len(seen) == 1 and "callback" in str(seen[0])


def test_result_timeout_is_seconds_and_the_task_goes_on(tmp_path: Path, server: Any) -> None:
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/slow/2048?delay=0.2")
        with pytest.raises(TimeoutError):
            task.result(timeout=0.05)
        assert not task.done()
        assert task.result(10).data_length == 2048
        assert task.done()


def test_every_waiter_wakes_and_zero_or_less_only_looks(tmp_path: Path, server: Any) -> None:
    with runtime(tmp_path) as rt:
        task = rt.download_file(server.url + "/slow/2048?delay=0.2")
        for timeout in (0, -1, 0.0):
            with pytest.raises(TimeoutError):
                task.result(timeout)
        sizes: list[int] = []
        waiters = [
            threading.Thread(target=lambda: sizes.append(task.result(10).data_length))
            for _ in range(4)
        ]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join(15)
        assert sizes == [2048] * 4
        assert task._wait_callbacks(0) and task._wait_callbacks(-1)
        assert task.result(0).data_length == 2048


def test_an_unseen_failure_is_logged_as_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with runtime(tmp_path) as rt, caplog.at_level(logging.WARNING, logger="wxtransfer"):
        task = rt.download_file("ftp://nowhere/x")
        assert task._wait_callbacks(5)
        del task
        gc.collect()
    assert "nobody saw it" in caplog.text
    assert "downloadFile:fail invalid URL" in caplog.text


def test_a_seen_failure_is_not_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with runtime(tmp_path) as rt, caplog.at_level(logging.WARNING, logger="wxtransfer"):
        task = rt.download_file("ftp://nowhere/x")
        assert task.exception(5) is not None
        del task
        gc.collect()
    assert "nobody saw it" not in caplog.text
