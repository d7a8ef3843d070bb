"""Concurrency limits per runtime: at most N uploads and N downloads in flight (SPEC §5).

The server's ``/concurrent`` route counts requests in flight; ``/concurrent/stats`` reports
the maximum seen since ``POST /concurrent/reset``.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.servers.threaded import ServerThread


def _runtime(tmp_path: Path, **options: Any) -> wxtransfer.Runtime:
    return wxtransfer.Runtime(home=tmp_path / "home", temp_dir=tmp_path / "tmp", **options)


def _stats(server: ServerThread) -> dict[str, int]:
    with urllib.request.urlopen(f"{server.url}/concurrent/stats", timeout=5) as resp:
        stats: dict[str, int] = json.load(resp)
        return stats


def _entry(res: wxtransfer.DownloadFileResult) -> int:
    """How many requests the server had in flight when this one arrived."""
    assert res.temp_file_path is not None
    entry: int = json.loads(Path(res.temp_file_path).read_text())["current_at_entry"]
    return entry


@pytest.fixture
def counter(server: ServerThread) -> Iterator[ServerThread]:
    req = urllib.request.Request(f"{server.url}/concurrent/reset", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()
    yield server


@pytest.fixture
def upload_src(tmp_path: Path) -> str:
    path = tmp_path / "small.bin"
    path.write_bytes(b"u" * 2000)
    return str(path)


def test_downloads_limited_to_ten(tmp_path: Path, counter: ServerThread) -> None:
    with _runtime(tmp_path, max_concurrent_downloads=10) as rt:
        tasks = [
            rt.download_file(f"{counter.url}/concurrent?delay=0.3", timeout=20000)
            for _ in range(25)
        ]
        results = [t.result(timeout=20) for t in tasks]
        assert max(_entry(r) for r in results) == 10
    assert all(r.status_code == 200 for r in results)
    stats = _stats(counter)
    assert stats["total"] == 25
    assert stats["max"] == 10
    assert stats["current"] == 0


def test_default_limit_is_ten(tmp_path: Path, counter: ServerThread) -> None:
    with _runtime(tmp_path) as rt:
        tasks = [
            rt.download_file(f"{counter.url}/concurrent?delay=0.3", timeout=20000)
            for _ in range(14)
        ]
        for t in tasks:
            t.result(timeout=20)
    assert _stats(counter)["max"] == 10


def test_uploads_limited_to_ten(tmp_path: Path, counter: ServerThread, upload_src: str) -> None:
    with _runtime(tmp_path, max_concurrent_uploads=10) as rt:
        tasks = [
            rt.upload_file(f"{counter.url}/concurrent?delay=0.3", upload_src, "f", timeout=20000)
            for _ in range(25)
        ]
        results = [t.result(timeout=20) for t in tasks]
    assert all(r.status_code == 200 for r in results)
    assert all(json.loads(r.data)["body_size"] > 2000 for r in results)
    assert max(json.loads(r.data)["current_at_entry"] for r in results) == 10
    stats = _stats(counter)
    assert stats["total"] == 25
    assert stats["max"] == 10


def test_limit_of_three(tmp_path: Path, counter: ServerThread, upload_src: str) -> None:
    with _runtime(tmp_path, max_concurrent_downloads=3, max_concurrent_uploads=3) as rt:
        tasks = [
            rt.download_file(f"{counter.url}/concurrent?delay=0.2", timeout=20000) for _ in range(8)
        ]
        for t in tasks:
            t.result(timeout=20)
        assert _stats(counter)["max"] == 3
        uploads = [
            rt.upload_file(f"{counter.url}/concurrent?delay=0.2", upload_src, "f", timeout=20000)
            for _ in range(8)
        ]
        for u in uploads:
            u.result(timeout=20)
    stats = _stats(counter)
    assert stats["max"] == 3
    assert stats["total"] == 16


def test_limit_one_runs_in_call_order(tmp_path: Path, counter: ServerThread) -> None:
    # Later calls are quicker: without the limit they would finish first.
    delays = [0.25, 0.15, 0.1, 0.05, 0.0, 0.0]
    order: list[int] = []
    lock = threading.Lock()

    def done(i: int) -> Any:
        def complete(_: Any) -> None:
            with lock:
                order.append(i)

        return complete

    with _runtime(tmp_path, max_concurrent_downloads=1) as rt:
        tasks = [
            rt.download_file(f"{counter.url}/concurrent?delay={d}", timeout=20000, complete=done(i))
            for i, d in enumerate(delays)
        ]
        results = [t.result(timeout=20) for t in tasks]
        assert [_entry(r) for r in results] == [1] * len(delays)
    assert order == list(range(len(delays)))
    assert _stats(counter)["max"] == 1


def test_queued_task_abort_never_starts(tmp_path: Path, counter: ServerThread) -> None:
    with _runtime(tmp_path, max_concurrent_downloads=1) as rt:
        first = rt.download_file(f"{counter.url}/concurrent?delay=0.3", timeout=20000)
        queued = rt.download_file(f"{counter.url}/concurrent?delay=0.3", timeout=20000)
        queued.abort()
        err = queued.exception(timeout=10)
        assert isinstance(err, wxtransfer.AbortError)
        assert err.err_msg == "downloadFile:fail abort"
        first.result(timeout=10)
    assert _stats(counter)["total"] == 1


def test_upload_and_download_limits_are_separate(
    tmp_path: Path, counter: ServerThread, upload_src: str
) -> None:
    with _runtime(tmp_path, max_concurrent_downloads=10, max_concurrent_uploads=10) as rt:
        downloads = [
            rt.download_file(f"{counter.url}/concurrent?delay=0.5", timeout=20000)
            for _ in range(15)
        ]
        uploads = [
            rt.upload_file(f"{counter.url}/concurrent?delay=0.5", upload_src, "f", timeout=20000)
            for _ in range(15)
        ]
        for t in [*downloads, *uploads]:
            assert t.result(timeout=20).status_code == 200
    stats = _stats(counter)
    assert stats["total"] == 30
    assert stats["max"] == 20


def test_separate_runtimes_have_separate_limits(tmp_path: Path, counter: ServerThread) -> None:
    with (
        _runtime(tmp_path / "a", max_concurrent_downloads=2) as a,
        _runtime(tmp_path / "b", max_concurrent_downloads=2) as b,
    ):
        tasks = [
            rt.download_file(f"{counter.url}/concurrent?delay=0.3", timeout=20000)
            for rt in (a, b)
            for _ in range(3)
        ]
        for t in tasks:
            t.result(timeout=20)
    assert _stats(counter)["max"] == 4
