"""The mini-program face: ``wx.uploadFile({...})`` and friends, on the default runtime."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.servers.app import pattern
from tests.servers.threaded import ServerThread
from wxtransfer import _runtime, wx


def _reset_default() -> None:
    with _runtime._default_lock:
        rt, _runtime._default = _runtime._default, None
    if rt is not None:
        rt.close()


@pytest.fixture(autouse=True)
def default_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh default runtime whose saved-file store is under ``tmp_path``."""
    home = tmp_path / "home"
    monkeypatch.setenv("WXTRANSFER_HOME", str(home))
    _reset_default()
    yield home
    _reset_default()


class Calls:
    """Records success / fail / complete calls (they run on the dispatcher thread)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.done = threading.Event()

    def option(self, **option: Any) -> dict[str, Any]:
        return {
            **option,
            "success": lambda res: self.events.append(("success", res)),
            "fail": lambda err: self.events.append(("fail", err)),
            "complete": self._complete,
        }

    def _complete(self, res: Any) -> None:
        self.events.append(("complete", res))
        self.done.set()

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]

    def wait(self) -> None:
        assert self.done.wait(10), "complete never ran"


def test_download_to_temp_file(server: ServerThread, default_runtime: Path) -> None:
    calls = Calls()
    task = wx.downloadFile(calls.option(url=f"{server.url}/bytes/2000", timeout=5000))
    assert isinstance(task, wxtransfer.DownloadTask)
    task.result(timeout=10)
    calls.wait()
    assert calls.kinds() == ["success", "complete"]
    res = calls.events[0][1]
    assert calls.events[1][1] is res
    assert res["statusCode"] == 200
    assert res["errMsg"] == "downloadFile:ok"
    assert res["dataLength"] == 2000
    assert "filePath" not in res
    assert Path(res["tempFilePath"]).read_bytes() == pattern(2000)
    assert res["header"]["Content-Length"] == "2000"
    # the default runtime's store is the one WXTRANSFER_HOME names
    assert wxtransfer.default_runtime().saved_files_dir == default_runtime / "saved_files"


def test_download_to_file_path(server: ServerThread, tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    calls = Calls()
    wx.downloadFile(calls.option(url=f"{server.url}/bytes/321", filePath=str(target)))
    calls.wait()
    assert calls.kinds() == ["success", "complete"]
    res = calls.events[0][1]
    assert res["filePath"] == str(target)
    assert "tempFilePath" not in res
    assert res["statusCode"] == 200
    assert res["errMsg"] == "downloadFile:ok"
    assert target.read_bytes() == pattern(321)


def test_download_404_is_success(server: ServerThread) -> None:
    calls = Calls()
    wx.downloadFile(calls.option(url=f"{server.url}/status/404"))
    calls.wait()
    assert calls.kinds() == ["success", "complete"]
    assert calls.events[0][1]["statusCode"] == 404


def test_upload_with_form_data(server: ServerThread, tmp_path: Path) -> None:
    src = tmp_path / "photo.jpg"
    src.write_bytes(pattern(5000))
    calls = Calls()
    task = wx.uploadFile(
        calls.option(
            url=f"{server.url}/upload",
            filePath=str(src),
            name="file",
            formData={"user": "test", "n": 1.5, "ok": True},
            header={"X-Token": "abc"},
            timeout=5000,
            enableHttp2=False,
            enableProfile=True,
        )
    )
    assert isinstance(task, wxtransfer.UploadTask)
    task.result(timeout=10)
    calls.wait()
    assert calls.kinds() == ["success", "complete"]
    res = calls.events[0][1]
    assert res["errMsg"] == "uploadFile:ok"
    assert res["statusCode"] == 200
    assert isinstance(res["data"], str)
    echo = json.loads(res["data"])
    assert echo["fields"] == {"user": "test", "n": "1.5", "ok": "true"}
    assert echo["headers"]["x-token"] == "abc"
    [part] = echo["files"]
    assert part["field"] == "file"
    assert part["filename"] == "photo.jpg"
    assert part["content_type"] == "image/jpeg"
    assert part["size"] == 5000
    assert part["sha256"] == hashlib.sha256(pattern(5000)).hexdigest()


def test_upload_missing_url_fails(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"x")
    calls = Calls()
    task = wx.uploadFile(calls.option(filePath=str(src), name="file"))
    calls.wait()
    assert calls.kinds() == ["fail", "complete"]
    err = calls.events[0][1]
    assert calls.events[1][1] is err
    assert err["errno"] == 600005
    assert err["errMsg"].startswith("uploadFile:fail parameter error: ")
    assert "url" in err["errMsg"]
    assert isinstance(err, wxtransfer.InvalidArgumentError)
    assert task.exception(timeout=10) is err


def test_download_bad_scheme_fails() -> None:
    calls = Calls()
    wx.downloadFile(calls.option(url="ftp://example.com/a.png"))
    calls.wait()
    assert calls.kinds() == ["fail", "complete"]
    err = calls.events[0][1]
    assert err["errno"] == 600009
    assert err["errMsg"].startswith("downloadFile:fail invalid URL")


def test_download_timeout_fails(server: ServerThread) -> None:
    calls = Calls()
    wx.downloadFile(calls.option(url=f"{server.url}/hang", timeout=200))
    calls.wait()
    assert calls.kinds() == ["fail", "complete"]
    err = calls.events[0][1]
    assert err["errMsg"] == "downloadFile:fail timeout"
    assert err["errno"] == 5


def test_upload_missing_file_fails(server: ServerThread, tmp_path: Path) -> None:
    calls = Calls()
    wx.uploadFile(
        calls.option(url=f"{server.url}/upload", filePath=str(tmp_path / "nope"), name="f")
    )
    calls.wait()
    assert calls.kinds() == ["fail", "complete"]
    err = calls.events[0][1]
    assert err["errno"] == 600005
    assert err["errMsg"].startswith("uploadFile:fail ")


def test_task_camel_case_methods(server: ServerThread) -> None:
    calls = Calls()
    task = wx.downloadFile(calls.option(url=f"{server.url}/bytes/200000?delay=0.01"))
    progress: list[Any] = []
    removed: list[Any] = []
    headers: list[Any] = []
    task.onHeadersReceived(headers.append)
    task.onProgressUpdate(progress.append)
    task.onProgressUpdate(removed.append)
    task.offProgressUpdate(removed.append)
    task.result(timeout=10)
    calls.wait()
    assert calls.kinds() == ["success", "complete"]
    assert removed == []
    assert headers and headers[0]["statusCode"] == 200
    assert headers[0]["header"]["Content-Length"] == "200000"
    assert progress, "no progress event"
    last = progress[-1]
    assert last["progress"] == 100
    assert last["totalBytesWritten"] == last["totalBytesExpectedToWrite"] == 200000
    values = [p["progress"] for p in progress]
    assert values == sorted(values)


def test_task_abort(server: ServerThread) -> None:
    calls = Calls()
    task = wx.downloadFile(calls.option(url=f"{server.url}/hang", timeout=10000))
    headers = threading.Event()
    task.onHeadersReceived(lambda _: headers.set())
    assert headers.wait(10)
    task.abort()
    task.abort()
    calls.wait()
    assert calls.kinds() == ["fail", "complete"]
    err = calls.events[0][1]
    assert err["errMsg"] == "downloadFile:fail abort"
    assert err["errno"] == 600003
    assert isinstance(task.exception(timeout=10), wxtransfer.AbortError)


def test_offProgressUpdate_without_argument_removes_all(server: ServerThread) -> None:
    calls = Calls()
    task = wx.downloadFile(calls.option(url=f"{server.url}/bytes/200000?delay=0.05"))
    got: list[Any] = []
    seen: list[int] = []

    def on_headers(_: Any) -> None:
        seen.append(1)
        # on the dispatcher thread: no event can be delivered between these calls
        task.onProgressUpdate(got.append)
        task.onProgressUpdate(lambda p: got.append(("second", p)))
        task.offProgressUpdate()

    task.onHeadersReceived(on_headers)
    task.result(timeout=10)
    calls.wait()
    assert seen == [1]
    assert got == []


def _download_temp(server: ServerThread, n: int = 1000) -> str:
    res = wx.downloadFile({"url": f"{server.url}/bytes/{n}"}).result(timeout=10)
    path = res["tempFilePath"]
    assert isinstance(path, str)
    return path


def test_file_system_manager(server: ServerThread, default_runtime: Path) -> None:
    fs = wx.getFileSystemManager()
    assert fs is wx.getFileSystemManager()
    temp = _download_temp(server, 1500)

    saved_calls = Calls()
    fs.saveFile(saved_calls.option(tempFilePath=temp))
    assert saved_calls.kinds() == ["success", "complete"]
    res = saved_calls.events[0][1]
    assert res["errMsg"] == "saveFile:ok"
    saved = res["savedFilePath"]
    assert Path(saved).parent == default_runtime / "saved_files"
    assert Path(saved).read_bytes() == pattern(1500)
    assert not os.path.exists(temp)

    list_calls = Calls()
    fs.getSavedFileList(list_calls.option())
    res = list_calls.events[0][1]
    assert res["errMsg"] == "getSavedFileList:ok"
    assert [(f["filePath"], f["size"]) for f in res["fileList"]] == [(saved, 1500)]
    assert isinstance(res["fileList"][0]["createTime"], int)

    info_calls = Calls()
    fs.getFileInfo(info_calls.option(filePath=saved, digestAlgorithm="sha1"))
    res = info_calls.events[0][1]
    assert res["errMsg"] == "getFileInfo:ok"
    assert res["size"] == 1500
    assert res["digest"] == hashlib.sha1(pattern(1500)).hexdigest()

    md5_calls = Calls()
    fs.getFileInfo(md5_calls.option(filePath=saved))
    assert md5_calls.events[0][1]["digest"] == hashlib.md5(pattern(1500)).hexdigest()

    rm_calls = Calls()
    fs.removeSavedFile(rm_calls.option(filePath=saved))
    assert rm_calls.kinds() == ["success", "complete"]
    assert rm_calls.events[0][1]["errMsg"] == "removeSavedFile:ok"
    assert not os.path.exists(saved)
    assert wxtransfer.get_saved_file_list() == []


def test_save_file_sync(server: ServerThread) -> None:
    fs = wx.getFileSystemManager()
    temp = _download_temp(server, 10)
    saved = fs.saveFileSync(temp)
    assert Path(saved).read_bytes() == pattern(10)
    assert not os.path.exists(temp)
    with pytest.raises(wxtransfer.FileError):
        fs.saveFileSync(temp)  # gone now


def test_top_level_file_calls(server: ServerThread) -> None:
    temp = _download_temp(server, 42)
    calls = Calls()
    wx.saveFile(calls.option(tempFilePath=temp))
    saved = calls.events[0][1]["savedFilePath"]

    info = Calls()
    wx.getSavedFileInfo(info.option(filePath=saved))
    res = info.events[0][1]
    assert res["errMsg"] == "getSavedFileInfo:ok"
    assert res["size"] == 42
    assert isinstance(res["createTime"], int)

    lst = Calls()
    wx.getSavedFileList(lst.option())
    assert [f["filePath"] for f in lst.events[0][1]["fileList"]] == [saved]

    rm = Calls()
    wx.removeSavedFile(rm.option(filePath=saved))
    assert rm.kinds() == ["success", "complete"]
    assert not os.path.exists(saved)


def test_file_call_failures_reach_fail(tmp_path: Path) -> None:
    outside = tmp_path / "keep.txt"
    outside.write_bytes(b"keep")

    save = Calls()
    wx.saveFile(save.option(tempFilePath=str(outside)))
    assert save.kinds() == ["fail", "complete"]
    assert save.events[0][1]["errMsg"].startswith("saveFile:fail ")
    assert isinstance(save.events[0][1]["errno"], int)

    rm = Calls()
    wx.removeSavedFile(rm.option(filePath=str(outside)))
    assert rm.kinds() == ["fail", "complete"]
    assert rm.events[0][1]["errMsg"].startswith("removeSavedFile:fail ")
    assert outside.read_bytes() == b"keep"

    digest = Calls()
    wx.getFileInfo(digest.option(filePath=str(outside), digestAlgorithm="sha512"))
    assert digest.kinds() == ["fail", "complete"]
    assert digest.events[0][1]["errMsg"].startswith("getFileInfo:fail parameter error")
    assert digest.events[0][1]["errno"] == 600005


def test_module_functions_use_default_runtime(server: ServerThread, default_runtime: Path) -> None:
    temp = wxtransfer.download_file(f"{server.url}/bytes/64").result(timeout=10).temp_file_path
    assert temp is not None
    saved = wxtransfer.save_file(temp)
    assert Path(saved).parent == default_runtime / "saved_files"
    assert [f.file_path for f in wxtransfer.get_saved_file_list()] == [saved]
    assert wxtransfer.get_saved_file_info(saved).size == 64
    assert (
        wxtransfer.get_file_info(saved, "sha256").digest == hashlib.sha256(pattern(64)).hexdigest()
    )
    wxtransfer.remove_saved_file(saved)
    assert wxtransfer.get_saved_file_list() == []


def test_non_dict_option_gives_failed_task_not_exception() -> None:
    task = wx.downloadFile("http://127.0.0.1:1/x")  # type: ignore[arg-type]
    err = task.exception(timeout=10)
    assert isinstance(err, wxtransfer.InvalidArgumentError)
    assert err["errMsg"].startswith("downloadFile:fail parameter error")
    upload = wx.uploadFile(["not", "a", "dict"])  # type: ignore[arg-type]
    assert isinstance(upload.exception(timeout=10), wxtransfer.InvalidArgumentError)


def test_none_option_is_a_parameter_error() -> None:
    task = wx.downloadFile(None)  # type: ignore[arg-type]
    err = task.exception(timeout=10)
    assert isinstance(err, wxtransfer.InvalidArgumentError)
    assert err["errMsg"] == "downloadFile:fail parameter error: url is required"
