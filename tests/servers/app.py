"""Deterministic aiohttp test application.

Every body is made of :func:`pattern` bytes (``bytes(i % 251 for i in range(n))``), so a
test can check a download with ``data == pattern(n)`` or ``sha256 == pattern_sha256(n)``.

Routes (``n`` is a byte count, ``S`` seconds as a float):

- ``POST /upload``                  multipart/form-data, parsed while streaming; JSON report.
  Any other method on ``/upload`` replies JSON with the method (and the body size/sha256).
- ``GET /bytes/{n}``                n bytes, Content-Length, 64 KiB chunks;
  ``?type=`` Content-Type, ``?delay=S`` sleep between chunks.
- ``GET /chunked/{n}``              n bytes, chunked transfer encoding; ``?delay=S``.
- ``GET /slow/{n}?delay=S``         Content-Length n, one 1 KiB chunk every S seconds.
- ``GET /hang``                     headers (Content-Length 100), then never a body.
- ``GET /hang-before-headers``      never answers.
- ``GET /truncated/{n}``            Content-Length n, n//2 bytes, then the connection closes.
- ``ANY /redirect/{n}``             302 to /redirect/{n-1}; /redirect/0 is 200 "done";
  ``?status=`` keeps the status along the chain, ``?absolute=1`` absolute Location.
- ``GET /redirect-loop``            302 to itself.
- ``ANY /redirect-to?url=U&status=S`` redirect to U (default 302), body not read.
- ``ANY /status/{code}``            that status, body ``status {code}``.
- ``GET|POST /headers``             JSON of the request headers.
- ``GET|POST /concurrent?delay=S``  in-flight counter; ``GET /concurrent/stats``,
  ``POST /concurrent/reset``.
- ``POST /slow-upload?rate=B``      reads the body at about B bytes/s; JSON ``{"size": n}``.
- ``GET /file/{name}``              pattern(1000), Content-Type from the extension,
  ``Content-Disposition: attachment; filename="<name>"``.
- ``GET /reset``                    the connection is reset (RST, SO_LINGER 0), no response.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import socket
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web

PERIOD = 251
CHUNK = 64 * 1024
SLOW_CHUNK = 1024
FILE_SIZE = 1000
_UNIT = bytes(range(PERIOD))
_BLOCK = _UNIT * (CHUNK // PERIOD + 2)
_FOREVER = 3600.0


def pattern(n: int, offset: int = 0) -> bytes:
    """Bytes ``offset .. offset+n`` of the infinite sequence ``i % 251``.

    ``pattern(n) == bytes(i % 251 for i in range(n))``.
    """
    if n <= 0:
        return b""
    start = offset % PERIOD
    if start + n <= len(_BLOCK):
        return _BLOCK[start : start + n]
    reps = (start + n) // PERIOD + 1
    return (_UNIT * reps)[start : start + n]


def pattern_sha256(n: int) -> str:
    """Hex sha256 of ``pattern(n)``, computed in chunks."""
    digest = hashlib.sha256()
    for offset in range(0, n, CHUNK):
        digest.update(pattern(min(CHUNK, n - offset), offset))
    return digest.hexdigest()


@dataclass
class Concurrency:
    current: int = 0
    max: int = 0
    total: int = 0

    def enter(self) -> int:
        self.current += 1
        self.total += 1
        self.max = max(self.max, self.current)
        return self.current

    def leave(self) -> None:
        self.current -= 1

    def reset(self) -> None:
        self.current = 0
        self.max = 0
        self.total = 0


CONCURRENCY = web.AppKey("concurrency", Concurrency)


# --------------------------------------------------------------------------- helpers


def _float_query(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"bad {name}: {raw!r}") from None
    if value < 0:
        raise web.HTTPBadRequest(text=f"bad {name}: {raw!r}")
    return value


def _int_match(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise web.HTTPBadRequest(text=f"bad {name}") from None


def _headers(request: web.BaseRequest) -> dict[str, str]:
    """Request headers with lower-cased names; repeated headers joined with ", "."""
    out: dict[str, str] = {}
    for key, value in request.headers.items():
        k = key.lower()
        out[k] = f"{out[k]}, {value}" if k in out else value
    return out


def _is_chunked(request: web.BaseRequest) -> bool:
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _request_info(request: web.BaseRequest) -> dict[str, Any]:
    return {
        "method": request.method,
        "headers": _headers(request),
        "content_length": request.content_length,
        "chunked": _is_chunked(request),
    }


async def _drain_body(request: web.BaseRequest) -> tuple[int, str]:
    """Read and discard the request body; return (size, sha256 hex)."""
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = await request.content.read(CHUNK)
        if not chunk:
            break
        size += len(chunk)
        digest.update(chunk)
    return size, digest.hexdigest()


async def _stream(
    request: web.Request,
    n: int,
    *,
    chunk_size: int,
    delay: float,
    chunked: bool,
    content_type: str = "application/octet-stream",
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    resp = web.StreamResponse(headers=headers)
    resp.content_type = content_type
    if chunked:
        resp.enable_chunked_encoding()
    else:
        resp.content_length = n
    await resp.prepare(request)
    if request.method == "HEAD":
        return resp
    sent = 0
    while sent < n:
        if sent and delay:
            await asyncio.sleep(delay)
        size = min(chunk_size, n - sent)
        await resp.write(pattern(size, sent))
        sent += size
    await resp.write_eof()
    return resp


async def _wait_forever() -> None:
    """Sleep until the handler is cancelled (client gone or server stopping)."""
    await asyncio.sleep(_FOREVER)


# --------------------------------------------------------------------------- handlers


async def upload(request: web.Request) -> web.Response:
    info = _request_info(request)
    if request.method != "POST" or not request.content_type.startswith("multipart/"):
        size, sha = await _drain_body(request)
        return web.json_response(
            {
                "fields": {},
                "files": [],
                "order": [],
                **info,
                "request_content_type": request.headers.get("Content-Type"),
                "body_size": size,
                "body_sha256": sha,
            }
        )

    fields: dict[str, str] = {}
    files: list[dict[str, Any]] = []
    order: list[str | None] = []
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):  # nested multipart: skip it
                order.append(None)
                continue
            name = part.name
            order.append(name)
            if part.filename is None:
                raw = await part.read(decode=False)
                charset = part.get_charset(default="utf-8")
                fields[name or ""] = bytes(raw).decode(charset, errors="replace")
                continue
            digest = hashlib.sha256()
            size = 0
            while True:
                chunk = await part.read_chunk(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                digest.update(chunk)
            files.append(
                {
                    "field": name,
                    "filename": part.filename,
                    "content_type": part.headers.get("Content-Type"),
                    "size": size,
                    "sha256": digest.hexdigest(),
                    "headers": {k.lower(): v for k, v in part.headers.items()},
                }
            )
    except (ValueError, AssertionError) as exc:  # malformed multipart body
        return web.json_response({"error": f"{type(exc).__name__}: {exc}", **info}, status=400)
    return web.json_response(
        {
            "fields": fields,
            "files": files,
            "order": order,
            **info,
            "request_content_type": request.headers.get("Content-Type"),
        }
    )


async def bytes_(request: web.Request) -> web.StreamResponse:
    n = _int_match(request, "n")
    return await _stream(
        request,
        n,
        chunk_size=CHUNK,
        delay=_float_query(request, "delay", 0.0),
        chunked=False,
        content_type=request.query.get("type", "application/octet-stream"),
    )


async def chunked(request: web.Request) -> web.StreamResponse:
    n = _int_match(request, "n")
    return await _stream(
        request,
        n,
        chunk_size=CHUNK,
        delay=_float_query(request, "delay", 0.0),
        chunked=True,
        content_type=request.query.get("type", "application/octet-stream"),
    )


async def slow(request: web.Request) -> web.StreamResponse:
    n = _int_match(request, "n")
    return await _stream(
        request,
        n,
        chunk_size=SLOW_CHUNK,
        delay=_float_query(request, "delay", 0.1),
        chunked=False,
    )


async def hang(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.content_type = "application/octet-stream"
    resp.content_length = 100
    await resp.prepare(request)
    await _wait_forever()
    return resp


async def hang_before_headers(request: web.Request) -> web.StreamResponse:
    await _wait_forever()
    return web.Response(text="unreachable")


async def truncated(request: web.Request) -> web.StreamResponse:
    n = _int_match(request, "n")
    resp = web.StreamResponse()
    resp.content_type = "application/octet-stream"
    resp.content_length = n
    await resp.prepare(request)
    half = n // 2
    for offset in range(0, half, CHUNK):
        await resp.write(pattern(min(CHUNK, half - offset), offset))
    transport = request.transport
    if transport is not None:
        transport.close()  # flushes what was written, then FIN
    await _wait_forever()  # cancelled by connection_lost (handler_cancellation)
    return resp


async def reset(request: web.Request) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()  # close() with SO_LINGER 0 -> RST
    await _wait_forever()
    return web.Response(text="unreachable")


_REDIRECT_STATUSES = {301, 302, 303, 307, 308}


def _redirect_status(request: web.Request, default: int = 302) -> int:
    raw = request.query.get("status")
    if raw is None:
        return default
    try:
        status = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"bad status: {raw!r}") from None
    if not 300 <= status < 400:
        raise web.HTTPBadRequest(text=f"bad status: {raw!r}")
    return status


def _redirect(status: int, location: str) -> web.Response:
    return web.Response(
        status=status,
        headers={"Location": location},
        text=f"redirecting to {location}",
    )


async def redirect(request: web.Request) -> web.Response:
    n = _int_match(request, "n")
    status = _redirect_status(request)
    if status not in _REDIRECT_STATUSES:
        raise web.HTTPBadRequest(text=f"bad status: {status}")
    if n <= 0:
        return web.Response(text="done", headers={"X-Method": request.method})
    query = request.query_string
    location = f"/redirect/{n - 1}" + (f"?{query}" if query else "")
    if request.query.get("absolute") in {"1", "true", "yes"}:
        location = f"{request.scheme}://{request.host}{location}"
    return _redirect(status, location)


async def redirect_loop(request: web.Request) -> web.Response:
    return _redirect(302, "/redirect-loop")


async def redirect_to(request: web.Request) -> web.Response:
    url = request.query.get("url")
    if not url:
        raise web.HTTPBadRequest(text="missing url")
    return _redirect(_redirect_status(request), url)


async def status(request: web.Request) -> web.Response:
    code = _int_match(request, "code")
    if not 200 <= code <= 599:
        raise web.HTTPBadRequest(text=f"unsupported status {code}")
    if code in {204, 304}:
        return web.Response(status=code)
    return web.Response(status=code, text=f"status {code}")


async def headers(request: web.Request) -> web.Response:
    if request.method == "POST":
        await _drain_body(request)
    return web.json_response({"headers": _headers(request), "method": request.method})


async def concurrent(request: web.Request) -> web.Response:
    state = request.app[CONCURRENCY]
    delay = _float_query(request, "delay", 0.0)
    at_entry = state.enter()
    try:
        size = 0
        if request.method == "POST":
            size, _ = await _drain_body(request)
        if delay:
            await asyncio.sleep(delay)
    finally:
        state.leave()
    return web.json_response({"current_at_entry": at_entry, "body_size": size})


async def concurrent_stats(request: web.Request) -> web.Response:
    state = request.app[CONCURRENCY]
    return web.json_response({"max": state.max, "current": state.current, "total": state.total})


async def concurrent_reset(request: web.Request) -> web.Response:
    request.app[CONCURRENCY].reset()
    return web.json_response({"max": 0, "current": 0, "total": 0})


async def slow_upload(request: web.Request) -> web.Response:
    rate = _float_query(request, "rate", 64 * 1024)
    if rate <= 0:
        raise web.HTTPBadRequest(text="rate must be > 0")
    step = 16 * 1024
    size = 0
    while True:
        chunk = await request.content.read(step)
        if not chunk:
            break
        size += len(chunk)
        await asyncio.sleep(len(chunk) / rate)
    return web.json_response({"size": size})


def content_disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace('"', "_")
    value = f'attachment; filename="{ascii_name}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


async def file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
    return web.Response(
        body=pattern(FILE_SIZE),
        headers={
            "Content-Type": content_type,
            "Content-Disposition": content_disposition(name),
        },
    )


# --------------------------------------------------------------------------- factory


def make_app() -> web.Application:
    # client_max_size: /upload and friends stream, but a large plain form must not 413.
    app = web.Application(client_max_size=1024**4)
    app[CONCURRENCY] = Concurrency()
    app.router.add_route("*", "/upload", upload)
    app.router.add_get("/bytes/{n}", bytes_)
    app.router.add_get("/chunked/{n}", chunked)
    app.router.add_get("/slow/{n}", slow)
    app.router.add_get("/hang", hang)
    app.router.add_get("/hang-before-headers", hang_before_headers)
    app.router.add_get("/truncated/{n}", truncated)
    app.router.add_route("*", "/redirect/{n}", redirect)
    app.router.add_get("/redirect-loop", redirect_loop)
    app.router.add_route("*", "/redirect-to", redirect_to)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/headers", headers)
    app.router.add_post("/headers", headers)
    app.router.add_get("/concurrent/stats", concurrent_stats)
    app.router.add_post("/concurrent/reset", concurrent_reset)
    app.router.add_get("/concurrent", concurrent)
    app.router.add_post("/concurrent", concurrent)
    app.router.add_post("/slow-upload", slow_upload)
    app.router.add_get("/file/{name}", file)
    app.router.add_get("/reset", reset)
    return app


__all__ = [
    "CONCURRENCY",
    "FILE_SIZE",
    "PERIOD",
    "Concurrency",
    "make_app",
    "pattern",
    "pattern_sha256",
]
