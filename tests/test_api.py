"""The public surface, the exception tree and the result objects."""

from __future__ import annotations

import builtins
import importlib.metadata
import subprocess
import sys

import pytest

import wxtransfer
from wxtransfer._options import js_number

EXPORTED = [
    "AbortError",
    "ChecksumError",
    "DownloadFileResult",
    "DownloadProgress",
    "DownloadTask",
    "FileError",
    "FileInfo",
    "HeadersReceived",
    "InvalidArgumentError",
    "NetworkError",
    "Retry",
    "RetryEvent",
    "RuleError",
    "Runtime",
    "SavedFileInfo",
    "Task",
    "TimeoutError",
    "TimeoutUnitWarning",
    "TransferError",
    "UploadFileResult",
    "UploadProgress",
    "UploadTask",
    "__version__",
    "default_runtime",
    "download_file",
    "get_file_info",
    "get_saved_file_info",
    "get_saved_file_list",
    "remove_saved_file",
    "save_file",
    "set_default_runtime",
    "upload_file",
    "upload_resumable",
    "wx",
]


def test_public_surface_is_pinned() -> None:
    assert [n for n in wxtransfer.__all__ if n not in ("WeChatRules",)] == EXPORTED
    for name in wxtransfer.__all__:
        assert hasattr(wxtransfer, name), name


def test_version_is_the_installed_distributions() -> None:
    assert wxtransfer.__version__ == importlib.metadata.version("wxtransfer")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        wxtransfer.nope  # noqa: B018


def test_import_leaves_out_what_only_some_calls_need() -> None:
    """asyncio, importlib.metadata and email.utils were half of ``import wxtransfer`` and of
    a ``wxtransfer`` command's start-up; they are imported where they are used."""
    code = (
        "import sys, wxtransfer, wxtransfer.cli\n"
        "print(sorted({'asyncio', 'importlib.metadata', 'email.utils'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["Runtime", "UploadTask", "TransferError", "UploadFileResult"])
def test_public_classes_say_wxtransfer(name: str) -> None:
    assert getattr(wxtransfer, name).__module__ == "wxtransfer"


def test_exception_tree() -> None:
    for cls in (
        wxtransfer.AbortError,
        wxtransfer.TimeoutError,
        wxtransfer.NetworkError,
        wxtransfer.FileError,
        wxtransfer.InvalidArgumentError,
        wxtransfer.RuleError,
    ):
        assert issubclass(cls, wxtransfer.TransferError)
        assert issubclass(cls, Exception)
    assert issubclass(wxtransfer.TimeoutError, builtins.TimeoutError)
    assert issubclass(wxtransfer.InvalidArgumentError, ValueError)
    err = wxtransfer.TimeoutError("downloadFile:fail timeout", 5)
    assert err["errMsg"] == "downloadFile:fail timeout"
    assert err["errno"] == 5
    assert err.to_dict() == {"errMsg": "downloadFile:fail timeout", "errno": 5}
    assert str(err) == "downloadFile:fail timeout"
    with pytest.raises(KeyError):
        err["nope"]


def test_download_result_has_only_the_platform_keys_it_would_return() -> None:
    temp = wxtransfer.DownloadFileResult(200, {"A": "b"}, 3, temp_file_path="/t/x.png")
    assert set(temp) == {"tempFilePath", "statusCode", "header", "dataLength", "errMsg"}
    assert "filePath" not in temp
    assert temp["errMsg"] == "downloadFile:ok"
    saved = wxtransfer.DownloadFileResult(404, {}, 0, file_path="/x", profile={"port": 1})
    assert set(saved) == {"filePath", "statusCode", "header", "dataLength", "errMsg", "profile"}
    with pytest.raises(KeyError):
        saved["tempFilePath"]
    assert saved.to_dict()["statusCode"] == 404


def test_upload_result_and_progress_keys() -> None:
    res = wxtransfer.UploadFileResult("ok", 201, {})
    assert dict(res) == {"data": "ok", "statusCode": 201, "header": {}, "errMsg": "uploadFile:ok"}
    progress = wxtransfer.UploadProgress(50, 5, 10)
    assert progress["totalBytesSent"] == 5
    assert progress["totalBytesExpectedToSend"] == 10
    down = wxtransfer.DownloadProgress(100, 7, 7)
    assert dict(down) == {"progress": 100, "totalBytesWritten": 7, "totalBytesExpectedToWrite": 7}
    with pytest.raises(AttributeError):
        progress.progress = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1, "1"),
        (1.0, "1"),
        (-0.0, "0"),
        (1.5, "1.5"),
        (0.1, "0.1"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (123456789012345680000.0, "123456789012345680000"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (2**60, "1152921504606846976"),
    ],
)
def test_numbers_print_as_javascript_does(value: float, text: str) -> None:
    assert js_number(value) == text
