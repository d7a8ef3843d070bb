"""Result, progress and header objects: attributes in Python, the platform's keys as a mapping."""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar, overload

__all__ = [
    "DownloadFileResult",
    "DownloadProgress",
    "FileInfo",
    "Headers",
    "HeadersReceived",
    "RetryEvent",
    "SavedFileInfo",
    "UploadFileResult",
    "UploadProgress",
]

_T = TypeVar("_T")


def _pairs(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> Iterable[tuple[str, str]]:
    return headers.items() if isinstance(headers, Mapping) else headers


class Headers(Mapping[str, str]):
    """Response headers: read-only; names as the server sent them, looked up in any case.

    Iteration, ``dict(h)`` and ``repr`` show the server's spelling; ``h["content-type"]``,
    ``h.get("CONTENT-TYPE")`` and ``"content-type" in h`` ignore case. A name sent more than
    once (in any case) is one entry, under its first spelling, with the values joined by
    ``", "`` in the order they came. Equal to any mapping with the same names in any case and
    the same values (values are compared exactly), as ``httpx.Headers`` is.
    """

    __slots__ = ("_items", "_lower")

    _items: dict[str, str]  # the server's names -> value
    _lower: dict[str, str]  # lower-case names -> value: a lookup is one lower() and one hash

    def __init__(self, headers: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        items: dict[str, str] = {}
        lower: dict[str, str] = {}
        # The transport hands a list of pairs, thousands of times a second: a check
        # against the Mapping ABC would cost more than the rest.
        pairs = headers if type(headers) is list else _pairs(headers)
        for name, value in pairs:
            key = name.lower()
            if key in lower:
                _repeat(items, lower, key, value)
            else:
                items[name] = lower[key] = value
        self._items = items
        self._lower = lower

    @classmethod
    def _from_head(cls, text: str) -> Headers:
        """The headers of ``text``: ``Name: value`` lines, each ending in a line feed; a
        line with no colon (the blank one that ends a head) is skipped."""
        items: dict[str, str] = {}
        lower: dict[str, str] = {}
        for line in text.split("\n"):
            name, sep, value = line.partition(":")
            if sep:
                name = name.strip()
                key = name.lower()
                if key in lower:
                    _repeat(items, lower, key, value.strip())
                else:
                    items[name] = lower[key] = value.strip()
        headers = cls.__new__(cls)
        headers._items = items
        headers._lower = lower
        return headers

    def __getitem__(self, name: str) -> str:
        try:
            return self._lower[name.lower()]
        except (KeyError, AttributeError):
            raise KeyError(name) from None

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, default: str, /) -> str: ...
    @overload
    def get(self, name: str, default: _T, /) -> str | _T: ...
    def get(self, name: str, default: object = None, /) -> object:
        return self._lower.get(name.lower(), default) if isinstance(name, str) else default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lower

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    # read-only views of the server's names, without a lookup per item
    def keys(self) -> KeysView[str]:
        return self._items.keys()

    def items(self) -> ItemsView[str, str]:
        return self._items.items()

    def values(self) -> ValuesView[str]:
        return self._items.values()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._lower == other._lower
        if not isinstance(other, Mapping):
            return NotImplemented
        lowered = {}
        for name, value in other.items():
            if not isinstance(name, str):
                return False
            lowered[name.lower()] = value
        return len(lowered) == len(other) and lowered == self._lower

    __hash__ = None  # type: ignore[assignment]  # equal to dicts, which are not hashable

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Headers, (self._items,))


def _repeat(items: dict[str, str], lower: dict[str, str], key: str, value: str) -> None:
    """A name sent again (in any case), which is rare: its value joins the first one's,
    under the first spelling."""
    first = next(n for n in items if n.lower() == key)
    items[first] = lower[key] = f"{lower[key]}, {value}"


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
        """A plain dict with the platform's keys, as the JavaScript API would hand it over.

        ``header`` becomes a plain dict too (the server's names), so ``json.dumps`` takes it.
        """
        return {k: dict(v) if isinstance(v, Headers) else v for k, v in self.items()}


def _headers(obj: Any) -> None:
    """``__post_init__``: a ``header`` given as a plain mapping becomes :class:`Headers`."""
    if not isinstance(obj.header, Headers):
        object.__setattr__(obj, "header", Headers(obj.header))


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

    header: Mapping[str, str]  # a Headers (any mapping given is turned into one)
    status_code: int
    _keys: ClassVar[dict[str, str]] = {"header": "header", "statusCode": "status_code"}

    def __post_init__(self) -> None:
        _headers(self)


@dataclass(frozen=True, slots=True, eq=False)
class UploadFileResult(_PlatformMapping):
    """What ``success`` receives for an upload: the response, whatever its status code."""

    data: str
    status_code: int
    header: Mapping[str, str]  # a Headers (any mapping given is turned into one)
    profile: dict[str, Any] | None = None
    err_msg: str = "uploadFile:ok"
    attempts: int = 0  # requests made (redirects and retries included); ours, not a key
    url: str = ""  # the URL of the final response, after redirects; ours, not a key
    redirects: int = 0  # redirects followed; ours, not a key
    _keys: ClassVar[dict[str, str]] = {
        "data": "data",
        "statusCode": "status_code",
        "header": "header",
        "profile": "profile",
        "errMsg": "err_msg",
    }

    def __post_init__(self) -> None:
        _headers(self)


@dataclass(frozen=True, slots=True, eq=False)
class DownloadFileResult(_PlatformMapping):
    """What ``success`` receives for a download; ``temp_file_path`` xor ``file_path`` is set."""

    status_code: int
    header: Mapping[str, str]  # a Headers (any mapping given is turned into one)
    data_length: int
    temp_file_path: str | None = None
    file_path: str | None = None
    profile: dict[str, Any] | None = None
    err_msg: str = "downloadFile:ok"
    attempts: int = 0  # requests made (redirects and retries included); ours, not a key
    url: str = ""  # the URL of the final response, after redirects; ours, not a key
    redirects: int = 0  # redirects followed; ours, not a key
    _keys: ClassVar[dict[str, str]] = {
        "tempFilePath": "temp_file_path",
        "filePath": "file_path",
        "statusCode": "status_code",
        "header": "header",
        "dataLength": "data_length",
        "profile": "profile",
        "errMsg": "err_msg",
    }

    def __post_init__(self) -> None:
        _headers(self)


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """An attempt is about to start again: ``attempt`` (2 for the first retry) after
    ``delay`` seconds, because of ``error`` (a ``TransferError``) or, when that is None,
    of a response with ``status_code`` (0 for an error)."""

    attempt: int
    delay: float
    error: Any  # TransferError | None (the results module sits below the errors')
    status_code: int


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
