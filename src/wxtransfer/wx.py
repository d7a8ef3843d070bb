"""The mini-program face: ``wx.uploadFile({...})`` for code ported from JavaScript.

A thin layer over the default runtime: the option keys and results are the platform's,
the core is the same one the Python face uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._errors import Errno, InvalidArgumentError, TransferError
from ._runtime import default_runtime
from ._task import DownloadTask, UploadTask

__all__ = [
    "FileSystemManager",
    "downloadFile",
    "getFileInfo",
    "getFileSystemManager",
    "getSavedFileInfo",
    "getSavedFileList",
    "removeSavedFile",
    "saveFile",
    "uploadFile",
]

Option = Mapping[str, Any]


def _option(api: str, option: object) -> Mapping[str, Any]:
    if option is None:
        return {}
    if not isinstance(option, Mapping):
        raise InvalidArgumentError(
            f"{api}:fail parameter error: the option should be a dict, not {type(option).__name__}",
            Errno.INVALID_ARGUMENT,
        )
    return option


def uploadFile(option: Option) -> UploadTask:
    """``wx.uploadFile``: keys url, filePath, name (or files: ``[{"name", "uri"}, …]``),
    header, formData, timeout, callbacks."""
    try:
        o = _option("uploadFile", option)
    except TransferError as exc:  # never raise: the failure is the task's
        return default_runtime()._refused("uploadFile", exc)  # type: ignore[return-value]
    return default_runtime().upload_file(
        o.get("url"),  # type: ignore[arg-type]
        o.get("filePath"),
        o.get("name"),
        files=o.get("files"),
        header=o.get("header"),
        form_data=o.get("formData"),
        timeout=o.get("timeout"),
        success=o.get("success"),
        fail=o.get("fail"),
        complete=o.get("complete"),
        enable_http2=o.get("enableHttp2", False),
        enable_quic=o.get("enableQuic", False),
        enable_profile=o.get("enableProfile", True),
    )


def downloadFile(option: Option) -> DownloadTask:
    """``wx.downloadFile``: keys url, header, filePath, timeout, callbacks."""
    try:
        o = _option("downloadFile", option)
    except TransferError as exc:  # never raise: the failure is the task's
        return default_runtime()._refused("downloadFile", exc)  # type: ignore[return-value]
    return default_runtime().download_file(
        o.get("url"),  # type: ignore[arg-type]
        header=o.get("header"),
        file_path=o.get("filePath"),
        timeout=o.get("timeout"),
        success=o.get("success"),
        fail=o.get("fail"),
        complete=o.get("complete"),
        enable_http2=o.get("enableHttp2", False),
        enable_quic=o.get("enableQuic", False),
        enable_profile=o.get("enableProfile", True),
    )


def _run(api: str, option: object, call: Callable[[Mapping[str, Any]], dict[str, Any]]) -> None:
    """Run a file call and hand its result to success/fail, then complete."""
    o = _option(api, option)
    success, fail, complete = o.get("success"), o.get("fail"), o.get("complete")
    try:
        res: dict[str, Any] | TransferError = {**call(o), "errMsg": f"{api}:ok"}
    except TransferError as exc:
        res = exc
        if fail is None and complete is None:
            raise
        if fail is not None:
            fail(exc)
    else:
        if success is not None:
            success(res)
    if complete is not None:
        complete(res)


def saveFile(option: Option) -> None:
    """``saveFile``: move ``tempFilePath`` into the store; success gets ``savedFilePath``."""
    _run(
        "saveFile",
        option,
        lambda o: {
            "savedFilePath": default_runtime().save_file(o.get("tempFilePath"), o.get("filePath")),  # type: ignore[arg-type]
        },
    )


def getSavedFileList(option: Option | None = None) -> None:
    """``getSavedFileList``: success gets ``fileList`` of ``{filePath, size, createTime}``."""
    _run(
        "getSavedFileList",
        option,
        lambda o: {
            "fileList": [info.to_dict() for info in default_runtime().get_saved_file_list()],
        },
    )


def getSavedFileInfo(option: Option) -> None:
    """``getSavedFileInfo``: success gets ``size`` and ``createTime``."""

    def call(o: Mapping[str, Any]) -> dict[str, Any]:
        info = default_runtime().get_saved_file_info(o.get("filePath"))  # type: ignore[arg-type]
        return {"size": info.size, "createTime": info.create_time}

    _run("getSavedFileInfo", option, call)


def removeSavedFile(option: Option) -> None:
    """``removeSavedFile``: delete one saved file."""

    def call(o: Mapping[str, Any]) -> dict[str, Any]:
        default_runtime().remove_saved_file(o.get("filePath"))  # type: ignore[arg-type]
        return {}

    _run("removeSavedFile", option, call)


def getFileInfo(option: Option) -> None:
    """``getFileInfo``: success gets ``size`` and ``digest`` (``digestAlgorithm``: md5 default)."""
    _run(
        "getFileInfo",
        option,
        lambda o: (
            default_runtime()
            .get_file_info(
                o.get("filePath"),  # type: ignore[arg-type]
                o.get("digestAlgorithm", "md5"),
            )
            .to_dict()
        ),
    )


class FileSystemManager:
    """``wx.getFileSystemManager()``: the same file calls, plus ``saveFileSync``."""

    saveFile = staticmethod(saveFile)
    getSavedFileList = staticmethod(getSavedFileList)
    removeSavedFile = staticmethod(removeSavedFile)
    getFileInfo = staticmethod(getFileInfo)

    @staticmethod
    def saveFileSync(tempFilePath: str, filePath: str | None = None) -> str:
        """Save and return the saved path; raises ``FileError`` on failure."""
        return default_runtime().save_file(tempFilePath, filePath)


_fs = FileSystemManager()


def getFileSystemManager() -> FileSystemManager:
    """The file system manager, as ``wx.getFileSystemManager()`` returns it."""
    return _fs
