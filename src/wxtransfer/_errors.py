"""The exception tree.

TransferError                 every failure of a transfer or a file call; has err_msg and errno
├── AbortError                task.abort() was called, or the runtime closed
├── TimeoutError              the transfer's timeout ran out (also a builtin TimeoutError)
├── NetworkError              cannot connect, TLS failure, connection lost, too many redirects
├── FileError                 a local file cannot be read, written, saved or found
│   └── ChecksumError         the bytes downloaded are not those the checksum promised
├── InvalidArgumentError      the call itself is wrong (also a ValueError); nothing was sent
└── RuleError                 the platform rules refuse the call; nothing was sent
"""

from __future__ import annotations

import builtins
from typing import Any

__all__ = [
    "AbortError",
    "ChecksumError",
    "Errno",
    "FileError",
    "InvalidArgumentError",
    "NetworkError",
    "RuleError",
    "TimeoutError",
    "TransferError",
]


class Errno:
    """The platform's errno values (REFERENCE.md §4) that wxtransfer reports."""

    OK = 0
    TIMEOUT = 5
    UNKNOWN_NETWORK = 600000
    CANNOT_CONNECT = 600001
    URL_NOT_IN_DOMAIN_LIST = 600002
    INTERRUPTED = 600003
    ABORT = 600003
    INVALID_ARGUMENT = 600005
    TOO_MANY_REDIRECTS = 600008
    INVALID_URL = 600009
    SAVE_FILE_ERROR = 603300
    EXCEED_MAX_FILE_SIZE = 603301
    PERMISSION_DENIED = 603303
    CHECKSUM_MISMATCH = 603304
    FILE_NOT_EXIST = 1300002
    FILE_STORAGE_LIMIT = 1300202


class TransferError(Exception):
    """A failed call, as the platform's ``fail`` callback sees it: ``errMsg`` and ``errno``.

    ``curl_code`` is libcurl's result code behind it (0 when libcurl had none),
    ``attempts`` the requests made (0 when none was), and ``__cause__`` the underlying
    error where there is one: libcurl's (a ``pycurl.error`` with its code and message) or
    the operating system's (an ``OSError``).
    """

    def __init__(self, err_msg: str, errno: int, *, curl_code: int = 0) -> None:
        super().__init__(err_msg)
        self.err_msg = err_msg
        self.errno = errno
        self.curl_code = curl_code
        self.attempts = 0  # requests made before it failed (0: none was)

    def __getitem__(self, key: str) -> Any:
        if key == "errMsg":
            return self.err_msg
        if key == "errno":
            return self.errno
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in ("errMsg", "errno")

    def to_dict(self) -> dict[str, Any]:
        """The platform's fail object: ``{"errMsg": ..., "errno": ...}``."""
        return {"errMsg": self.err_msg, "errno": self.errno}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.err_msg!r}, errno={self.errno})"

    def __reduce__(self) -> tuple[Any, ...]:
        state = {"curl_code": self.curl_code, "attempts": self.attempts}
        return (type(self), (self.err_msg, self.errno), state)


class AbortError(TransferError):
    """The task was aborted before it completed."""


class TimeoutError(TransferError, builtins.TimeoutError):  # type: ignore[misc]
    """The transfer did not complete within its timeout."""


class NetworkError(TransferError):
    """The transfer failed on the network: connect, TLS, reset, short body, redirects."""


class FileError(TransferError):
    """A local file could not be read, written, saved or found."""


class ChecksumError(FileError):
    """The downloaded bytes do not match the checksum given, or the server's digest."""


class InvalidArgumentError(TransferError, ValueError):
    """The call's arguments are wrong; no request was sent."""


class RuleError(TransferError):
    """The platform rules refuse the call; no request was sent."""
