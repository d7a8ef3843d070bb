"""Result, progress and header objects: attributes in Python, the platform's keys as a mapping."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

__all__ = [
    "DownloadFileResult",
    "DownloadProgress",
    "FileInfo",
    "HeadersReceived",
    "SavedFileInfo",
    "UploadFileResult",
    "UploadProgress",
]


class _PlatformMapping(Mapping[str, Any]):
    """Read-only mapping view by the platform's camelCase keys; absent values are absent keys."""

    _keys: ClassVar[dict[str, str]]  # platform key -> attribute name

    def _present(self) -> list[str]:
        return [k for k, attr in self._keys.items() if getattr(self, attr) is not None]

    def __getitem__(self, key: str) -> Any:
        attr = self._keys.get(key)
        if attr is None:
            raise KeyError(key)
        value = getattr(self, attr)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._present())

    def __len__(self) -> int:
        return len(self._present())

    def to_dict(self) -> dict[str, Any]:
        """A plain dict with the platform's keys, as the JavaScript API would hand it over."""
        return dict(self.items())


@dataclass(frozen=True, slots=True, eq=False)
class UploadProgress(_PlatformMapping):
    """An upload progress event: bytes of the request body handed to the network."""

    progress: int
    total_bytes_sent: int
    total_bytes_expected_to_send: int
    _keys: ClassVar[dict[str, str]] = {
        "progress": "progress",
        "totalBytesSent": "total_bytes_sent",
        "totalBytesExpectedToSend": "total_bytes_expected_to_send",
    }


@dataclass(frozen=True, slots=True, eq=False)
class DownloadProgress(_PlatformMapping):
    """A download progress event: bytes of the response body written to the file."""

    progress: int
    total_bytes_written: int
    total_bytes_expected_to_write: int
    _keys: ClassVar[dict[str, str]] = {
        "progress": "progress",
        "totalBytesWritten": "total_bytes_written",
        "totalBytesExpectedToWrite": "total_bytes_expected_to_write",
    }


@dataclass(frozen=True, slots=True, eq=False)
class HeadersReceived(_PlatformMapping):
    """The final response's headers, delivered before any download progress and success."""

    header: dict[str, str]
    status_code: int
    _keys: ClassVar[dict[str, str]] = {"header": "header", "statusCode": "status_code"}


@dataclass(frozen=True, slots=True, eq=False)
class UploadFileResult(_PlatformMapping):
    """What ``success`` receives for an upload: the response, whatever its status code."""

    data: str
    status_code: int
    header: dict[str, str]
    profile: dict[str, Any] | None = None
    err_msg: str = "uploadFile:ok"
    _keys: ClassVar[dict[str, str]] = {
        "data": "data",
        "statusCode": "status_code",
        "header": "header",
        "profile": "profile",
        "errMsg": "err_msg",
    }


@dataclass(frozen=True, slots=True, eq=False)
class DownloadFileResult(_PlatformMapping):
    """What ``success`` receives for a download; ``temp_file_path`` xor ``file_path`` is set."""

    status_code: int
    header: dict[str, str]
    data_length: int
    temp_file_path: str | None = None
    file_path: str | None = None
    profile: dict[str, Any] | None = None
    err_msg: str = "downloadFile:ok"
    _keys: ClassVar[dict[str, str]] = {
        "tempFilePath": "temp_file_path",
        "filePath": "file_path",
        "statusCode": "status_code",
        "header": "header",
        "dataLength": "data_length",
        "profile": "profile",
        "errMsg": "err_msg",
    }


@dataclass(frozen=True, slots=True, eq=False)
class SavedFileInfo(_PlatformMapping):
    """A saved file: its path, size in bytes and creation time in seconds since the epoch."""

    file_path: str
    size: int
    create_time: int
    _keys: ClassVar[dict[str, str]] = {
        "filePath": "file_path",
        "size": "size",
        "createTime": "create_time",
    }


@dataclass(frozen=True, slots=True, eq=False)
class FileInfo(_PlatformMapping):
    """``get_file_info``: size in bytes and the digest as lowercase hex."""

    size: int
    digest: str
    _keys: ClassVar[dict[str, str]] = {"size": "size", "digest": "digest"}


def _repr(obj: Any) -> str:
    shown = ", ".join(
        f"{f.name}={getattr(obj, f.name)!r}" for f in fields(obj) if not f.name.startswith("_")
    )
    return f"{type(obj).__name__}({shown})"


for _cls in (
    UploadProgress,
    DownloadProgress,
    HeadersReceived,
    UploadFileResult,
    DownloadFileResult,
    SavedFileInfo,
    FileInfo,
):
    _cls.__repr__ = _repr  # type: ignore[method-assign]
