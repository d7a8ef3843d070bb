"""Options: check a call's arguments and turn them into a request the engine can run.

Every check here runs before anything is sent, so a bad call fails without a request.
"""

from __future__ import annotations

import base64
import decimal
import math
import mimetypes
import os
import re
import stat
import sys
import time
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from ._digest import parse_checksum
from ._errors import Errno, FileError, InvalidArgumentError
from ._retry import Retry, as_retry

__all__ = [
    "MAX_REDIRECTS",
    "Api",
    "Request",
    "TimeoutUnitWarning",
    "TusUpload",
    "UploadPart",
    "js_number",
    "validate_download",
    "validate_resumable",
    "validate_upload",
]

Api = Literal["uploadFile", "downloadFile"]
MAX_REDIRECTS = 10  # the platform's, unless a call says otherwise
Callback = Callable[[Any], Any]

_FORBIDDEN_HEADERS = {"referer"}


class UploadPart(NamedTuple):
    """One file of a multipart upload, as checked: its field, path, §5 name and type."""

    name: str
    path: str
    filename: str
    content_type: str
    size: int  # when it was checked


@dataclass(frozen=True, slots=True)
class TusUpload:
    """A resumable upload's file, as checked, and where its upload URL is kept."""

    path: str
    size: int
    mtime_ns: int
    metadata: str  # the Upload-Metadata value: "key base64(value)" pairs, comma-separated
    chunk_size: int  # bytes per PATCH; 0: the rest in one
    checkpoint: str = ""  # the file that keeps the upload URL
    known_url: str | None = None  # kept by an earlier call for this very file


@dataclass(slots=True)
class Request:
    """A checked call: everything the engine needs, nothing left to validate."""

    api: Api
    url: str
    headers: list[tuple[str, str]]
    timeout_ms: int | None  # None: the runtime's default; 0: no limit
    stall_timeout_ms: int | None = None  # None: the runtime's default; 0: off
    connect_timeout_ms: int = 0  # each attempt's connect, within the deadline; 0: no own
    max_speed: int = 0  # bytes per second, this transfer; 0: no limit
    retry: Retry | None = None  # None: the runtime's default
    checksum: tuple[str, str] | None = None  # a download's (algorithm, lowercase hex)
    resume: bool = False  # a download's bytes wait in <file_path>.wxpart when it fails
    resume_from: tuple[int, str, int] | None = None  # what that part holds: see _output
    max_redirects: int = MAX_REDIRECTS  # followed before "too many redirects"
    compressed: bool = False  # a download asks for gzip/br/zstd/deflate and decodes it
    # upload: the form fields, then the files, in order
    form_data: list[tuple[str, str]] = field(default_factory=list)
    parts: tuple[UploadPart, ...] = ()
    tus: TusUpload | None = None  # a resumable upload (tus) instead of a multipart one
    # download
    target_path: str | None = None
    # both
    enable_http2: bool = False
    enable_quic: bool = False
    enable_profile: bool = True


def _param_error(api: Api, what: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{api}:fail parameter error: {what}", Errno.INVALID_ARGUMENT)


def js_number(value: int | float) -> str:
    """Format a number as JavaScript's ``String(n)`` does (``1.0`` -> ``"1"``, ``1e21``)."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    text = repr(value)  # the shortest digits that round-trip, as JavaScript uses
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    if exp_text and not -7 < exponent < 21:
        sign = "+" if exponent > 0 else "-"
        return f"{mantissa.removesuffix('.0')}e{sign}{abs(exponent)}"
    plain = format(decimal.Decimal(text), "f")
    return plain.rstrip("0").rstrip(".") if "." in plain else plain


# http(s)://host[:port][/?#...] with nothing urlsplit could refuse and nothing we refuse:
# such a URL passes every check below, so it needs no parsing. Explicit ASCII classes: a
# case-insensitive or \d pattern would also match non-ASCII letters and digits.
_PLAIN_URL = re.compile(
    r"[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._-]+"
    r"(?::(?:[0-9]{0,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
    r"(?:[/?#][^\r\n\t\x00 ]*)?"
).fullmatch


def _check_url(api: Api, url: object) -> str:
    if type(url) is str and _PLAIN_URL(url) is not None:  # the usual case, quickly
        return url
    return _parse_url(api, url)


def _parse_url(api: Api, url: object) -> str:
    """Check a URL the long way, saying what is wrong with it."""
    if url is None or url == "":
        raise _param_error(api, "url is required")
    if not isinstance(url, str):
        raise _param_error(api, f"url should be a str, not {type(url).__name__}")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise InvalidArgumentError(f"{api}:fail invalid URL: {exc}", Errno.INVALID_URL) from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidArgumentError(
            f"{api}:fail invalid URL: scheme must be http or https, got {url!r}",
            Errno.INVALID_URL,
        )
    if not parts.hostname:
        raise InvalidArgumentError(f"{api}:fail invalid URL: no host in {url!r}", Errno.INVALID_URL)
    if any(c in url for c in "\r\n\t\x00 "):
        raise InvalidArgumentError(
            f"{api}:fail invalid URL: whitespace or control character in {url!r}",
            Errno.INVALID_URL,
        )
    return url


def _header_value(api: Api, key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return js_number(value)
    if isinstance(value, str):
        return value
    raise _param_error(
        api, f"header {key!r} should be a str or a number, not {type(value).__name__}"
    )


def _check_headers(api: Api, header: object) -> list[tuple[str, str]]:
    if header is None:
        return []
    if not isinstance(header, Mapping):
        raise _param_error(api, f"header should be a dict, not {type(header).__name__}")
    out: list[tuple[str, str]] = []
    for key, raw in header.items():
        if not isinstance(key, str) or not key:
            raise _param_error(api, f"header names should be non-empty str, got {key!r}")
        if key.lower() in _FORBIDDEN_HEADERS:
            raise _param_error(api, "header may not set Referer (the platform fixes it)")
        if any(c in key for c in "\r\n:\x00 \t"):
            raise _param_error(api, f"header name {key!r} contains a forbidden character")
        value = _header_value(api, key, raw)
        if any(c in value for c in "\r\n\x00"):
            raise _param_error(api, f"header {key!r} contains CR, LF or NUL in its value")
        out.append((key, value))
    return out


def _check_form_data(api: Api, form_data: object) -> list[tuple[str, str]]:
    if form_data is None:
        return []
    if type(form_data) is not dict and not isinstance(form_data, Mapping):
        raise _param_error(api, f"formData should be a dict, not {type(form_data).__name__}")
    out: list[tuple[str, str]] = []
    for key, value in form_data.items():
        if not isinstance(key, str) or not key:
            raise _param_error(api, f"formData keys should be non-empty str, got {key!r}")
        if type(value) is str:  # the usual case first
            text = value
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = js_number(value)
        elif isinstance(value, str):
            text = value
        else:
            raise _param_error(
                api,
                f"formData[{key!r}] should be a str, bool or number, not {type(value).__name__}",
            )
        out.append((key, text))
    return out


class TimeoutUnitWarning(UserWarning):
    """A ``timeout`` so short it was most likely meant in seconds (it is milliseconds)."""


_SHORT_TIMEOUT_MS = 100
_warned_short_timeout = False


def _warn_short_timeout(timeout: float) -> None:
    """Say once per process that ``timeout`` is in milliseconds: ``timeout=30`` fails a
    transfer after 30 ms, which is rarely what the caller meant."""
    global _warned_short_timeout
    if _warned_short_timeout:
        return
    _warned_short_timeout = True
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("wxtransfer"):
        frame, level = frame.f_back, level + 1
    warnings.warn(
        f"timeout={timeout!r} is in milliseconds, as on the platform: the transfer may take "
        f"{timeout!r} ms. For {timeout!r} seconds, pass timeout={timeout * 1000!r}. "
        "(This warning is shown once.)",
        TimeoutUnitWarning,
        stacklevel=level,
    )


def _check_timeout(api: Api, timeout: object) -> int | None:
    if timeout is None:
        return None
    if type(timeout) is int and timeout >= 0:  # the usual case: already whole milliseconds
        if 0 < timeout < _SHORT_TIMEOUT_MS and not _warned_short_timeout:
            _warn_short_timeout(timeout)
        return timeout
    ms = _check_ms(api, "timeout", timeout)  # raises unless a number >= 0
    if isinstance(timeout, int | float) and 0 < timeout < _SHORT_TIMEOUT_MS:
        _warn_short_timeout(timeout)
    return ms


def _check_stall_timeout(api: Api, value: object) -> int | None:
    """``stall_timeout`` in ms: None (the runtime's default), 0 (off) or a positive number."""
    return None if value is None else _check_ms(api, "stall_timeout", value)


def _check_ms(api: Api, what: str, value: object, unit: str = "milliseconds") -> int:
    """A whole amount >= 0 of ``unit`` (None, 0 and infinity: 0, none), rounded up."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _param_error(api, f"{what} should be a number of {unit}, not {value!r}")
    if math.isnan(value) or value < 0:
        raise _param_error(api, f"{what} should be >= 0 {unit}, got {value!r}")
    if math.isinf(value):
        return 0
    return max(1, math.ceil(value)) if value else 0


def _check_checksum(api: Api, value: object) -> tuple[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _param_error(api, f"checksum should be a str '<algo>:<hex>', not {value!r}")
    try:
        return parse_checksum(value)
    except ValueError as exc:
        raise _param_error(api, str(exc)) from exc


def _check_retry(api: Api, value: object) -> Retry | None:
    if value is None:
        return None
    try:
        return as_retry(value)
    except ValueError as exc:
        raise _param_error(api, str(exc)) from exc


def _check_max_speed(api: Api, value: object) -> int:
    """``max_speed`` in bytes per second: None or 0 (no limit) or a positive number."""
    return _check_ms(api, "max_speed", value, "bytes per second")


def _check_path(api: Api, what: str, value: object) -> str:
    if type(value) is not str:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, bytes):
            value = os.fsdecode(value)
    if not isinstance(value, str) or not value:
        raise _param_error(api, f"{what} should be a non-empty path")
    if "\x00" in value:
        raise _param_error(api, f"{what} contains a NUL character")
    return value


def _check_max_redirects(api: Api, value: object) -> int:
    if value is None:
        return MAX_REDIRECTS
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _param_error(api, f"max_redirects should be an int >= 0, not {value!r}")
    return value


def _check_flag(api: Api, what: str, value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _param_error(api, f"{what} should be a bool, not {type(value).__name__}")
    return value


def check_callbacks(api: Api, success: object, fail: object, complete: object) -> None:
    if success is None and fail is None and complete is None:
        return
    for what, fn in (("success", success), ("fail", fail), ("complete", complete)):
        if fn is not None and not callable(fn):
            raise _param_error(api, f"{what} should be callable, not {type(fn).__name__}")


def _check_upload_file(path: str) -> os.stat_result:
    """The stat of the file to upload; raise when it cannot be read."""
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise FileError(f"uploadFile:fail file not found {path}", Errno.INVALID_ARGUMENT) from exc
    except PermissionError as exc:
        raise FileError(
            f"uploadFile:fail permission denied {path}", Errno.INVALID_ARGUMENT
        ) from exc
    except OSError as exc:
        raise FileError(f"uploadFile:fail {exc.strerror} {path}", Errno.INVALID_ARGUMENT) from exc
    if stat.S_ISDIR(st.st_mode):
        raise FileError(f"uploadFile:fail is a directory {path}", Errno.INVALID_ARGUMENT)
    if not _surely_readable(st) and not os.access(path, os.R_OK):
        raise FileError(f"uploadFile:fail permission denied {path}", Errno.INVALID_ARGUMENT)
    return st


def _surely_readable(st: os.stat_result) -> bool:
    """Whether the mode bits alone say we may read the file; when they do not, access()
    decides. Spares the usual upload (a file of ours, or one anybody may read) a system
    call, and with it a GIL handover to the engine thread."""
    if st.st_uid == os.geteuid():
        return bool(st.st_mode & stat.S_IRUSR)
    return st.st_mode & (stat.S_IRGRP | stat.S_IROTH) == stat.S_IRGRP | stat.S_IROTH


# Content-Type by exact extension, for names whose extension alone decides guess_type's
# answer; forgotten when mimetypes is set up again or gains an extension (a new type given
# in place to an extension already seen is not noticed).
_content_types: dict[str, str] = {}
_content_types_of: tuple[object, int] = (None, 0)


def _content_type(filename: str) -> str:
    """``mimetypes.guess_type(filename)``'s type, or application/octet-stream."""
    global _content_types_of
    dot = filename.rfind(".")
    # os.path.splitext's extension, without its cost when the name does not start with "."
    ext = filename[dot:] if dot > 0 and filename[0] != "." else os.path.splitext(filename)[1]
    types = mimetypes.types_map
    if ":" not in filename and _content_types_of[0] is types and _content_types_of[1] == len(types):
        known = _content_types.get(ext)
        if known is not None:
            return known
    guessed = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    # Cacheable unless a URL-like "scheme:" prefix, a suffix alias (.tgz) or an encoding
    # (.gz) makes more of the name count; the lists are read after guess_type set them up.
    if not (
        ":" in filename
        or ext in mimetypes.encodings_map
        or ext in mimetypes.suffix_map
        or ext.lower() in mimetypes.suffix_map
    ):
        types = mimetypes.types_map
        if _content_types_of[0] is not types or _content_types_of[1] != len(types):
            _content_types.clear()
            _content_types_of = (types, len(types))
        _content_types[ext] = guessed
    return guessed


def _check_name(api: Api, what: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise _param_error(api, f"{what} should be a non-empty str (the multipart field name)")
    return name


def _check_files(api: Api, files: object) -> list[tuple[str, str]]:
    """``files=``: (name, path) pairs, or the wx face's ``{"name", "uri"}`` objects."""
    if isinstance(files, str | bytes) or not isinstance(files, list | tuple):
        raise _param_error(
            api, f"files should be a list of (name, file_path) pairs, not {type(files).__name__}"
        )
    if not files:
        raise _param_error(api, "files should not be empty")
    pairs = []
    for i, item in enumerate(files):
        if isinstance(item, Mapping):
            name, path = item.get("name"), item.get("uri")
        elif isinstance(item, list | tuple) and len(item) == 2:
            name, path = item
        else:
            raise _param_error(api, f"files[{i}] should be a (name, file_path) pair, not {item!r}")
        checked = _check_path(api, f"files[{i}] path", path)
        pairs.append((_check_name(api, f"files[{i}] name", name), checked))
    return pairs


def _upload_part(name: str, path: str) -> UploadPart:
    """The part of the file at ``path``; raise when it cannot be read."""
    size = _check_upload_file(path).st_size
    bare = path.rstrip("/")
    filename = bare[bare.rfind("/") + 1 :] or "file"  # os.path.basename, without its calls
    return UploadPart(name, path, filename, _content_type(filename), size)


def validate_upload(
    url: object,
    file_path: object,
    name: object,
    *,
    files: object = None,
    header: object = None,
    form_data: object = None,
    timeout: object = None,
    enable_http2: object = False,
    enable_quic: object = False,
    enable_profile: object = True,
    stall_timeout: object = None,
    max_speed: object = None,
    retry: object = None,
    connect_timeout: object = None,
    max_redirects: object = None,
) -> Request:
    """Check an upload call; raise the error its ``fail`` should receive."""
    api: Api = "uploadFile"
    checked_url = _check_url(api, url)
    if files is not None:
        if file_path is not None or name is not None:
            raise _param_error(
                api, "give filePath and name, or files, not both (files holds every file)"
            )
        pairs = _check_files(api, files)
    elif file_path is None:
        raise _param_error(api, "filePath is required (or files)")
    else:
        path = _check_path(api, "filePath", file_path)
        pairs = [(_check_name(api, "name", name), path)]
    headers = _check_headers(api, header)
    fields = _check_form_data(api, form_data)
    timeout_ms = _check_timeout(api, timeout)
    parts = tuple(_upload_part(name, path) for name, path in pairs)
    return Request(
        api=api,
        url=checked_url,
        headers=headers,
        timeout_ms=timeout_ms,
        stall_timeout_ms=_check_stall_timeout(api, stall_timeout),
        connect_timeout_ms=_check_ms(api, "connect_timeout", connect_timeout),
        max_speed=_check_max_speed(api, max_speed),
        retry=_check_retry(api, retry),
        form_data=fields,
        parts=parts,
        max_redirects=_check_max_redirects(api, max_redirects),
        enable_http2=_check_flag(api, "enableHttp2", enable_http2),
        enable_quic=_check_flag(api, "enableQuic", enable_quic),
        enable_profile=enable_profile is None or _check_flag(api, "enableProfile", enable_profile),
    )


# Folders found writable, and when (time.monotonic()): a burst of calls into one folder
# checks it once. A folder made unwritable meanwhile fails the download when it is saved.
_WRITABLE_FOLDERS: dict[str, float] = {}
_WRITABLE_FOR = 1.0  # seconds
_WRITABLE_KEPT = 64  # folders remembered at most


def _check_target(target: str) -> None:
    """Raise unless ``target`` can be written: not a folder, in a writable folder.

    One or two access() calls when it can, and no exception: each system call lets the
    engine thread take the GIL. A trailing slash makes access() fail unless the path is a
    folder.
    """
    folder = target[: target.rfind("/") + 1]  # os.path.dirname, without its calls
    folder = folder.rstrip("/") or folder
    if len(target) < 512 and _writable_folder(folder):
        # a short path stays short of PATH_MAX with the slash
        if os.access(target + "/", os.F_OK):
            raise _is_a_folder(target)
        return
    # Long, or not writable as it is: say why, in the order the checks have always had.
    if os.path.isdir(target):
        raise _is_a_folder(target)
    if not os.path.isdir(folder):
        raise _no_folder(folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileError(
            f"downloadFile:fail permission denied can not open file {target}",
            Errno.PERMISSION_DENIED,
        )


def _writable_folder(folder: str) -> bool:
    """``folder`` is a writable folder, as access() said less than a second ago."""
    now = time.monotonic()
    seen = _WRITABLE_FOLDERS.get(folder)
    if seen is not None and now - seen < _WRITABLE_FOR:
        return True
    if not os.access(folder + "/", os.W_OK | os.X_OK):
        _WRITABLE_FOLDERS.pop(folder, None)
        return False
    if len(_WRITABLE_FOLDERS) >= _WRITABLE_KEPT:
        _WRITABLE_FOLDERS.clear()
    _WRITABLE_FOLDERS[folder] = now
    return True


def _is_a_folder(target: str) -> FileError:
    return FileError(
        f"downloadFile:fail download save file error: {target} is a directory",
        Errno.SAVE_FILE_ERROR,
    )


def _no_folder(folder: str) -> FileError:
    return FileError(
        f"downloadFile:fail download save file error: no such folder {folder}",
        Errno.SAVE_FILE_ERROR,
    )


_TUS_HEADERS = frozenset(
    {"tus-resumable", "upload-offset", "upload-length", "upload-metadata", "content-type"}
)
_METADATA_KEY = re.compile(r"[!-+\--~]+")  # printable ASCII but space and ","


def _check_metadata(api: Api, metadata: object, filename: str) -> dict[str, str]:
    """The upload's metadata, ``filename`` (the file's base name) unless given."""
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise _param_error(api, f"metadata should be a dict, not {type(metadata).__name__}")
    out = {"filename": filename}
    for key, value in metadata.items():
        if not isinstance(key, str) or not _METADATA_KEY.fullmatch(key):
            raise _param_error(
                api, f"metadata key {key!r} should be ASCII without spaces or commas (tus)"
            )
        if not isinstance(value, str):
            raise _param_error(api, f"metadata[{key!r}] should be a str")
        out[key] = value
    return out


def validate_resumable(
    url: object,
    file_path: object,
    *,
    metadata: object = None,
    chunk_size: object = None,
    header: object = None,
    timeout: object = None,
    retry: object = None,
    stall_timeout: object = None,
    max_speed: object = None,
    connect_timeout: object = None,
) -> Request:
    """Check a resumable upload (tus); the request, its ``tus`` without a checkpoint yet."""
    api: Api = "uploadFile"
    checked_url = _check_url(api, url)
    path = os.path.abspath(_check_path(api, "filePath", file_path))
    headers = _check_headers(api, header)
    for key, _ in headers:
        if key.lower() in _TUS_HEADERS:
            raise _param_error(
                api, f"header {key!r} is the tus protocol's: upload_resumable sets it"
            )
    if chunk_size is None:
        chunk = 0
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise _param_error(api, f"chunk_size should be a positive int (bytes), not {chunk_size!r}")
    else:
        chunk = chunk_size
    timeout_ms = _check_timeout(api, timeout)
    st = _check_upload_file(path)
    meta = _check_metadata(api, metadata, os.path.basename(path) or "file")
    encoded = ",".join(
        f"{key} {base64.b64encode(value.encode()).decode('ascii')}".rstrip()
        for key, value in meta.items()
    )
    return Request(
        api=api,
        url=checked_url,
        headers=headers,
        timeout_ms=timeout_ms,
        stall_timeout_ms=_check_stall_timeout(api, stall_timeout),
        retry=_check_retry(api, retry),
        max_speed=_check_max_speed(api, max_speed),
        connect_timeout_ms=_check_ms(api, "connect_timeout", connect_timeout),
        tus=TusUpload(path, st.st_size, st.st_mtime_ns, encoded, chunk),
    )


def validate_download(
    url: object,
    *,
    header: object = None,
    file_path: object = None,
    timeout: object = None,
    enable_http2: object = False,
    enable_quic: object = False,
    enable_profile: object = True,
    stall_timeout: object = None,
    max_speed: object = None,
    retry: object = None,
    connect_timeout: object = None,
    checksum: object = None,
    resume: object = False,
    max_redirects: object = None,
    compressed: object = False,
) -> Request:
    """Check a download call, including that ``file_path`` can be written, before sending."""
    api: Api = "downloadFile"
    checked_url = _check_url(api, url)
    headers = _check_headers(api, header)
    timeout_ms = _check_timeout(api, timeout)
    target: str | None = None
    if file_path is not None:
        target = _check_path(api, "filePath", file_path)
        # os.path.abspath, which for an absolute path is normpath alone
        target = os.path.normpath(target) if target[0] == "/" else os.path.abspath(target)
        _check_target(target)
    resumable = resume is not False and _check_flag(api, "resume", resume)
    if resumable and target is None:
        raise _param_error(
            api, "resume=True needs a file_path: the bytes wait in <file_path>.wxpart"
        )
    decoded = compressed is not False and _check_flag(api, "compressed", compressed)
    if decoded and resumable:
        raise _param_error(
            api,
            "resume=True and compressed=True do not mix: a range of the encoded bytes "
            "cannot continue the decoded ones",
        )
    return Request(
        api=api,
        url=checked_url,
        headers=headers,
        timeout_ms=timeout_ms,
        stall_timeout_ms=_check_stall_timeout(api, stall_timeout),
        connect_timeout_ms=_check_ms(api, "connect_timeout", connect_timeout),
        max_speed=_check_max_speed(api, max_speed),
        retry=_check_retry(api, retry),
        target_path=target,
        checksum=_check_checksum(api, checksum),
        resume=resumable,
        max_redirects=_check_max_redirects(api, max_redirects),
        compressed=decoded,
        enable_http2=_check_flag(api, "enableHttp2", enable_http2),
        enable_quic=_check_flag(api, "enableQuic", enable_quic),
        enable_profile=enable_profile is None or _check_flag(api, "enableProfile", enable_profile),
    )
