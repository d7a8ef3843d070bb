"""tus 1.0 resumable uploads on the dev server (core protocol + the ``creation`` extension).

Lets ``upload_resumable`` (and any tus client) be tried against ``wxtransfer serve`` with
nothing else installed. Routes, added by :func:`add_routes`:

* ``OPTIONS /tus/``: the server's tus capabilities.
* ``POST /tus/``: create an upload from ``Upload-Length`` (and ``Upload-Metadata``).
* ``HEAD /tus/{id}``: how many bytes the server holds (``Upload-Offset``).
* ``PATCH /tus/{id}``: append bytes at ``Upload-Offset``, streamed to disk.

An upload lives in ``DIR/<id>`` (the bytes so far) and ``DIR/<id>.json`` (its length and
metadata). The offset is the partial file's size, so bytes that arrived before a client
disconnected are kept and the client continues from HEAD's offset, which is the point of
tus. When the offset reaches the length, the file is handed to the ``publish`` callback
(the server stores it like a ``POST /upload`` file) and the record remembers where it went.

This module must not import anything from :mod:`wxtransfer`: ``_server`` imports it and
passes what it needs in :class:`TusSettings`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

__all__ = ["TUS_PATH", "TUS_VERSION", "PublishTus", "TusSettings", "add_routes"]

#: The tus protocol version spoken (``Tus-Resumable`` / ``Tus-Version``).
TUS_VERSION: Final = "1.0.0"
#: Where uploads are created; ``TUS_PATH + <id>`` is one upload.
TUS_PATH: Final = "/tus/"
#: Response header naming the stored file once an upload is complete.
FILE_HEADER: Final = "X-Wxtransfer-File"
#: Bytes read from a PATCH body per step.
CHUNK_SIZE: Final = 256 * 1024
#: How long a PATCH waits for an earlier PATCH of the same upload to finish (then 423).
LOCK_WAIT: Final = 5.0
_OFFSET_TYPE: Final = "application/offset+octet-stream"
_ID: Final = re.compile(r"[0-9a-f]{32}")
_NUMBER: Final = re.compile(r"[0-9]{1,19}")
_METADATA_KEY: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HOST: Final = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_CLIENT_GONE: Final = 499  # never sent; the access log prints "client disconnected"

#: ``publish(partial file, original name, size, sha256) -> (stored name, /files/ URL path)``;
#: called in a worker thread, it moves the partial file away.
PublishTus = Callable[[Path, str, int, str], tuple[str, str]]


@dataclass(frozen=True)
class TusSettings:
    """What the tus routes need from the server."""

    directory: Path
    max_size: int | None
    publish: PublishTus


@dataclass
class _State:
    settings: TusSettings
    # One lock per upload id while a PATCH holds it: PATCHes of one upload run one by one.
    locks: weakref.WeakValueDictionary[str, asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary
    )


_STATE: Final = web.AppKey("wxtransfer_tus", _State)


class _Reject(Exception):
    """End a tus request with a status, a JSON error and optional extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# --------------------------------------------------------------------------- records


def _record_path(directory: Path, uid: str) -> Path:
    return directory / f"{uid}.json"


def _load(directory: Path, uid: str) -> dict[str, Any] | None:
    try:
        with open(_record_path(directory, uid), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("length"), int) else None


def _save(directory: Path, uid: str, record: dict[str, Any]) -> None:
    """Write the record atomically: a reader sees the old one or the new one."""
    tmp = directory / f"{uid}.json.{secrets.token_hex(4)}.tmp"
    with open(tmp, "x", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False)
    os.replace(tmp, _record_path(directory, uid))


def _create(directory: Path, uid: str, record: dict[str, Any]) -> None:
    open(directory / uid, "xb").close()
    try:
        _save(directory, uid, record)
    except BaseException:
        with contextlib.suppress(OSError):
            (directory / uid).unlink()
        raise


def _held(directory: Path, uid: str, record: dict[str, Any]) -> int | None:
    """Bytes the server holds for the upload (its length once complete), None if lost."""
    if record.get("done"):
        return int(record["length"])
    try:
        return (directory / uid).stat().st_size
    except OSError:
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _complete(settings: TusSettings, uid: str, record: dict[str, Any]) -> dict[str, Any]:
    """Publish a complete upload and mark its record done (worker thread)."""
    path = settings.directory / uid
    filename = record.get("filename") or uid
    sha = _sha256(path)
    name, url = settings.publish(path, filename, int(record["length"]), sha)
    record = {**record, "done": {"name": name, "url": url, "sha256": sha, "at": time.time()}}
    _save(settings.directory, uid, record)
    return record


# --------------------------------------------------------------------------- headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    resp = web.json_response({"error": message, "status": status}, status=status)
    resp.headers.update(headers or {})
    return resp


def _number(request: web.Request, name: str) -> int:
    value = request.headers.get(name)
    if value is None:
        raise _Reject(400, f"missing {name} header")
    if not _NUMBER.fullmatch(value.strip()):
        raise _Reject(400, f"{name} must be a non-negative whole number, not {value!r}")
    return int(value)


def _metadata(value: str) -> tuple[dict[str, str], str | None]:
    """Parse ``Upload-Metadata`` into ``{key: base64 value}`` and the decoded file name."""
    pairs: dict[str, str] = {}
    filename: str | None = None
    for item in value.split(","):
        key, _, encoded = item.strip().partition(" ")
        encoded = encoded.strip()
        if not _METADATA_KEY.fullmatch(key) or key in pairs or " " in encoded:
            raise _Reject(400, f"malformed Upload-Metadata pair {item.strip()!r}")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _Reject(400, f"Upload-Metadata value of {key!r} is not base64") from None
        pairs[key] = encoded
        if key in ("filename", "name") and (filename is None or key == "filename"):
            try:
                filename = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _Reject(400, f"Upload-Metadata {key!r} is not valid UTF-8") from None
    return pairs, filename or None


def _absolute(request: web.Request, path: str) -> str:
    """``path`` as an absolute URL on the host the client asked (relative if that is odd)."""
    host = request.host
    if not _HOST.fullmatch(host):
        return path
    return f"{request.scheme}://{host}{path}"


def _upload_id(request: web.Request) -> str:
    uid = request.match_info["id"]
    if not _ID.fullmatch(uid):
        raise _Reject(404, "no such upload")
    return uid


def _done_headers(request: web.Request, record: dict[str, Any]) -> dict[str, str]:
    done = record.get("done")
    return {FILE_HEADER: _absolute(request, done["url"])} if isinstance(done, dict) else {}


# --------------------------------------------------------------------------- handlers


_TusHandler = Callable[[web.Request, _State], Awaitable[web.StreamResponse]]


def _tus(handler: _TusHandler) -> Handler:
    """Check ``Tus-Resumable`` (412 otherwise) and turn :class:`_Reject` into a reply."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Tus-Resumable", "").strip() != TUS_VERSION:
            return _error(
                412, f"Tus-Resumable: {TUS_VERSION} is required", {"Tus-Version": TUS_VERSION}
            )
        try:
            return await handler(request, request.app[_STATE])
        except _Reject as exc:
            return _error(exc.status, exc.message, exc.headers)

    return wrapper


async def _options(request: web.Request) -> web.StreamResponse:
    """``OPTIONS /tus/``: versions, extensions and the largest upload."""
    headers = {"Tus-Version": TUS_VERSION, "Tus-Extension": "creation"}
    max_size = request.app[_STATE].settings.max_size
    if max_size is not None:
        headers["Tus-Max-Size"] = str(max_size)
    return web.Response(status=204, headers=headers)


async def _post(request: web.Request, state: _State) -> web.StreamResponse:
    """``POST /tus/``: create an upload (no body: creation-with-upload is not offered)."""
    settings = state.settings
    if request.content_length or (request.body_exists and request.content_length is None):
        raise _Reject(400, "a body on creation (creation-with-upload) is not supported")
    if "Upload-Defer-Length" in request.headers:
        raise _Reject(400, "Upload-Defer-Length is not supported: send Upload-Length")
    length = _number(request, "Upload-Length")
    if settings.max_size is not None and length > settings.max_size:
        raise _Reject(413, f"Upload-Length larger than {settings.max_size} bytes")
    raw_metadata = request.headers.get("Upload-Metadata", "").strip()
    metadata, filename = _metadata(raw_metadata) if raw_metadata else ({}, None)
    uid = secrets.token_hex(16)
    record: dict[str, Any] = {
        "length": length,
        "metadata": metadata,
        "filename": filename,
        "created": time.time(),
        "done": None,
    }
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, _create, settings.directory, uid, record)
    if length == 0:  # complete already: nothing will PATCH it
        record = await loop.run_in_executor(None, _complete, settings, uid, record)
    headers = {"Location": _absolute(request, TUS_PATH + uid), **_done_headers(request, record)}
    return web.Response(status=201, headers=headers)


async def _head(request: web.Request, state: _State) -> web.StreamResponse:
    """``HEAD /tus/{id}``: the offset to continue from."""
    directory = state.settings.directory
    uid = _upload_id(request)
    loop = asyncio.get_running_loop()
    record = await loop.run_in_executor(None, _load, directory, uid)
    held = None if record is None else _held(directory, uid, record)
    if record is None or held is None:
        raise _Reject(404, "no such upload")
    headers = {
        "Upload-Offset": str(held),
        "Upload-Length": str(record["length"]),
        hdrs.CACHE_CONTROL: "no-store",
        **_done_headers(request, record),
    }
    metadata = record.get("metadata")
    if isinstance(metadata, dict) and metadata:
        headers["Upload-Metadata"] = ",".join(f"{k} {v}".rstrip() for k, v in metadata.items())
    return web.Response(status=200, headers=headers)


async def _patch(request: web.Request, state: _State) -> web.StreamResponse:
    """``PATCH /tus/{id}``: append the body at ``Upload-Offset``."""
    directory = state.settings.directory
    uid = _upload_id(request)
    loop = asyncio.get_running_loop()
    if await loop.run_in_executor(None, _load, directory, uid) is None:
        raise _Reject(404, "no such upload")
    media_type = request.headers.get(hdrs.CONTENT_TYPE, "").split(";", 1)[0]
    if media_type.strip().lower() != _OFFSET_TYPE:
        raise _Reject(415, "Content-Type must be application/offset+octet-stream")
    offset = _number(request, "Upload-Offset")
    lock = state.locks.setdefault(uid, asyncio.Lock())
    try:
        await asyncio.wait_for(lock.acquire(), LOCK_WAIT)
    except asyncio.TimeoutError:
        raise _Reject(423, "another PATCH of this upload is still running") from None
    try:
        return await _append(request, state, uid, offset)
    finally:
        lock.release()


async def _append(request: web.Request, state: _State, uid: str, offset: int) -> web.StreamResponse:
    settings = state.settings
    loop = asyncio.get_running_loop()
    record = await loop.run_in_executor(None, _load, settings.directory, uid)
    held = None if record is None else _held(settings.directory, uid, record)
    if record is None or held is None:
        raise _Reject(404, "no such upload")
    length = int(record["length"])
    if offset != held:
        raise _Reject(
            409, f"Upload-Offset is {offset}, the server holds {held}", {"Upload-Offset": str(held)}
        )
    declared = request.content_length
    if declared is not None and offset + declared > length:
        raise _Reject(400, f"the body would pass Upload-Length ({length} bytes)")
    try:
        if record.get("done") is None:
            offset = await _receive(request, settings.directory / uid, offset, length)
        elif declared is None and await request.content.read(1):  # a chunked body
            raise _Reject(400, f"the body would pass Upload-Length ({length} bytes)")
    except ConnectionError:
        # The bytes that arrived stay: the client continues from HEAD's offset.
        return web.Response(status=_CLIENT_GONE, reason="Client Closed Request")
    except HttpProcessingError as exc:  # e.g. broken chunked encoding; what arrived stays
        raise _Reject(400, f"malformed body: {exc.message}") from None
    if offset == length and record.get("done") is None:
        record = await loop.run_in_executor(None, _complete, settings, uid, record)
    headers = {"Upload-Offset": str(offset), **_done_headers(request, record)}
    return web.Response(status=204, headers=headers)


async def _receive(request: web.Request, path: Path, offset: int, length: int) -> int:
    """Stream the body to ``path`` at ``offset``; returns the new offset.

    A body that passes ``length`` (only possible without Content-Length) is cut back to
    ``offset``, so none of it is kept, and rejected with a 400.
    """
    loop = asyncio.get_running_loop()
    f = await loop.run_in_executor(None, _open_at, path, offset)
    end = offset
    try:
        while chunk := await request.content.read(CHUNK_SIZE):
            if end + len(chunk) > length:
                await loop.run_in_executor(None, f.truncate, offset)
                raise _Reject(400, f"the body would pass Upload-Length ({length} bytes)")
            await loop.run_in_executor(None, f.write, chunk)
            end += len(chunk)
    finally:
        await asyncio.shield(loop.run_in_executor(None, f.close))
    return end


def _open_at(path: Path, offset: int) -> Any:
    # Unbuffered: the file's size is the offset a HEAD reports, byte for byte.
    f = open(path, "r+b", buffering=0)
    f.seek(offset)
    return f


async def _tus_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response under /tus (401 and 404 included) carries ``Tus-Resumable``."""
    if request.path == TUS_PATH.rstrip("/") or request.path.startswith(TUS_PATH):
        response.headers["Tus-Resumable"] = TUS_VERSION


def add_routes(app: web.Application, settings: TusSettings) -> None:
    """Add the tus routes to ``app`` and create ``settings.directory``."""
    settings.directory.mkdir(parents=True, exist_ok=True)
    app[_STATE] = _State(settings)
    for path in (TUS_PATH, TUS_PATH.rstrip("/")):
        app.router.add_route(hdrs.METH_OPTIONS, path, _options)
        app.router.add_post(path, _tus(_post))
    app.router.add_route(hdrs.METH_HEAD, TUS_PATH + "{id}", _tus(_head))
    app.router.add_route(hdrs.METH_PATCH, TUS_PATH + "{id}", _tus(_patch))
    app.on_response_prepare.append(_tus_headers)
