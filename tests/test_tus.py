"""Resumable uploads (SPEC §9, tus 1.0 + creation) against the tus reference server
(@tus/server with its file store), through a proxy that counts and cuts connections."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.servers.cutproxy import CutProxy
from tests.servers.tus import TusServer


@pytest.fixture(scope="module")
def tus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusServer]:
    with TusServer(tmp_path_factory.mktemp("tus")) as server:
        yield server


def _port(server: TusServer) -> int:
    port = urllib.parse.urlsplit(server.url).port
    assert port is not None
    return port


@pytest.fixture
def proxy(tus: TusServer) -> Iterator[CutProxy]:
    with CutProxy("127.0.0.1", _port(tus)) as p:
        yield p


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[wxtransfer.Runtime]:
    with wxtransfer.Runtime(home=tmp_path / "home") as runtime:
        yield runtime


def _stored(tus: TusServer, upload_url: str) -> bytes:
    return (tus.store / upload_url.rstrip("/").rsplit("/", 1)[1]).read_bytes()


def _settled(tus: TusServer, proxy: CutProxy) -> None:
    """Wait until the bytes of an aborted or killed upload stop arriving at the server."""
    last: tuple[int, list[int]] | None = None
    for _ in range(100):
        now = (proxy.sent_up, [u.offset for u in tus.uploads()])
        if now == last:
            return
        last = now
        time.sleep(0.2)
    raise AssertionError("the server's offsets never settled")


def _checkpoints(home: Path) -> list[str]:
    folder = home / "resumable"
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_an_upload_arrives_whole_and_its_checkpoint_is_gone(
    tus: TusServer, rt: wxtransfer.Runtime, tmp_path: Path
) -> None:
    data = os.urandom(3_000_000)
    (tmp_path / "clip.mp4").write_bytes(data)
    sent: list[int] = []
    called: list[Any] = []
    task = rt.upload_resumable(
        tus.url,
        tmp_path / "clip.mp4",
        metadata={"owner": "张三"},
        success=lambda r: called.append(("success", r)),
        complete=lambda r: called.append(("complete", r)),
    )
    task.on_progress_update(lambda p: sent.append(p.total_bytes_sent))
    res = task.result(30)
    assert called == [("success", res), ("complete", res)]
    assert res.status_code == 204 and res.err_msg == "uploadFile:ok"
    assert res.data.startswith(tus.url) and res.attempts == 2  # POST, PATCH
    assert _stored(tus, res.data) == data
    upload = tus.upload(res.data.rsplit("/", 1)[1])
    assert upload.metadata == {"filename": "clip.mp4", "owner": "张三"}
    assert sent == sorted(sent) and sent[-1] == len(data)
    assert _checkpoints(tmp_path / "home") == []


def test_chunks_and_an_empty_file(tus: TusServer, rt: wxtransfer.Runtime, tmp_path: Path) -> None:
    data = os.urandom(1_000_001)
    (tmp_path / "a.bin").write_bytes(data)
    res = rt.upload_resumable(tus.url, tmp_path / "a.bin", chunk_size=300_000).result(30)
    assert res.attempts == 1 + 4 and _stored(tus, res.data) == data
    (tmp_path / "empty.bin").write_bytes(b"")
    empty = rt.upload_resumable(tus.url, tmp_path / "empty.bin").result(30)
    assert empty.status_code == 201 and empty.data.startswith(tus.url)
    assert _stored(tus, empty.data) == b""


def test_abort_then_the_same_call_sends_only_the_rest(
    tus: TusServer, proxy: CutProxy, tmp_path: Path
) -> None:
    data = os.urandom(20_000_000)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    home = tmp_path / "home"
    with wxtransfer.Runtime(home=home, max_upload_speed=20_000_000) as rt:
        task = rt.upload_resumable(proxy.url_for("/files/"), path)
        task.on_progress_update(lambda p: p.progress >= 30 and task.abort())
        with pytest.raises(wxtransfer.AbortError):
            task.result(30)
    assert len(_checkpoints(home)) == 1  # abort is a pause
    with wxtransfer.Runtime(home=home) as rt:  # a checkpoint is no saved file
        assert rt.get_saved_file_list() == []
    _settled(tus, proxy)
    [upload] = [u for u in tus.uploads() if u.length == len(data) and u.offset < len(data)]
    held = upload.offset
    assert 0 < held < len(data)
    before = proxy.sent_up
    with wxtransfer.Runtime(home=home) as rt:
        res = rt.upload_resumable(proxy.url_for("/files/"), path).result(30)
    assert res.data.endswith(upload.id) and res.attempts == 2  # HEAD, PATCH: no new upload
    assert _stored(tus, res.data) == data
    resent = proxy.sent_up - before
    assert len(data) - held <= resent < len(data) - held + 4096, (held, resent)
    assert _checkpoints(home) == []


def test_a_cut_patch_is_retried_from_the_servers_offset(
    tus: TusServer, rt: wxtransfer.Runtime, tmp_path: Path
) -> None:
    data = os.urandom(10_000_000)
    (tmp_path / "v.bin").write_bytes(data)
    events: list[wxtransfer.RetryEvent] = []
    logged = len(tus.requests())
    with CutProxy("127.0.0.1", _port(tus), cut_after=3_000_000, cuts=2) as cutting:
        task = rt.upload_resumable(
            cutting.url_for("/files/"), tmp_path / "v.bin", retry=wxtransfer.Retry(5, backoff=0)
        )
        task.on_retry(events.append)
        sent: list[int] = []
        task.on_progress_update(lambda p: sent.append(p.total_bytes_sent))
        res = task.result(60)
        up = cutting.sent_up
    assert _stored(tus, res.data) == data
    assert [e.attempt for e in events] == [2, 3]  # each cut PATCH: HEAD, then the rest
    # the cut as it was seen (a send or a receive), not libcurl's "could not rewind"
    assert [e.error.curl_code if e.error else 0 for e in events] in (
        [56, 56],
        [55, 56],
        [56, 55],
        [55, 55],
    )
    # A byte the server holds is never sent again: a PATCH whose Upload-Offset is not
    # the server's is refused with 409, and none was. Bytes the server had received but
    # not yet stored when the connection died (socket buffers) are lost to it, and sent
    # again: a little per cut, more on a loaded machine.
    answered = [r[1] for r in tus.requests_after(logged, until=1) if r[0] == "PATCH"]
    assert len(answered) == 3 and answered[-1] == "204" and "409" not in answered, answered
    assert len(data) <= up < len(data) + 2 * 1_000_000
    assert sent == sorted(sent)


def test_without_retry_a_cut_fails_and_the_next_call_continues(
    tus: TusServer, tmp_path: Path
) -> None:
    data = os.urandom(5_000_000)
    (tmp_path / "v.bin").write_bytes(data)
    home = tmp_path / "home"
    with CutProxy("127.0.0.1", _port(tus), cut_after=2_000_000, cuts=1) as cutting:
        with wxtransfer.Runtime(home=home) as rt:
            with pytest.raises(wxtransfer.NetworkError):
                rt.upload_resumable(cutting.url_for("/files/"), tmp_path / "v.bin").result(30)
            res = rt.upload_resumable(cutting.url_for("/files/"), tmp_path / "v.bin").result(30)
    assert _stored(tus, res.data) == data and res.attempts == 2


def test_a_changed_file_starts_a_new_upload(
    tus: TusServer, proxy: CutProxy, tmp_path: Path
) -> None:
    path = tmp_path / "doc.bin"
    path.write_bytes(os.urandom(8_000_000))
    home = tmp_path / "home"
    with wxtransfer.Runtime(home=home, max_upload_speed=10_000_000) as rt:
        task = rt.upload_resumable(proxy.url_for("/files/"), path)
        task.on_progress_update(lambda p: p.progress >= 20 and task.abort())
        with pytest.raises(wxtransfer.AbortError):
            task.result(30)
    first = json.loads((home / "resumable" / _checkpoints(home)[0]).read_text())["upload_url"]
    changed = os.urandom(8_000_000)
    path.write_bytes(changed)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    with wxtransfer.Runtime(home=home) as rt:
        res = rt.upload_resumable(proxy.url_for("/files/"), path).result(30)
    assert res.data != first
    assert _stored(tus, res.data) == changed


def test_a_killed_process_is_continued_by_another(
    tus: TusServer, proxy: CutProxy, tmp_path: Path
) -> None:
    data = os.urandom(12_000_000)
    path = tmp_path / "kill.bin"
    path.write_bytes(data)
    home = tmp_path / "home"
    script = textwrap.dedent(
        f"""
        import wxtransfer
        with wxtransfer.Runtime(home={str(home)!r}, max_upload_speed=4_000_000) as rt:
            rt.upload_resumable({proxy.url_for("/files/")!r}, {str(path)!r}).result(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        held = 0
        while time.monotonic() < deadline and held < 3_000_000:
            time.sleep(0.05)
            partial = [u for u in tus.uploads() if u.length == len(data)]
            held = max((u.offset for u in partial), default=0)
        assert held >= 3_000_000
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        _settled(tus, proxy)
        held = max(u.offset for u in tus.uploads() if u.length == len(data))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert len(_checkpoints(home)) == 1
    before = proxy.sent_up
    with wxtransfer.Runtime(home=home) as rt:
        res = rt.upload_resumable(proxy.url_for("/files/"), path).result(30)
    assert _stored(tus, res.data) == data
    assert len(data) - held <= proxy.sent_up - before < len(data) - held + 4096
    assert hashlib.sha256(_stored(tus, res.data)).digest() == hashlib.sha256(data).digest()


def test_a_server_that_is_not_tus_is_a_network_error(
    server: Any, rt: wxtransfer.Runtime, tmp_path: Path
) -> None:
    (tmp_path / "f.bin").write_bytes(b"x" * 10)
    task = rt.upload_resumable(server.url + "/upload", tmp_path / "f.bin")
    with pytest.raises(wxtransfer.NetworkError) as caught:
        task.result(10)
    assert "tus" in caught.value.err_msg
    assert caught.value.err_msg.startswith("uploadFile:fail the server does not speak tus")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_size": 0}, "chunk_size should be a positive int"),
        ({"chunk_size": 1.5}, "chunk_size should be a positive int"),
        ({"metadata": {"a b": "x"}}, "metadata key 'a b' should be ASCII"),
        ({"metadata": {"k": 1}}, "metadata['k'] should be a str"),
        ({"header": {"Upload-Offset": "0"}}, "is the tus protocol's"),
    ],
)
def test_bad_calls_send_nothing(
    proxy: CutProxy, rt: wxtransfer.Runtime, tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    (tmp_path / "f.bin").write_bytes(b"x")
    task = rt.upload_resumable(proxy.url_for("/files/"), tmp_path / "f.bin", **kwargs)
    with pytest.raises(wxtransfer.InvalidArgumentError) as caught:
        task.result(10)
    assert message in caught.value.err_msg
    assert proxy.sent_up == 0


def test_the_dev_server_speaks_tus_too(tmp_path: Path) -> None:
    from wxtransfer._server import DevServer

    data = os.urandom(2_000_000)
    (tmp_path / "photo.jpg").write_bytes(data)
    with (
        DevServer(root=tmp_path / "root", port=0) as dev,
        wxtransfer.Runtime(home=tmp_path / "home") as rt,
    ):
        res = rt.upload_resumable(dev.url + "/tus/", tmp_path / "photo.jpg").result(30)
        assert res.status_code == 204
        published = res.header.get("X-Wxtransfer-File")
    assert published is not None
    [stored] = [p for p in (tmp_path / "root").iterdir() if p.is_file()]
    assert stored.name.endswith("_photo.jpg") and stored.read_bytes() == data
