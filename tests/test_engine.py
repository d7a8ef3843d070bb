"""The engine and writer threads: libcurl's sockets are watched through ``fdset()``, which
cannot name a socket numbered at or past FD_SETSIZE (1024), yet such transfers must finish;
outcomes reported on the writer thread wake their waiters soon, not when it runs dry."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.servers.app import pattern
from tests.servers.threaded import ServerThread
from wxtransfer import DownloadFileResult
from wxtransfer._dispatch import ThreadDispatcher
from wxtransfer._output import Writer
from wxtransfer._task import DownloadTask

FD_SETSIZE = 1024


@pytest.fixture
def high_fds() -> Iterator[None]:
    """Hold every descriptor below FD_SETSIZE, so new sockets are numbered past it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = FD_SETSIZE + 256
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    held: list[int] = []
    try:
        while True:
            fd = os.open(os.devnull, os.O_RDONLY)
            held.append(fd)
            if fd >= FD_SETSIZE:
                break
        yield
    finally:
        for fd in held:
            os.close(fd)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_transfers_on_sockets_past_fd_setsize(
    tmp_path: Path, server: ServerThread, high_fds: None
) -> None:
    src = tmp_path / "up.bin"
    src.write_bytes(pattern(100_000))
    with wxtransfer.Runtime(home=tmp_path / "home", temp_dir=tmp_path / "tmp") as rt:
        down = rt.download_file(f"{server.url}/bytes/300000", file_path=str(tmp_path / "d.bin"))
        slow = rt.download_file(f"{server.url}/slow/3072?delay=0.02")
        up = rt.upload_file(f"{server.url}/upload", str(src), "file")
        res = down.result(timeout=20)
        assert res.profile is not None and int(res.profile["port"]) > 0
        assert (tmp_path / "d.bin").read_bytes() == pattern(300_000)
        slow_res = slow.result(timeout=20)
        assert slow_res.temp_file_path is not None
        assert Path(slow_res.temp_file_path).read_bytes() == pattern(3072)
        report = json.loads(up.result(timeout=20).data)
        (field,) = report["files"]
        assert field["sha256"] == hashlib.sha256(pattern(100_000)).hexdigest()


def test_writer_wakes_a_waiter_within_a_few_jobs_not_when_its_queue_runs_dry() -> None:
    """A download's outcome is reported on the writer thread; its waiter must not wait for
    every job queued behind it. The last job here ends early only if the waiter got its
    result while that job was still queued (else it waits out its 10 s)."""
    writer = Writer(name="test-writer")
    task = DownloadTask("downloadFile", ThreadDispatcher())
    outcome = DownloadFileResult(status_code=200, header={}, data_length=0, file_path="x")
    got: list[DownloadFileResult] = []
    gate = threading.Event()
    gate_opened_in_time: list[bool] = []

    def wait() -> None:
        got.append(task.result())
        gate.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    for _ in range(500):  # until result() is blocked on its lock
        if task._waiters:
            break
        time.sleep(0.01)
    assert task._waiters
    try:
        writer.submit(lambda: task._report_done(outcome))
        for _ in range(20):
            writer.submit(lambda: None)
        writer.submit(lambda: gate_opened_in_time.append(gate.wait(10)))
    finally:
        writer.close(15)
    waiter.join(5)
    assert got == [outcome]
    assert gate_opened_in_time == [True]


def test_a_reused_handle_keeps_nothing_of_the_transfer_before(
    tmp_path: Path, server: ServerThread
) -> None:
    # One download at a time: each takes the easy handle the one before left. Its
    # deadline, protocol and headers must not follow it to the next.
    with wxtransfer.Runtime(max_concurrent_downloads=1, temp_dir=str(tmp_path)) as rt:
        first = rt.download_file(
            server.url + "/headers", header={"X-One": "1"}, timeout=1000, enable_http2=True
        ).result(10)
        assert json.loads(Path(first.temp_file_path or "").read_text())["headers"]["x-one"] == "1"
        engine = rt._engine
        assert engine is not None and len(engine._spare["downloadFile"]) == 1
        # 3 chunks, 0.6 s apart: longer than the first one's 1 s deadline
        slow = rt.download_file(server.url + "/slow/3072?delay=0.6", timeout=0).result(10)
        assert slow.data_length == 3072
        last = rt.download_file(server.url + "/headers").result(10)
        sent = json.loads(Path(last.temp_file_path or "").read_text())["headers"]
        assert "x-one" not in sent and last.profile is not None
        assert last.profile["protocol"] == "http1.1"
        assert len(engine._spare["downloadFile"]) == 1  # the same handle all along


def test_a_headers_listener_added_late_gets_a_head_no_body_has_ended(
    tmp_path: Path, server: ServerThread
) -> None:
    # Nobody listens when the head arrives, and no body byte follows it: the head waits,
    # unread, until a listener comes; then it is read and delivered at once.
    with wxtransfer.Runtime(temp_dir=str(tmp_path)) as rt:
        task = rt.download_file(server.url + "/hang")  # headers, then nothing
        time.sleep(0.5)
        got = threading.Event()
        task.on_headers_received(lambda ev: got.set())
        assert got.wait(5)
        task.abort()
        assert isinstance(task.exception(10), wxtransfer.AbortError)


def test_a_finished_transfer_is_freed_without_the_cyclic_gc(
    tmp_path: Path, server: ServerThread
) -> None:
    # Thousands of small transfers a second: each must be freed by reference counting
    # when nobody holds its task any more. Garbage in cycles waits for the cyclic GC,
    # whose passes over every tracked object grow with the tasks a caller keeps.
    import gc

    with wxtransfer.Runtime(temp_dir=str(tmp_path)) as rt:
        rt.download_file(server.url + "/bytes/10").result(10)  # threads, handles, pools
        upload = tmp_path / "up.bin"
        upload.write_bytes(b"x" * 1000)
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            tasks: list[Any] = [rt.download_file(server.url + "/bytes/1000") for _ in range(20)]
            tasks += [rt.upload_file(server.url + "/upload", str(upload), "f") for _ in range(20)]
            for task in tasks:
                task.result(10)
            del tasks, task
            gc.collect()
            ours = [o for o in gc.garbage if type(o).__module__.startswith("wxtransfer")]
        finally:
            gc.garbage.clear()
            gc.set_debug(0)
            gc.enable()
    assert ours == []


def test_a_queued_transfer_holds_no_easy_handle(tmp_path: Path, server: ServerThread) -> None:
    # A thousand calls at once start ten at a time: the rest wait with no libcurl handle,
    # and each takes one (a spare, if a transfer before it left one) when it starts.
    with wxtransfer.Runtime(max_concurrent_downloads=2, temp_dir=str(tmp_path)) as rt:
        tasks = [rt.download_file(server.url + "/hang") for _ in range(6)]
        engine = rt._engine
        assert engine is not None
        deadline = time.monotonic() + 5
        while len(engine._waiting["downloadFile"]) != 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        queued = list(engine._waiting["downloadFile"])
        assert len(queued) == 4 and all(t.curl is None for t in queued)
        for task in tasks:
            task.abort()
        for task in tasks:
            assert isinstance(task.exception(10), wxtransfer.AbortError)
