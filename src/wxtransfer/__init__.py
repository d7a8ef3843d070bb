"""wxtransfer: file uploads and downloads the way wx.uploadFile / wx.downloadFile define them.

A call returns a task at once; progress, header and success/fail/complete callbacks run in
order on one thread (or on your asyncio loop); ``task.result()`` and ``await task`` wait.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import wx
from ._errors import (
    AbortError,
    ChecksumError,
    FileError,
    InvalidArgumentError,
    NetworkError,
    RuleError,
    TimeoutError,
    TransferError,
)
from ._options import TimeoutUnitWarning
from ._results import (
    DownloadFileResult,
    DownloadProgress,
    FileInfo,
    HeadersReceived,
    RetryEvent,
    SavedFileInfo,
    UploadFileResult,
    UploadProgress,
)
from ._retry import Retry
from ._rules import WeChatRules
from ._runtime import Runtime, default_runtime, package_version, set_default_runtime
from ._task import DownloadTask, Task, UploadTask

__all__ = [
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
    "WeChatRules",
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


def upload_file(
    url: str,
    file_path: str | os.PathLike[str] | None = None,
    name: str | None = None,
    *,
    files: Sequence[tuple[str, str | os.PathLike[str]]] | None = None,
    header: Mapping[str, str] | None = None,
    form_data: Mapping[str, str | int | float | bool] | None = None,
    timeout: int | float | None = None,
    success: Callable[[UploadFileResult], object] | None = None,
    fail: Callable[[TransferError], object] | None = None,
    complete: Callable[[Any], object] | None = None,
    stall_timeout: int | float | None = None,
    max_speed: int | None = None,
    retry: int | Retry | None = None,
    connect_timeout: int | float | None = None,
    max_redirects: int | None = None,
    **options: bool,
) -> UploadTask:
    """Upload ``file_path`` as multipart field ``name`` (or ``files``, ``(name, file_path)``
    pairs, all in one request) with the default runtime.

    ``timeout`` and ``stall_timeout`` are in milliseconds. Returns an ``UploadTask`` at
    once; never raises.
    """
    return default_runtime().upload_file(
        url,
        file_path,
        name,
        files=files,
        header=header,
        form_data=form_data,
        timeout=timeout,
        success=success,
        fail=fail,
        complete=complete,
        stall_timeout=stall_timeout,
        max_speed=max_speed,
        retry=retry,
        connect_timeout=connect_timeout,
        max_redirects=max_redirects,
        **options,
    )


def upload_resumable(
    url: str,
    file_path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
    chunk_size: int | None = None,
    header: Mapping[str, str] | None = None,
    timeout: int | float | None = None,
    retry: int | Retry | None = None,
    stall_timeout: int | float | None = None,
    success: Callable[[UploadFileResult], object] | None = None,
    fail: Callable[[TransferError], object] | None = None,
    complete: Callable[[Any], object] | None = None,
    max_speed: int | None = None,
    connect_timeout: int | float | None = None,
) -> UploadTask:
    """Upload ``file_path`` to a tus 1.0 endpoint with the default runtime, resumably: a
    later call for the same file continues from the server's offset. ``data`` of the
    result is the upload's URL. Returns an ``UploadTask`` at once; never raises.
    """
    return default_runtime().upload_resumable(
        url,
        file_path,
        metadata=metadata,
        chunk_size=chunk_size,
        header=header,
        timeout=timeout,
        retry=retry,
        stall_timeout=stall_timeout,
        success=success,
        fail=fail,
        complete=complete,
        max_speed=max_speed,
        connect_timeout=connect_timeout,
    )


def download_file(
    url: str,
    *,
    header: Mapping[str, str] | None = None,
    file_path: str | os.PathLike[str] | None = None,
    timeout: int | float | None = None,
    success: Callable[[DownloadFileResult], object] | None = None,
    fail: Callable[[TransferError], object] | None = None,
    complete: Callable[[Any], object] | None = None,
    stall_timeout: int | float | None = None,
    max_speed: int | None = None,
    retry: int | Retry | None = None,
    connect_timeout: int | float | None = None,
    checksum: str | None = None,
    resume: bool = False,
    max_redirects: int | None = None,
    compressed: bool = False,
    **options: bool,
) -> DownloadTask:
    """Download ``url`` to a temp file (or ``file_path``) with the default runtime.

    ``timeout`` and ``stall_timeout`` are in milliseconds. Returns a ``DownloadTask`` at
    once; never raises.
    """
    return default_runtime().download_file(
        url,
        header=header,
        file_path=file_path,
        timeout=timeout,
        success=success,
        fail=fail,
        complete=complete,
        stall_timeout=stall_timeout,
        max_speed=max_speed,
        retry=retry,
        connect_timeout=connect_timeout,
        checksum=checksum,
        resume=resume,
        max_redirects=max_redirects,
        compressed=compressed,
        **options,
    )


def save_file(temp_file_path: str, file_path: str | None = None) -> str:
    """Move a temp file into the saved-file store and return its saved path."""
    return default_runtime().save_file(temp_file_path, file_path)


def get_saved_file_list() -> list[SavedFileInfo]:
    """Every saved file of the store."""
    return default_runtime().get_saved_file_list()


def get_saved_file_info(file_path: str) -> SavedFileInfo:
    """Size and creation time of a saved file."""
    return default_runtime().get_saved_file_info(file_path)


def remove_saved_file(file_path: str) -> None:
    """Delete a saved file."""
    default_runtime().remove_saved_file(file_path)


def get_file_info(file_path: str, digest_algorithm: str = "md5") -> FileInfo:
    """Size and digest of a file (``md5``, ``sha1`` or ``sha256``)."""
    return default_runtime().get_file_info(file_path, digest_algorithm)


for _name in __all__:
    _obj = globals().get(_name)  # __version__ comes from __getattr__ below
    if getattr(_obj, "__module__", "").startswith("wxtransfer._"):
        _obj.__module__ = "wxtransfer"
del _name, _obj


def __getattr__(name: str) -> str:
    """``wxtransfer.__version__``, read from the installed distribution when first asked
    for (see ``package_version``), so that importing wxtransfer does not pay for it."""
    if name == "__version__":
        return package_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
