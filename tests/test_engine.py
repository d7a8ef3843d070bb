"""The engine loop: libcurl's sockets are watched through ``fdset()``, which cannot name a
socket numbered at or past FD_SETSIZE (1024). Such transfers must still finish."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

import wxtransfer
from tests.servers.app import pattern
from tests.servers.threaded import ServerThread

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
