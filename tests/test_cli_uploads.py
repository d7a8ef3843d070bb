"""The upload command's curl habits, through the real CLI: -F name=@file (several, the same
name repeated), -F key=value, --form-string, and --resumable (tus) continued by the same
command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.cutproxy import CutProxy
from tests.servers.tus import TusServer


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WXTRANSFER_HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, "-m", "wxtransfer", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_form_attaches_files_and_sends_fields(tmp_path: Path, server: Any) -> None:
    (tmp_path / "a.jpg").write_bytes(b"A" * 1000)
    (tmp_path / "b.jpg").write_bytes(b"B" * 2000)
    (tmp_path / "c.txt").write_bytes(b"C")
    out = cli(
        tmp_path, "upload", server.url + "/upload",
        "-F", "photo=@a.jpg", "-F", "photo=@b.jpg", "-F", "user=test",
        "--form-string", "note=@not-a-file", "--name", "doc", "c.txt",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["order"] == ["user", "note", "doc", "photo", "photo"]
    assert report["fields"] == {"user": "test", "note": "@not-a-file"}
    assert [(f["filename"], f["size"]) for f in report["files"]] == [
        ("c.txt", 1), ("a.jpg", 1000), ("b.jpg", 2000)
    ]  # fmt: skip


def test_form_alone_is_enough_and_nothing_is_a_usage_error(tmp_path: Path, server: Any) -> None:
    (tmp_path / "a.jpg").write_bytes(b"A")
    assert cli(tmp_path, "upload", server.url + "/upload", "-F", "f=@a.jpg").returncode == 0
    none = cli(tmp_path, "upload", server.url + "/upload", "-F", "user=x")
    assert none.returncode == 2 and "nothing to upload" in none.stderr
    missing = cli(tmp_path, "upload", server.url + "/upload", "-F", "f=@gone.jpg")
    assert missing.returncode != 0 and "gone.jpg" in missing.stderr


@pytest.fixture(scope="module")
def tus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    with TusServer(tmp_path_factory.mktemp("tus")) as server:
        yield server


def test_resumable_upload_continues_with_the_same_command(tmp_path: Path, tus: TusServer) -> None:
    data = os.urandom(4_000_000)
    (tmp_path / "v.bin").write_bytes(data)
    port = urllib.parse.urlsplit(tus.url).port
    assert port is not None
    logged = len(tus.requests())
    with CutProxy("127.0.0.1", port, cut_after=1_500_000, cuts=1) as cutting:
        url = cutting.url_for("/files/")
        first = cli(tmp_path, "upload", "--resumable", url, "v.bin", "-F", "kind=video")
        assert first.returncode in (18, 52, 55, 56), first.stderr  # curl's cut connection
        assert "run the same command again to continue" in first.stderr
        second = cli(tmp_path, "upload", "--resumable", url, "v.bin", "-F", "kind=video")
        assert second.returncode == 0, second.stderr
        sent = cutting.sent_up
    upload_url = second.stdout.strip()
    upload_id = upload_url.rsplit("/", 1)[1]
    assert (tus.store / upload_id).read_bytes() == data
    assert tus.upload(upload_id).metadata == {"filename": "v.bin", "kind": "video"}
    # The second command sent only the rest: its PATCH started at the server's offset
    # (a PATCH at another offset is refused with 409). The server loses what it had
    # received but not stored when the connection died, and gets it again.
    answered = [r[1] for r in tus.requests_after(logged, until=1) if r[0] == "PATCH"]
    assert len(answered) == 2 and answered[-1] == "204" and "409" not in answered, answered
    assert len(data) <= sent < len(data) + 1_000_000


def test_resumable_takes_one_file(tmp_path: Path, tus: TusServer) -> None:
    (tmp_path / "a").write_bytes(b"a")
    out = cli(tmp_path, "upload", "--resumable", tus.url, "a", "-F", "x=@a")
    assert out.returncode == 2 and "--resumable uploads one FILE" in out.stderr
