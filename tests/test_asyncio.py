"""``await task`` and callbacks on the caller's asyncio loop (SPEC §1, §3)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.servers import free_port
from tests.servers.app import pattern
from tests.servers.threaded import ServerThread


def _runtime(tmp_path: Path, **options: Any) -> wxtransfer.Runtime:
    return wxtransfer.Runtime(home=tmp_path / "home", temp_dir=tmp_path / "tmp", **options)


def test_await_download_returns_result(tmp_path: Path, server: ServerThread) -> None:
    async def main() -> wxtransfer.DownloadFileResult:
        with _runtime(tmp_path) as rt:
            res = await rt.download_file(f"{server.url}/bytes/5000", timeout=5000)
            assert res.temp_file_path is not None
            assert Path(res.temp_file_path).read_bytes() == pattern(5000)
            return res

    res = asyncio.run(main())
    assert isinstance(res, wxtransfer.DownloadFileResult)
    assert res.status_code == 200
    assert res.data_length == 5000
    assert res["errMsg"] == "downloadFile:ok"


def test_await_upload_returns_result(tmp_path: Path, server: ServerThread) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"hello asyncio")

    async def main() -> wxtransfer.UploadFileResult:
        with _runtime(tmp_path) as rt:
            return await rt.upload_file(
                f"{server.url}/upload", str(src), "file", form_data={"k": "v"}, timeout=5000
            )

    res = asyncio.run(main())
    assert res.err_msg == "uploadFile:ok"
    echo = json.loads(res.data)
    assert echo["fields"] == {"k": "v"}
    assert echo["files"][0]["size"] == len(b"hello asyncio")


def test_callbacks_run_on_the_loop_thread(tmp_path: Path, server: ServerThread) -> None:
    seen: dict[str, set[int]] = defaultdict(set)
    order: list[str] = []

    def record(kind: str) -> Any:
        def fn(_: Any) -> None:
            seen[kind].add(threading.get_ident())
            order.append(kind)

        return fn

    async def main() -> int:
        loop_thread = threading.get_ident()
        with _runtime(tmp_path) as rt:
            task = rt.download_file(
                f"{server.url}/bytes/300000?delay=0.01",
                success=record("success"),
                complete=record("complete"),
                fail=record("fail"),
            )
            task.on_progress_update(record("progress"))
            task.on_headers_received(record("headers"))
            await task
            # complete has run when await returns
            assert order[-2:] == ["success", "complete"]
        return loop_thread

    loop_thread = asyncio.run(main())
    assert loop_thread == threading.get_ident()  # asyncio.run runs on this thread
    assert seen["success"] == {loop_thread}
    assert seen["complete"] == {loop_thread}
    assert seen["progress"] == {loop_thread}
    assert seen["headers"] == {loop_thread}
    assert "fail" not in seen
    assert order.index("headers") < order.index("progress")


def test_await_failing_task_raises_subclass(tmp_path: Path, server: ServerThread) -> None:
    closed_port = free_port()

    async def main() -> None:
        with _runtime(tmp_path) as rt:
            with pytest.raises(wxtransfer.TimeoutError) as timeout:
                await rt.download_file(f"{server.url}/hang", timeout=200)
            assert timeout.value.err_msg == "downloadFile:fail timeout"
            assert timeout.value.errno == 5

            with pytest.raises(wxtransfer.NetworkError) as network:
                await rt.download_file(f"http://127.0.0.1:{closed_port}/x", timeout=5000)
            assert network.value.errno == 600001
            assert network.value.err_msg.startswith("downloadFile:fail ")

            with pytest.raises(wxtransfer.InvalidArgumentError) as invalid:
                await rt.upload_file("", str(tmp_path / "nope"), "file")
            assert invalid.value.errno == 600005

            with pytest.raises(wxtransfer.FileError):
                await rt.upload_file(f"{server.url}/upload", str(tmp_path / "nope"), "file")

    asyncio.run(main())


def test_cancelling_the_await_aborts_the_task(tmp_path: Path, server: ServerThread) -> None:
    async def main() -> None:
        completed = asyncio.Event()
        outcomes: list[Any] = []

        def complete(res: Any) -> None:
            outcomes.append(res)
            completed.set()  # on the loop's thread: safe

        with _runtime(tmp_path) as rt:
            task = rt.download_file(f"{server.url}/hang", timeout=30000, complete=complete)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(task, timeout=0.3)
            await asyncio.wait_for(completed.wait(), timeout=10)
            assert task.done()
            err = task.exception()
            assert isinstance(err, wxtransfer.AbortError)
            assert err.err_msg == "downloadFile:fail abort"
            assert err.errno == 600003
            assert outcomes == [err]
            assert list((tmp_path / "tmp").rglob("*.bin")) == []

    asyncio.run(main())


def test_cancelling_a_coroutine_aborts_the_task(tmp_path: Path, server: ServerThread) -> None:
    async def main() -> None:
        with _runtime(tmp_path) as rt:
            task = rt.download_file(f"{server.url}/hang", timeout=30000)

            async def waiter() -> Any:
                return await task

            runner = asyncio.ensure_future(waiter())
            await asyncio.sleep(0.2)
            runner.cancel()
            with pytest.raises(asyncio.CancelledError):
                await runner
            for _ in range(200):
                if task.done():
                    break
                await asyncio.sleep(0.02)
            assert isinstance(task.exception(), wxtransfer.AbortError)

    asyncio.run(main())


def test_await_task_started_outside_the_loop(tmp_path: Path, server: ServerThread) -> None:
    threads: list[int] = []
    with _runtime(tmp_path) as rt:
        task = rt.download_file(
            f"{server.url}/slow/2048?delay=0.1",
            timeout=10000,
            complete=lambda _: threads.append(threading.get_ident()),
        )

        async def main() -> tuple[wxtransfer.DownloadFileResult, float]:
            started = time.monotonic()
            res = await asyncio.wait_for(task, timeout=2)
            return res, time.monotonic() - started

        res, elapsed = asyncio.run(main())
        assert res.data_length == 2048
        # started outside any loop: its callbacks ran on the runtime's dispatcher thread
        assert len(threads) == 1
        assert threads[0] != threading.get_ident()
        # the transfer takes about 0.1 s: the await must return when it ends
        assert elapsed < 1.5


def test_await_task_done_before_the_await(tmp_path: Path, server: ServerThread) -> None:
    with _runtime(tmp_path) as rt:
        task = rt.download_file(f"{server.url}/bytes/10", timeout=5000)
        task.result(timeout=10)

        async def main() -> wxtransfer.DownloadFileResult:
            return await asyncio.wait_for(task, timeout=3)

        assert asyncio.run(main()).data_length == 10


def test_gather_many_tasks(tmp_path: Path, server: ServerThread) -> None:
    sizes = [100 * (i + 1) for i in range(30)]

    async def main() -> list[wxtransfer.DownloadFileResult]:
        with _runtime(tmp_path) as rt:
            tasks = [rt.download_file(f"{server.url}/bytes/{n}", timeout=10000) for n in sizes]
            results = await asyncio.gather(*tasks)
            for n, res in zip(sizes, results, strict=True):
                assert res.temp_file_path is not None
                assert Path(res.temp_file_path).read_bytes() == pattern(n)
            return list(results)

    results = asyncio.run(main())
    assert [r.data_length for r in results] == sizes


def test_gather_with_one_failure(tmp_path: Path, server: ServerThread) -> None:
    async def main() -> list[Any]:
        with _runtime(tmp_path) as rt:
            tasks = [
                rt.download_file(f"{server.url}/bytes/10", timeout=5000),
                rt.download_file(f"{server.url}/hang", timeout=200),
                rt.download_file(f"{server.url}/status/500", timeout=5000),
            ]
            return await asyncio.gather(*tasks, return_exceptions=True)

    ok, failed, status = asyncio.run(main())
    assert ok.data_length == 10
    assert isinstance(failed, wxtransfer.TimeoutError)
    assert status.status_code == 500


def test_result_from_a_loop_thread_when_done(tmp_path: Path, server: ServerThread) -> None:
    async def main() -> None:
        with _runtime(tmp_path) as rt:
            task = rt.download_file(f"{server.url}/bytes/10", timeout=5000)
            res = await task
            assert task.result() is res  # done: returns without blocking the loop

    asyncio.run(main())


def test_task_outliving_its_loop_still_completes(tmp_path: Path, server: ServerThread) -> None:
    """A task started in ``asyncio.run`` whose loop ends first still calls back."""
    events: list[str] = []
    rt = _runtime(tmp_path)
    try:

        async def main() -> wxtransfer.DownloadTask:
            return rt.download_file(
                f"{server.url}/slow/3072?delay=0.15",
                timeout=10000,
                success=lambda _: events.append("success"),
                complete=lambda _: events.append("complete"),
            )

        task = asyncio.run(main())
        res = task.result(timeout=10)
        assert res.data_length == 3072
        assert events == ["success", "complete"]
    finally:
        rt.close()


def test_async_with_runtime(tmp_path: Path, server: ServerThread) -> None:
    async def main() -> wxtransfer.Runtime:
        async with _runtime(tmp_path) as rt:
            await rt.download_file(f"{server.url}/bytes/1", timeout=5000)
            slow = rt.download_file(f"{server.url}/hang", timeout=30000)
        # leaving the block closed the runtime and aborted what was running
        with pytest.raises(wxtransfer.AbortError):
            await asyncio.wait_for(slow, timeout=10)
        return rt

    assert asyncio.run(main()).closed


def test_task_outliving_a_stopped_loop_still_completes(
    tmp_path: Path, server: ServerThread
) -> None:
    """``loop.run_until_complete`` starts a task; the loop stops; sync code waits for it."""
    events: list[str] = []
    rt = _runtime(tmp_path)
    loop = asyncio.new_event_loop()
    try:

        async def start() -> wxtransfer.DownloadTask:
            return rt.download_file(
                f"{server.url}/slow/2048?delay=0.15",
                timeout=10000,
                complete=lambda _: events.append("complete"),
            )

        task = loop.run_until_complete(start())
        # the loop is no longer running (nor closed): nothing will ever run on it again
        res = task.result(timeout=2)
        assert res.data_length == 2048
        assert events == ["complete"]
    finally:
        loop.close()
        rt.close()
