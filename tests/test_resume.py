"""resume=True (SPEC §8): a download's bytes wait in <file_path>.wxpart with a checkpoint
when it fails, is aborted (a pause) or its process is killed; a later call continues them,
validated, and never joins two versions."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.helpers import runtime
from tests.servers.faults import Faulty
from tests.servers.rawsock import RawServer

RawFactory = Callable[..., RawServer]
BODY = os.urandom(400_000)


def part(target: Path) -> Path:
    return target.with_name(target.name + ".wxpart")


def checkpoint(target: Path) -> Path:
    return target.with_name(target.name + ".wxpart.json")


def cut_once(tmp_path: Path, url: str, target: Path) -> wxtransfer.TransferError:
    with runtime(tmp_path) as rt:
        err = rt.download_file(url, file_path=target, resume=True).exception(20)
    assert isinstance(err, wxtransfer.NetworkError)
    return err


def test_resume_needs_a_file_path(tmp_path: Path, raw_server: RawFactory) -> None:
    srv = raw_server(Faulty(BODY))
    with runtime(tmp_path) as rt:
        err = rt.download_file(srv.url + "/f", resume=True).exception(10)
    assert isinstance(err, wxtransfer.InvalidArgumentError)
    assert "resume=True needs a file_path" in err.err_msg
    assert srv.connections == 0


def test_a_failed_download_keeps_its_bytes_and_the_next_call_continues(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    faulty = Faulty(BODY, cut_after=150_000, cuts=1)
    srv = raw_server(faulty)
    target = tmp_path / "f.bin"
    cut_once(tmp_path, srv.url + "/f", target)
    assert not target.exists()  # never under file_path itself
    assert part(target).read_bytes() == BODY[:150_000]
    record = json.loads(checkpoint(target).read_text())
    assert record == {"url": srv.url + "/f", "validator": '"v1"', "total": len(BODY)}

    progress: list[int] = []
    with runtime(tmp_path) as rt:
        task = rt.download_file(srv.url + "/f", file_path=target, resume=True)
        task.on_progress_update(lambda p: progress.append(p.total_bytes_written))
        res = task.result(20)
    assert target.read_bytes() == BODY
    assert (res.status_code, res.data_length) == (200, len(BODY))  # as if in one piece
    assert not part(target).exists() and not checkpoint(target).exists()
    assert (faulty.requests[1]["range"], faulty.requests[1]["if-range"]) == (
        "bytes=150000-",
        '"v1"',
    )
    assert faulty.sent == len(BODY)
    assert progress[0] >= 150_000 and progress == sorted(progress)


def test_a_resource_that_changed_starts_over(tmp_path: Path, raw_server: RawFactory) -> None:
    faulty = Faulty(BODY, cut_after=150_000, cuts=1, versions=True)
    srv = raw_server(faulty)
    target = tmp_path / "f.bin"
    cut_once(tmp_path, srv.url + "/f", target)
    with runtime(tmp_path) as rt:
        rt.download_file(srv.url + "/f", file_path=target, resume=True).result(20)
    assert target.read_bytes() == faulty.version(1)[0]  # the new version, whole
    assert not part(target).exists()


def test_another_url_does_not_continue_the_part(tmp_path: Path, raw_server: RawFactory) -> None:
    faulty = Faulty(BODY, cut_after=150_000, cuts=1)
    srv = raw_server(faulty)
    target = tmp_path / "f.bin"
    cut_once(tmp_path, srv.url + "/f", target)
    with runtime(tmp_path) as rt:
        rt.download_file(srv.url + "/other", file_path=target, resume=True).result(20)
    assert "range" not in faulty.requests[1]
    assert target.read_bytes() == BODY


def test_a_416_for_the_bytes_held_means_the_part_is_whole(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    faulty = Faulty(BODY)
    srv = raw_server(faulty)
    target = tmp_path / "f.bin"
    part(target).write_bytes(BODY)
    checkpoint(target).write_text(
        json.dumps({"url": srv.url + "/f", "validator": '"v1"', "total": len(BODY)})
    )
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/f", file_path=target, resume=True).result(20)
    assert faulty.requests[0]["range"] == f"bytes={len(BODY)}-"
    assert (res.status_code, res.data_length) == (200, len(BODY))
    assert target.read_bytes() == BODY
    assert not part(target).exists() and not checkpoint(target).exists()


def test_another_status_is_the_result_and_the_part_waits(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    faulty = Faulty(BODY, cut_after=150_000, cuts=1, statuses=[])
    srv = raw_server(faulty)
    target = tmp_path / "f.bin"
    cut_once(tmp_path, srv.url + "/f", target)
    faulty.statuses = [503]
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/f", file_path=target, resume=True).result(20)
    assert res.status_code == 503 and target.read_bytes() == b"busy"
    assert part(target).read_bytes() == BODY[:150_000]  # untouched, for a later resume
    assert checkpoint(target).exists()


def test_a_checksum_covers_the_bytes_held_and_a_mismatch_leaves_nothing(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    faulty = Faulty(BODY, cut_after=150_000, cuts=1)
    srv = raw_server(faulty)
    right = tmp_path / "right.bin"
    cut_once(tmp_path, srv.url + "/f", right)
    digest = hashlib.sha256(BODY).hexdigest()
    with runtime(tmp_path) as rt:
        rt.download_file(
            srv.url + "/f", file_path=right, resume=True, checksum=f"sha256:{digest}"
        ).result(20)
    assert right.read_bytes() == BODY

    faulty.cuts = len(faulty.requests) + 1
    wrong = tmp_path / "wrong.bin"
    cut_once(tmp_path, srv.url + "/f", wrong)
    with runtime(tmp_path) as rt:
        err = rt.download_file(
            srv.url + "/f", file_path=wrong, resume=True, checksum="sha256:" + "0" * 64
        ).exception(20)
    assert isinstance(err, wxtransfer.ChecksumError)
    assert not wrong.exists() and not part(wrong).exists() and not checkpoint(wrong).exists()


def test_abort_with_resume_is_a_pause(tmp_path: Path, raw_server: RawFactory) -> None:
    faulty = Faulty(BODY, drip=0.02)
    srv = raw_server(faulty)
    target = tmp_path / "f.bin"
    moved = threading.Event()
    with runtime(tmp_path) as rt:
        task = rt.download_file(srv.url + "/f", file_path=target, resume=True)
        task.on_progress_update(lambda p: p.total_bytes_written > 100_000 and moved.set())
        assert moved.wait(20)
        task.abort()
        assert isinstance(task.exception(10), wxtransfer.AbortError)
    held = part(target).stat().st_size
    assert held > 0 and part(target).read_bytes() == BODY[:held]
    faulty.drip = 0.0
    with runtime(tmp_path) as rt:
        rt.download_file(srv.url + "/f", file_path=target, resume=True).result(20)
    assert target.read_bytes() == BODY
    assert faulty.requests[1]["range"] == f"bytes={held}-"


@pytest.mark.timeout(60)
def test_a_process_killed_mid_download_is_resumed_by_another(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    body = os.urandom(5 << 20)  # the writer hands bytes to the disk 1 MiB at a time
    faulty = Faulty(body, drip=0.01)
    srv = raw_server(faulty)
    target = tmp_path / "f.bin"
    script = textwrap.dedent(
        f"""
        import wxtransfer
        task = wxtransfer.download_file({srv.url + "/f"!r}, file_path={str(target)!r},
                                        resume=True, timeout=0)
        task.result()
        """
    )
    env = dict(os.environ, WXTRANSFER_HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if part(target).exists() and part(target).stat().st_size >= 1 << 20:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    held = part(target).stat().st_size
    assert 1 << 20 <= held < len(body) and checkpoint(target).exists()
    faulty.drip = 0.0
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/f", file_path=target, resume=True).result(20)
    assert target.read_bytes() == body  # byte-identical
    assert res.data_length == len(body)
    assert faulty.requests[1]["range"] == f"bytes={held}-"


# ---- against nginx: its own Range, If-Range and ETag ---------------------------------------


@pytest.fixture
def nginx(tmp_path: Path) -> Any:
    from tests.servers.nginx import NginxProcess

    root = tmp_path / "www"
    root.mkdir()
    try:
        srv = NginxProcess(root).start()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.skip(f"no nginx here ({exc}); make test installs it")
    try:
        yield srv
    finally:
        srv.stop()


def pause_after(rt: wxtransfer.Runtime, url: str, target: Path, at: int) -> None:
    """Start a slow resumable download, abort it once ``at`` bytes came (a pause)."""
    moved = threading.Event()
    task = rt.download_file(url, file_path=target, resume=True, max_speed=2_000_000)
    task.on_progress_update(lambda p: p.total_bytes_written >= at and moved.set())
    assert moved.wait(20)
    task.abort()
    assert isinstance(task.exception(10), wxtransfer.AbortError)


def test_nginx_continues_a_paused_download_byte_for_byte(tmp_path: Path, nginx: Any) -> None:
    body = os.urandom(4 << 20)
    (nginx.root / "big.bin").write_bytes(body)
    target = tmp_path / "big.bin"
    with runtime(tmp_path) as rt:
        pause_after(rt, nginx.url + "/big.bin", target, 1 << 20)
        held = part(target).stat().st_size
        assert 0 < held < len(body)
        res = rt.download_file(nginx.url + "/big.bin", file_path=target, resume=True).result(20)
    assert target.read_bytes() == body
    assert (res.status_code, res.data_length) == (200, len(body))
    last = nginx.log()[-1]
    assert (last["status"], last["range"]) == ("206", f"bytes={held}-")
    assert last["if_range"].startswith("\\x22")  # nginx's strong ETag, its quote escaped
    assert int(last["sent"]) == len(body) - held


def test_nginx_serves_a_changed_file_whole(tmp_path: Path, nginx: Any) -> None:
    old, new = os.urandom(4 << 20), os.urandom(4 << 20)
    served = nginx.root / "big.bin"
    served.write_bytes(old)
    target = tmp_path / "big.bin"
    with runtime(tmp_path) as rt:
        pause_after(rt, nginx.url + "/big.bin", target, 1 << 20)
        served.write_bytes(new)
        os.utime(served, (time.time() + 5, time.time() + 5))  # another ETag for sure
        rt.download_file(nginx.url + "/big.bin", file_path=target, resume=True).result(20)
    assert target.read_bytes() == new  # never old bytes joined to new ones
    assert nginx.log()[-1]["status"] == "200"


def test_two_resumable_downloads_of_one_file_never_share_the_part(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    body = os.urandom(2 << 20)
    faulty = Faulty(body, drip=0.005)
    srv = raw_server(faulty)
    target = tmp_path / "f.bin"
    with runtime(tmp_path) as rt:
        first = rt.download_file(srv.url + "/f", file_path=target, resume=True)
        deadline = time.monotonic() + 10
        while not part(target).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        second = rt.download_file(srv.url + "/f", file_path=target, resume=True)
        err = second.exception(20)
        assert first.result(20).data_length == len(body)
    assert isinstance(err, wxtransfer.FileError)
    assert "another download is writing" in err.err_msg
    assert target.read_bytes() == body
