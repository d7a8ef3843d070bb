"""Temp files and the saved-file store (SPEC §7)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import wxtransfer
from tests.servers.app import pattern
from tests.servers.threaded import ServerThread


def _runtime(tmp_path: Path) -> wxtransfer.Runtime:
    return wxtransfer.Runtime(home=tmp_path / "home", temp_dir=tmp_path / "tmp")


def _download(rt: wxtransfer.Runtime, server: ServerThread, n: int = 3000) -> str:
    res = rt.download_file(f"{server.url}/bytes/{n}", timeout=5000).result(timeout=10)
    assert res.temp_file_path is not None
    return res.temp_file_path


def _env(home: Path) -> dict[str, str]:
    """The environment of a child interpreter: ours (PYTHONPATH too), with its own home."""
    return dict(os.environ, WXTRANSFER_HOME=str(home))


def test_save_file_moves_temp_file(tmp_path: Path, server: ServerThread) -> None:
    with _runtime(tmp_path) as rt:
        temp = _download(rt, server, 3000)
        assert Path(temp).read_bytes() == pattern(3000)
        saved = rt.save_file(temp)
        assert not os.path.exists(temp)
        assert Path(saved).read_bytes() == pattern(3000)
        assert Path(saved).parent.resolve() == rt.saved_files_dir.resolve()
        # the store is persistent: closing the runtime keeps the saved file
    assert Path(saved).read_bytes() == pattern(3000)


def test_saved_file_list_and_info(tmp_path: Path, server: ServerThread) -> None:
    with _runtime(tmp_path) as rt:
        assert rt.get_saved_file_list() == []
        before = time.time()
        saved = rt.save_file(_download(rt, server, 1234))
        after = time.time()
        files = rt.get_saved_file_list()
        assert isinstance(files, list)
        assert [f.file_path for f in files] == [saved]
        entry = files[0]
        assert entry.size == 1234
        assert isinstance(entry.create_time, int)
        assert int(before) - 1 <= entry.create_time <= after + 1
        assert entry["filePath"] == saved
        assert entry["size"] == 1234
        assert entry["createTime"] == entry.create_time
        assert set(entry.keys()) == {"filePath", "size", "createTime"}

        info = rt.get_saved_file_info(saved)
        assert info.size == 1234
        assert info.create_time == entry.create_time
        assert info["size"] == 1234
        assert info["createTime"] == entry.create_time


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256"])
def test_get_file_info_digests(tmp_path: Path, algorithm: str) -> None:
    data = os.urandom(70_000)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    with _runtime(tmp_path) as rt:
        info = rt.get_file_info(str(path), algorithm)
    assert info.size == len(data)
    assert info.digest == hashlib.new(algorithm, data).hexdigest()
    assert info["digest"] == info.digest
    assert info["size"] == len(data)
    assert set(info.keys()) == {"size", "digest"}


def test_get_file_info_default_is_md5(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello")
    with _runtime(tmp_path) as rt:
        assert rt.get_file_info(str(path)).digest == hashlib.md5(b"hello").hexdigest()


def test_get_file_info_bad_algorithm(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello")
    with _runtime(tmp_path) as rt, pytest.raises(wxtransfer.InvalidArgumentError) as exc:
        rt.get_file_info(str(path), "crc32")
    assert exc.value.errno == 600005
    assert exc.value.err_msg.startswith("getFileInfo:fail parameter error")


def test_get_file_info_missing_file(tmp_path: Path) -> None:
    with _runtime(tmp_path) as rt, pytest.raises(wxtransfer.FileError):
        rt.get_file_info(str(tmp_path / "nope.bin"))


def test_remove_saved_file(tmp_path: Path, server: ServerThread) -> None:
    with _runtime(tmp_path) as rt:
        saved = rt.save_file(_download(rt, server))
        other = rt.save_file(_download(rt, server))
        rt.remove_saved_file(saved)
        assert not os.path.exists(saved)
        assert [f.file_path for f in rt.get_saved_file_list()] == [other]
        with pytest.raises(wxtransfer.FileError):
            rt.get_saved_file_info(saved)
        with pytest.raises(wxtransfer.FileError):
            rt.remove_saved_file(saved)


def test_remove_outside_store_refused(tmp_path: Path) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_bytes(b"keep me")
    with _runtime(tmp_path) as rt:
        with pytest.raises(wxtransfer.FileError):
            rt.remove_saved_file(str(outside))
        # a path that only goes through the store folder is refused too
        sneaky = str(rt.saved_files_dir / ".." / ".." / "precious.txt")
        with pytest.raises(wxtransfer.FileError):
            rt.remove_saved_file(sneaky)
        with pytest.raises(wxtransfer.FileError):
            rt.get_saved_file_info(str(outside))
    assert outside.read_bytes() == b"keep me"


def test_save_refuses_foreign_file(tmp_path: Path, server: ServerThread) -> None:
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(b"not a temp file")
    with _runtime(tmp_path) as rt:
        with pytest.raises(wxtransfer.FileError):
            rt.save_file(str(foreign))
        # another runtime's temp file is not ours either
        with _runtime(tmp_path / "other") as other:
            their_temp = _download(other, server)
            with pytest.raises(wxtransfer.FileError):
                rt.save_file(their_temp)
            assert os.path.exists(their_temp)
        assert rt.get_saved_file_list() == []
    assert foreign.read_bytes() == b"not a temp file"


def test_save_refuses_missing_temp(tmp_path: Path, server: ServerThread) -> None:
    with _runtime(tmp_path) as rt:
        temp = _download(rt, server)
        rt.save_file(temp)
        with pytest.raises(wxtransfer.FileError):
            rt.save_file(temp)  # already moved
        assert len(rt.get_saved_file_list()) == 1


def test_save_to_file_path(tmp_path: Path, server: ServerThread) -> None:
    target = tmp_path / "kept" / "data.bin"
    target.parent.mkdir()
    with _runtime(tmp_path) as rt:
        temp = _download(rt, server, 500)
        saved = rt.save_file(temp, str(target))
        assert Path(saved) == target
        assert not os.path.exists(temp)
    assert target.read_bytes() == pattern(500)


def test_save_does_not_overwrite(tmp_path: Path, server: ServerThread) -> None:
    existing = tmp_path / "existing.bin"
    existing.write_bytes(b"original")
    with _runtime(tmp_path) as rt:
        temp = _download(rt, server, 500)
        with pytest.raises(wxtransfer.FileError):
            rt.save_file(temp, str(existing))
        assert existing.read_bytes() == b"original"
        # the temp file was not consumed by the refused save
        assert Path(temp).read_bytes() == pattern(500)


def test_saved_files_visible_from_another_process(tmp_path: Path, server: ServerThread) -> None:
    home = tmp_path / "home"
    with wxtransfer.Runtime(home=home, temp_dir=tmp_path / "tmp") as rt:
        saved = rt.save_file(_download(rt, server, 777))
    script = textwrap.dedent(
        """
        import json, wxtransfer
        print(json.dumps([dict(f) for f in wxtransfer.get_saved_file_list()]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    listed = json.loads(out.stdout)
    assert [(f["filePath"], f["size"]) for f in listed] == [(saved, 777)]
    assert isinstance(listed[0]["createTime"], int)


def test_temp_folder_and_files_owner_only(tmp_path: Path, server: ServerThread) -> None:
    with _runtime(tmp_path) as rt:
        temp = _download(rt, server)
        folder = os.path.dirname(temp)
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(temp).st_mode) == 0o600
        assert Path(folder).parent.resolve() == (tmp_path / "tmp").resolve()


def test_temp_files_removed_at_close(tmp_path: Path, server: ServerThread) -> None:
    rt = _runtime(tmp_path)
    try:
        temps = [_download(rt, server) for _ in range(3)]
        saved = rt.save_file(temps.pop())
        assert all(os.path.exists(t) for t in temps)
    finally:
        rt.close()
    assert not any(os.path.exists(t) for t in temps)
    assert not os.path.exists(os.path.dirname(temps[0]))
    assert os.path.exists(saved)


def test_temp_files_removed_at_process_exit(tmp_path: Path, server: ServerThread) -> None:
    script = textwrap.dedent(
        f"""
        import sys, wxtransfer
        rt = wxtransfer.Runtime(temp_dir={str(tmp_path / "tmp")!r})
        res = rt.download_file({server.url + "/bytes/4096"!r}, timeout=5000).result(10)
        print(res.temp_file_path, flush=True)
        # neither rt.close() nor anything else: the interpreter just ends
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    temp = out.stdout.strip()
    assert temp.startswith(str(tmp_path / "tmp"))
    assert not os.path.exists(temp)
    assert not os.path.exists(os.path.dirname(temp))


def test_temp_files_of_default_runtime_removed_at_exit(
    tmp_path: Path, server: ServerThread
) -> None:
    script = textwrap.dedent(
        f"""
        import wxtransfer
        res = wxtransfer.download_file({server.url + "/bytes/100"!r}, timeout=5000).result(10)
        print(res.temp_file_path, flush=True)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    temp = out.stdout.strip()
    assert temp
    assert not os.path.exists(temp)
