"""Embedded developer server behind ``wxtransfer serve`` (aiohttp.web).

Routes:

* ``POST /upload``: multipart/form-data, any number of files and fields, streamed to disk.
* ``GET|HEAD /files/{name}``: a stored file, with Range, ETag and Last-Modified support.
* ``GET|HEAD /``: the stored files as an HTML page (:mod:`._server_page`: uploads with
  progress bars), or JSON with ``Accept: application/json``.
* ``/tus/``: tus 1.0 resumable uploads (:mod:`._server_tus`), stored like ``/upload`` files.

Every request gets one line on the ``wxtransfer.server.access`` logger (see
:class:`_AccessLogger`); :func:`serve` prints those lines to stderr.

This module imports nothing from :mod:`wxtransfer` but its two helpers, ``_server_page``
and ``_server_tus``, which import nothing from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import sys
import threading
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, TypedDict, TypeVar
from urllib.parse import quote

from aiohttp import (
    BadContentDispositionHeader,
    BadContentDispositionParam,
    BodyPartReader,
    hdrs,
    web,
)
from aiohttp.abc import AbstractAccessLogger
from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import HttpProcessingError, InvalidHeader
from aiohttp.multipart import parse_content_disposition
from aiohttp.typedefs import Handler

from . import _server_tus
from ._server_page import CONTENT_SECURITY_POLICY, FileEntry, render_error, render_page

__all__ = ["DevServer", "create_app", "serve"]

#: Hidden directory inside the root holding temporary uploads and metadata sidecars.
STATE_DIR_NAME: Final = ".wxtransfer"
#: Bytes read from the request (and written to disk) per step.
CHUNK_SIZE: Final = 256 * 1024
#: Largest accepted non-file form field, in bytes.
FIELD_LIMIT: Final = 1024 * 1024
#: Longest sanitised original name kept in a stored name, in UTF-8 bytes.
_NAME_BYTES: Final = 180
_UNSAFE_CHARS: Final = frozenset('<>:"/\\|?*')
# RFC 5987 attr-char beyond what urllib.parse.quote always keeps.
_ATTR_CHAR_SAFE: Final = "!#$&+^`|"
#: Where the one-line-per-request access log goes (INFO).
ACCESS_LOGGER_NAME: Final = "wxtransfer.server.access"
_ACCESS_LOG: Final = logging.getLogger(ACCESS_LOGGER_NAME)
# nginx's "client closed request": what a handler returns for a client that is already
# gone. It is never sent (there is no one to send it to); the access log prints "-".
_CLIENT_GONE: Final = 499
# What aiohttp's multipart parser raises, or warns with (an exception under
# ``-W error``), on a malformed body.
_PARSE_ERRORS: Final = (
    ValueError,  # UnicodeError included
    AssertionError,
    LookupError,
    RuntimeError,
    HttpProcessingError,
    BadContentDispositionHeader,
    BadContentDispositionParam,
)

_T = TypeVar("_T")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
#: ``POST /upload?via=form``: the page's no-JavaScript form, answered with a redirect to
#: ``/`` (or an HTML error page) instead of JSON.
_FORM_QUERY: Final = ("via", "form")


class UploadedFile(TypedDict):
    """One file received by ``POST /upload``."""

    field: str
    filename: str
    name: str
    size: int
    sha256: str
    url: str


@dataclass(frozen=True)
class _Config:
    root: Path
    tmp_dir: Path
    meta_dir: Path
    max_size: int | None
    token: bytes | None


@dataclass
class _Pending:
    """A fully received file still waiting under its temporary name."""

    field: str
    filename: str
    tmp: Path
    size: int = 0
    sha256: str = ""


class _Reject(Exception):
    """Abort a request with an HTTP status and a JSON error message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_CONFIG: Final = web.AppKey("wxtransfer_config", _Config)


# --------------------------------------------------------------------------- helpers


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


def _client_gone() -> web.Response:
    return web.Response(status=_CLIENT_GONE, reason="Client Closed Request")


def _file_url(name: str) -> str:
    return "/files/" + quote(name, safe="")


def sanitise_filename(name: str) -> str:
    """Return a safe single path component derived from a client-supplied file name."""
    name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        "_" if c in _UNSAFE_CHARS or unicodedata.category(c).startswith("C") else c for c in name
    )
    name = name.strip(" .")
    if len(name.encode("utf-8")) > _NAME_BYTES:
        stem, dot, suffix = name.rpartition(".")
        if not dot or not stem or len(suffix) > 16:
            stem, suffix = name, ""
        suffix = "." + suffix if suffix else ""
        budget = _NAME_BYTES - len(suffix.encode("utf-8"))
        stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(" .")
        name = stem + suffix
    return name or "file"


def _ascii_fallback(c: str) -> str:
    if " " <= c <= "~" and c not in '"\\%':
        return c
    plain = unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode("ascii")
    return plain if plain and all(" " <= p <= "~" and p not in '"\\%' for p in plain) else "_"


def content_disposition(filename: str) -> str:
    """Build an RFC 6266 ``attachment`` header value, with ``filename*`` when needed."""
    safe = sanitise_filename(filename)
    if all(" " <= c <= "~" and c not in '"\\%' for c in safe):
        return f'attachment; filename="{safe}"'
    fallback = "".join(_ascii_fallback(c) for c in safe)
    fallback = fallback.strip(" .") or "download"
    encoded = quote(safe, safe=_ATTR_CHAR_SAFE, encoding="utf-8")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _read_meta(cfg: _Config, name: str) -> dict[str, Any]:
    try:
        with open(cfg.meta_dir / f"{name}.json", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _original_name(cfg: _Config, name: str) -> str:
    filename = _read_meta(cfg, name).get("filename")
    return filename if isinstance(filename, str) and filename else name


def _recorded_sha256(meta: dict[str, Any], size: int) -> str | None:
    """The sidecar's SHA-256, if it still describes the file (same size)."""
    sha = meta.get("sha256")
    if isinstance(sha, str) and _SHA256.fullmatch(sha) and meta.get("size") == size:
        return sha
    return None


def _stored_path(cfg: _Config, name: str) -> Path:
    """Map a ``/files/`` name to a regular file directly inside the root, or reject it."""
    if (
        not name
        or name in {".", ".."}
        or any(c in name for c in "/\\\0")
        or any(unicodedata.category(c) == "Cc" for c in name)
    ):
        raise _Reject(400, "invalid file name")
    if name.startswith("."):
        raise _Reject(404, "no such file")
    path = cfg.root / name
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise _Reject(404, "no such file") from None
    if real.parent != cfg.root or not real.is_file():
        raise _Reject(404, "no such file")
    return real


def _scan(cfg: _Config) -> list[FileEntry]:
    entries: list[FileEntry] = []
    with os.scandir(cfg.root) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            try:
                path = _stored_path(cfg, entry.name)
                st = path.stat()
            except (_Reject, OSError):
                continue
            meta = _read_meta(cfg, entry.name)
            filename = meta.get("filename")
            entries.append(
                {
                    "name": entry.name,
                    "filename": filename if isinstance(filename, str) and filename else entry.name,
                    "size": st.st_size,
                    "mtime": st.st_mtime,
                    "url": _file_url(entry.name),
                    "sha256": _recorded_sha256(meta, st.st_size),
                }
            )
    entries.sort(key=lambda e: (-e["mtime"], e["name"]))
    return entries


def _authorized(request: web.Request, token: bytes | None) -> bool:
    if token is None:
        return True
    scheme, _, credentials = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    given = credentials.strip().encode("utf-8", "surrogatepass")
    same = hmac.compare_digest(given, token)
    return same and scheme.lower() == "bearer"


def _form_post(request: web.BaseRequest) -> bool:
    """The page's no-JavaScript form posted this: answer with HTML, never raw JSON."""
    return request.query.get(_FORM_QUERY[0]) == _FORM_QUERY[1]


def _upload_error(request: web.BaseRequest, status: int, message: str) -> web.Response:
    """An upload's error: JSON, or an HTML page with a link back for the no-JS form."""
    if not _form_post(request):
        return _json_error(status, message)
    resp = web.Response(status=status, text=render_error(status, message), content_type="text/html")
    resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return resp


def _unauthorized(request: web.Request) -> web.Response:
    resp = _upload_error(request, 401, "missing or invalid bearer token")
    challenge = 'Bearer realm="wxtransfer"'
    if hdrs.AUTHORIZATION in request.headers:
        challenge += ', error="invalid_token"'
    resp.headers[hdrs.WWW_AUTHENTICATE] = challenge
    return resp


def _precheck_upload(request: web.Request, cfg: _Config) -> web.Response | None:
    """Reject an upload from its headers alone, before any body byte is read."""
    ctype = request.headers.get(hdrs.CONTENT_TYPE, "")
    mimetype = parse_mimetype(ctype)
    if (mimetype.type, mimetype.subtype) != ("multipart", "form-data"):
        return _upload_error(request, 415, "expected a multipart/form-data body")
    boundary = mimetype.parameters.get("boundary", "")
    if not 1 <= len(boundary) <= 70:
        return _upload_error(request, 400, "multipart/form-data without a valid boundary")
    length = request.content_length
    if cfg.max_size is not None and length is not None and length > cfg.max_size:
        return _upload_error(request, 413, f"request body larger than {cfg.max_size} bytes")
    return None


def _describe(exc: Exception) -> str:
    if isinstance(exc, InvalidHeader):
        return f"invalid part header {exc.hdr!r} (expected 'Name: value')"
    if isinstance(exc, HttpProcessingError):
        return exc.message
    if isinstance(exc, (BadContentDispositionHeader, BadContentDispositionParam)):
        return f"malformed Content-Disposition header {str(exc)!r}"
    return str(exc) or type(exc).__name__


async def _parse(step: Awaitable[_T]) -> _T:
    """Await one multipart parsing step, turning parser errors into a 400.

    A client that went away surfaces as ``ConnectionError`` and is not caught here.
    """
    try:
        return await step
    except _PARSE_ERRORS as exc:
        raise _Reject(400, f"malformed multipart body: {_describe(exc)}") from None


def _utf8(value: str | None, what: str) -> str | None:
    """``value`` if it came from valid UTF-8 (aiohttp keeps bad bytes as surrogates)."""
    try:
        if value is not None:
            value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Reject(400, f"{what} is not valid UTF-8") from None
    return value


def _disposition(part: BodyPartReader, index: int) -> tuple[str, str | None]:
    """``(field name, file name or None)`` of a form-data part, or a 400."""
    header = part.headers.get(hdrs.CONTENT_DISPOSITION)
    if header is None:
        raise _Reject(400, f"part {index} has no Content-Disposition header")
    malformed = _Reject(400, f"part {index} has a malformed Content-Disposition header")
    try:
        disposition, _ = parse_content_disposition(header)
        name, filename = part.name, part.filename
    except _PARSE_ERRORS:
        raise malformed from None
    if disposition is None:
        raise malformed
    name = _utf8(name, f"the field name of part {index}")
    filename = _utf8(filename, f"the file name of part {index}")
    return name or "", filename


def _check_total(request: web.Request, cfg: _Config) -> None:
    if cfg.max_size is not None and request.content.total_bytes > cfg.max_size:
        raise _Reject(413, f"request body larger than {cfg.max_size} bytes")


def _write_chunk(f: IO[bytes], digest: Any, chunk: bytes) -> None:
    f.write(chunk)
    digest.update(chunk)


async def _receive_file(
    request: web.Request, cfg: _Config, part: BodyPartReader, pending: _Pending
) -> None:
    loop = asyncio.get_running_loop()
    digest = hashlib.sha256()
    f = await loop.run_in_executor(None, open, pending.tmp, "xb")
    try:
        while chunk := await _parse(part.read_chunk(CHUNK_SIZE)):
            pending.size += len(chunk)
            _check_total(request, cfg)
            await loop.run_in_executor(None, _write_chunk, f, digest, chunk)
    finally:
        await asyncio.shield(loop.run_in_executor(None, f.close))
    pending.sha256 = digest.hexdigest()


async def _read_field(request: web.Request, cfg: _Config, part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await _parse(part.read_chunk(CHUNK_SIZE)):
        data += chunk
        _check_total(request, cfg)
        if len(data) > FIELD_LIMIT:
            raise _Reject(413, f"form field {part.name!r} larger than {FIELD_LIMIT} bytes")
    charset = part.get_charset(default="utf-8")
    try:
        return data.decode(charset)
    except (LookupError, UnicodeEncodeError):  # the latter: bad bytes in the charset name
        raise _Reject(400, f"form field {part.name!r} has an unknown charset {charset!r}") from None
    except ValueError:
        raise _Reject(400, f"form field {part.name!r} is not valid {charset}") from None


def _link_no_overwrite(src: Path, dest: Path) -> None:
    """Give ``src`` the name ``dest`` atomically, failing if ``dest`` exists."""
    try:
        os.link(src, dest)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system
        if os.path.lexists(dest):
            raise FileExistsError(dest) from None
        os.rename(src, dest)
        return
    os.unlink(src)


def _publish(cfg: _Config, pending: list[_Pending]) -> list[UploadedFile]:
    """Move received files into the root under fresh names, with metadata sidecars."""
    done: list[Path] = []
    result: list[UploadedFile] = []
    try:
        for item in pending:
            safe = sanitise_filename(item.filename)
            while True:
                name = f"{secrets.token_hex(8)}_{safe}"
                meta = cfg.meta_dir / f"{name}.json"
                record = {
                    "filename": item.filename,
                    "field": item.field,
                    "size": item.size,
                    "sha256": item.sha256,
                    "uploaded": time.time(),
                }
                try:
                    f = open(meta, "x", encoding="utf-8")
                except FileExistsError:
                    continue
                done.append(meta)  # before writing: a failed write must not leave it behind
                with f:
                    json.dump(record, f, ensure_ascii=False)
                try:
                    _link_no_overwrite(item.tmp, cfg.root / name)
                except FileExistsError:
                    meta.unlink()
                    done.pop()
                    continue
                done.append(cfg.root / name)
                break
            result.append(
                {
                    "field": item.field,
                    "filename": item.filename,
                    "name": name,
                    "size": item.size,
                    "sha256": item.sha256,
                    "url": _file_url(name),
                }
            )
    except BaseException:
        for path in done:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    return result


def _publish_tus(
    cfg: _Config, path: Path, filename: str, size: int, sha256: str
) -> tuple[str, str]:
    """Store a complete tus upload like a ``POST /upload`` file: ``(name, URL path)``."""
    (stored,) = _publish(cfg, [_Pending("tus", filename, path, size, sha256)])
    return stored["name"], stored["url"]


def _discard(pending: list[_Pending]) -> None:
    for item in pending:
        with contextlib.suppress(OSError):
            item.tmp.unlink()


# --------------------------------------------------------------------------- handlers


async def _expect_upload(request: web.Request) -> web.StreamResponse | None:
    """Answer ``Expect: 100-continue`` only when the upload can be accepted."""
    cfg = request.app[_CONFIG]
    if not _authorized(request, cfg.token):
        return _unauthorized(request)
    early = _precheck_upload(request, cfg)
    if early is not None:
        return early
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version >= (1, 1):
        if expect.lower() != "100-continue":
            return _upload_error(request, 417, f"unsupported Expect: {expect}")
        try:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        except ConnectionError:
            return _client_gone()
        request.writer.output_size = 0
    return None


async def _upload(request: web.Request) -> web.StreamResponse:
    """``POST /upload``: store every file part, echo the fields."""
    cfg = request.app[_CONFIG]
    early = _precheck_upload(request, cfg)
    if early is not None:
        return early
    loop = asyncio.get_running_loop()
    pending: list[_Pending] = []
    form: dict[str, str | list[str]] = {}
    try:
        reader = await _parse(request.multipart())
        index = 0
        while (part := await _parse(reader.next())) is not None:
            index += 1
            if not isinstance(part, BodyPartReader):
                raise _Reject(400, "nested multipart bodies are not supported")
            field, filename = _disposition(part, index)
            if filename is None:
                value = await _read_field(request, cfg, part)
                previous = form.get(field)
                if previous is None:
                    form[field] = value
                elif isinstance(previous, list):
                    previous.append(value)
                else:
                    form[field] = [previous, value]
            elif filename == "":  # a browser's empty <input type=file>: skip it
                while await _parse(part.read_chunk(CHUNK_SIZE)):
                    _check_total(request, cfg)
            else:
                item = _Pending(field, filename, cfg.tmp_dir / f"{secrets.token_hex(16)}.part")
                pending.append(item)
                await _receive_file(request, cfg, part, item)
        _check_total(request, cfg)
        files = await loop.run_in_executor(None, _publish, cfg, pending)
    except _Reject as exc:
        return _upload_error(request, exc.status, exc.message)
    except ConnectionError:
        # aiohttp fails the body stream this way when the client disconnects; raised
        # further, it would be logged as a server error with a traceback.
        return _client_gone()
    finally:
        # Shielded: a server shutting down must not leave partial files behind.
        await asyncio.shield(loop.run_in_executor(None, _discard, pending))
    if _form_post(request):  # back to the list, where the new files show
        return web.Response(status=303, headers={hdrs.LOCATION: "/"})
    return web.json_response({"files": files, "form": form})


async def _download(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /files/{name}``: a stored file as an attachment."""
    cfg = request.app[_CONFIG]
    raw = request.raw_path.split("?", 1)[0].lower()
    if any(enc in raw for enc in ("%2f", "%5c", "%00")):
        return _json_error(400, "invalid file name")
    name = request.match_info["name"]
    try:
        path = _stored_path(cfg, name)
    except _Reject as exc:
        return _json_error(exc.status, exc.message)
    filename = await asyncio.get_running_loop().run_in_executor(None, _original_name, cfg, name)
    headers = {
        hdrs.CONTENT_DISPOSITION: content_disposition(filename),
        hdrs.CACHE_CONTROL: "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    return web.FileResponse(path, chunk_size=CHUNK_SIZE, headers=headers)


def _accepted(request: web.BaseRequest) -> list[str]:
    """The media types of the Accept header, in the order sent (q-values ignored)."""
    accept = request.headers.get(hdrs.ACCEPT, "")
    return [t.split(";", 1)[0].strip().lower() for t in accept.split(",")]


def _wants_json(request: web.BaseRequest) -> bool:
    if request.query.get("format") == "json":
        return True
    kinds = _accepted(request)
    if "application/json" not in kinds:
        return False
    return "text/html" not in kinds or kinds.index("application/json") < kinds.index("text/html")


def _page_shell(request: web.BaseRequest) -> bool:
    """A browser opening the page, which it may do without the token.

    A navigation cannot send ``Authorization``, so the page must load for the script to
    ask for the token. Without it the page lists nothing; the JSON listing and everything
    else still needs the token. Only an explicit ``text/html`` counts (a browser's
    Accept), so ``curl URL/`` with its ``*/*`` still gets the 401.
    """
    return (
        request.method in (hdrs.METH_GET, hdrs.METH_HEAD)
        and request.path == "/"
        and not _wants_json(request)
        and "text/html" in _accepted(request)
    )


async def _index(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /``: list stored files (the page shell only, for a browser without token)."""
    cfg = request.app[_CONFIG]
    entries: list[FileEntry] | None = None
    if _authorized(request, cfg.token):
        entries = await asyncio.get_running_loop().run_in_executor(None, _scan, cfg)
    if entries is not None and _wants_json(request):
        resp: web.Response = web.json_response({"files": entries})
    else:
        page = render_page(entries, token_required=cfg.token is not None, max_size=cfg.max_size)
        resp = web.Response(text=page, content_type="text/html", charset="utf-8")
        resp.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    resp.headers[hdrs.VARY] = f"{hdrs.ACCEPT}, {hdrs.AUTHORIZATION}"
    resp.headers[hdrs.CACHE_CONTROL] = "no-store"
    return resp


class _AccessLogger(AbstractAccessLogger):
    """One line per request: ``ADDRESS "METHOD TARGET" STATUS BYTES B TIME ms``.

    ``BYTES`` counts the response body. When the client went away before the response
    was complete, status and size are ``-`` and the line ends with ``client
    disconnected``. aiohttp calls :meth:`log` once per request, also for those.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        # aiohttp sets body_length (headers included) once the response is complete.
        complete = response.body_length > 0
        # Quoted and escaped, so that no request target can forge or garble a line.
        target = json.dumps(f"{request.method} {request.raw_path}")
        if complete:
            outcome = f"{response.status} {_body_bytes(request, response)} B"
        else:
            outcome = "- -"
        line = f"{request.remote or '-'} {target} {outcome} {time * 1000:.1f} ms"
        self.logger.info(line if complete else line + " client disconnected")

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def _body_bytes(request: web.BaseRequest, response: web.StreamResponse) -> int:
    # Not body_length: file bodies go out through sendfile(), which it does not count.
    # Without a Content-Length (a chunked body) it is the best there is, headers included.
    if request.method == hdrs.METH_HEAD or response.status in (204, 304):
        return 0
    length = response.content_length
    return response.body_length if length is None else length


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _authorized(request, request.app[_CONFIG].token) or _page_shell(request):
        return await handler(request)
    return _unauthorized(request)


# --------------------------------------------------------------------------- public API


def create_app(
    root: Path, *, max_size: int | None = None, token: str | None = None
) -> web.Application:
    """Build the dev server application storing uploads in ``root`` (created if missing).

    ``max_size`` caps the whole request body of an upload and a tus ``Upload-Length``
    (413 beyond it); ``token`` requires ``Authorization: Bearer <token>`` on every request
    (401 otherwise) but a browser's request for the page itself, which then lists nothing.
    """
    if max_size is not None and max_size < 0:
        raise ValueError("max_size must be >= 0")
    if token is not None and not token:
        raise ValueError("token must not be empty")
    root = Path(root).resolve()
    state = root / STATE_DIR_NAME
    cfg = _Config(
        root=root,
        tmp_dir=state / "tmp",
        meta_dir=state / "meta",
        max_size=max_size,
        token=token.encode("utf-8", "surrogatepass") if token is not None else None,
    )
    cfg.tmp_dir.mkdir(parents=True, exist_ok=True)
    cfg.meta_dir.mkdir(parents=True, exist_ok=True)
    app = web.Application(middlewares=[_auth_middleware] if token is not None else [])
    app[_CONFIG] = cfg
    app.router.add_get("/", _index)
    app.router.add_post("/upload", _upload, expect_handler=_expect_upload)
    app.router.add_get("/files/{name}", _download)
    tus = _server_tus.TusSettings(
        directory=state / "tus",
        max_size=max_size,
        publish=functools.partial(_publish_tus, cfg),
    )
    _server_tus.add_routes(app, tus)
    return app


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _url(host: str, port: int) -> str:
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class DevServer:
    """Run the dev server in a background thread with its own event loop.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Requests are logged
    on ``wxtransfer.server.access`` (INFO) with no handler added: quiet unless ``logging``
    is configured.
    """

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_size: int | None = None,
        token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.root = Path(root)
        self.host = host
        self.max_size = max_size
        self.token = token
        self.timeout = timeout
        self._requested_port = port
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        if self._port is None:
            raise RuntimeError("DevServer is not running")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        return _url(self.host, self.port)

    def _run_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                # Lingering handlers (a client that went away after a rejected upload)
                # are not tracked by the runner: cancel them like asyncio.run() does.
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def _call(self, make: Callable[[], Awaitable[_T]]) -> _T:
        assert self._loop is not None

        async def run() -> _T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(self.timeout)

    def start(self) -> DevServer:
        """Bind, start serving and return ``self``; raises if already running."""
        if self._thread is not None:
            raise RuntimeError("DevServer is already running")
        app = create_app(self.root, max_size=self.max_size, token=self.token)
        sock = _bind(self.host, self._requested_port)
        self._sock = sock
        self._port = int(sock.getsockname()[1])
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="wxtransfer-dev-server", daemon=True
        )
        self._thread.start()
        runner = web.AppRunner(
            app, shutdown_timeout=1.0, access_log_class=_AccessLogger, access_log=_ACCESS_LOG
        )
        try:
            self._call(runner.setup)
            self._runner = runner
            self._call(web.SockSite(runner, sock).start)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving, close connections and join the thread (idempotent)."""
        loop, thread, runner = self._loop, self._thread, self._runner
        self._runner = None
        try:
            if runner is not None and loop is not None and not loop.is_closed():
                self._call(runner.cleanup)
        finally:
            if loop is not None and thread is not None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(loop.stop)
                thread.join(self.timeout)
            if self._sock is not None:
                self._sock.close()
            self._loop = self._thread = self._sock = None
            self._port = None

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _MalformedRequestFilter(logging.Filter):
    """Drops aiohttp's "Error handling request" traceback for a request it could not
    parse (a bad request line or header): that is the client's error, answered with a
    400 that the access log already shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, HttpProcessingError)


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    root: Path,
    max_size: int | None = None,
    token: str | None = None,
) -> None:
    """Serve ``root`` in the foreground until interrupted (Ctrl+C or SIGTERM).

    The access log goes to stderr, unless ``logging`` is configured already (then it
    goes where that configuration sends the ``wxtransfer.server.access`` logger).
    """
    app = create_app(root, max_size=max_size, token=token)
    sock = _bind(host, port)
    handler: logging.Handler | None = None
    level = _ACCESS_LOG.level
    quiet = _MalformedRequestFilter()
    server_log = logging.getLogger("aiohttp.server")
    server_log.addFilter(quiet)
    try:
        url = _url(host, int(sock.getsockname()[1]))
        print(f"wxtransfer dev server: serving {Path(root).resolve()} at {url}/", flush=True)
        print(f"  upload: POST {url}/upload   list: {url}/   download: {url}/files/NAME")
        print(f"  resumable (tus 1.0): {url}{_server_tus.TUS_PATH}")
        print("  press Ctrl+C to stop", flush=True)
        if not _ACCESS_LOG.hasHandlers():
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            _ACCESS_LOG.addHandler(handler)
            _ACCESS_LOG.setLevel(logging.INFO)
        web.run_app(
            app,
            sock=sock,
            print=None,
            shutdown_timeout=2.0,
            access_log_class=_AccessLogger,
            access_log=_ACCESS_LOG,
        )
    finally:
        server_log.removeFilter(quiet)
        if handler is not None:
            _ACCESS_LOG.removeHandler(handler)
            _ACCESS_LOG.setLevel(level)
        sock.close()
