"""Transport: one transfer on one libcurl easy handle, and libcurl's errors mapped in one place.

Runs only on the engine thread. A transfer is driven hop by hop: the engine follows redirects
itself, so each hop is one request on the same easy handle.
"""

from __future__ import annotations

import mimetypes
import os
import posixpath
import secrets
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pycurl

from ._digest import Check, header_checks
from ._errors import (
    AbortError,
    Errno,
    FileError,
    InvalidArgumentError,
    NetworkError,
    TimeoutError,
    TransferError,
)
from ._events import TaskEvents
from ._files import remove_upload_checkpoint, save_upload_checkpoint
from ._flow import Answer, Exchange, FlowRunner, Resume
from ._options import Request
from ._output import KeptPart, Output, Writer, save_error
from ._results import (
    DownloadFileResult,
    DownloadProgress,
    Headers,
    HeadersReceived,
    UploadFileResult,
    UploadProgress,
)
from ._rules import WeChatRules, configure_tls, explain_failure
from ._trace import logger, next_number, tracing

__all__ = [
    "ANSWER_ERRORS",
    "CHUNKED_ERRORS",
    "CURL_ERRORS",
    "Transfer",
    "TransportConfig",
    "map_curl_error",
    "new_template",
]

# CURLOPT_MIME_OPTIONS (pycurl has no name for it). 0 keeps libcurl's percent-escaping of
# names, as browsers do (" -> %22, CR/LF -> %0D%0A); CURLMIMEOPT_FORMESCAPE would switch to
# backslash-escaping, which servers parsing like browsers misread.
_MIME_OPTIONS = 315
_SEEK_OK: int = pycurl.SEEKFUNC_OK
_SEEK_CANT: int = pycurl.SEEKFUNC_CANTSEEK
_REWIND_REFUSED = 65  # CURLE_SEND_FAIL_REWIND
_MIME_PERCENT_ESCAPE = 0
_BUFFER = 1 << 20
_SMALL_UPLOAD = 64 * 1024  # files up to this size are sent from memory, in one piece
_QUIET_UPLOAD = 16 * 1024  # bodies up to this size go out in one read, with no progress calls
_UNKNOWN_TOTAL_INTERVAL = 0.1  # seconds between progress events while the total is unknown
# libcurl's CURL_HTTP_VERSION_* -> the platform's profile.protocol (HTTP/1.0: "unknown")
_PROTOCOLS = {2: "http1.1", 3: "h2", 30: "quic"}
_NO_HEADERS = Headers()  # immutable: every hop starts with this one

# libcurl result code -> (error class, errno, reason). The one place libcurl's errors are
# translated; tests/test_errors.py fails when a code we can meet is missing.
CURL_ERRORS: dict[int, tuple[type[TransferError], int, str]] = {
    1: (InvalidArgumentError, Errno.INVALID_URL, "invalid URL: unsupported protocol"),
    3: (InvalidArgumentError, Errno.INVALID_URL, "invalid URL"),
    5: (NetworkError, Errno.CANNOT_CONNECT, "could not resolve proxy"),
    6: (NetworkError, Errno.CANNOT_CONNECT, "could not resolve host"),
    7: (NetworkError, Errno.CANNOT_CONNECT, "could not connect to server"),
    8: (NetworkError, Errno.INTERRUPTED, "weird server reply"),
    16: (NetworkError, Errno.INTERRUPTED, "HTTP/2 error"),
    18: (NetworkError, Errno.INTERRUPTED, "body shorter than its Content-Length"),
    23: (FileError, Errno.SAVE_FILE_ERROR, "download save file error"),
    25: (NetworkError, Errno.INTERRUPTED, "upload failed"),
    26: (FileError, Errno.INVALID_ARGUMENT, "could not read the file to upload"),
    27: (NetworkError, Errno.UNKNOWN_NETWORK, "out of memory"),
    28: (TimeoutError, Errno.TIMEOUT, "timeout"),
    35: (NetworkError, Errno.CANNOT_CONNECT, "TLS handshake failed"),
    42: (AbortError, Errno.ABORT, "abort"),
    45: (NetworkError, Errno.CANNOT_CONNECT, "network interface failed"),
    47: (NetworkError, Errno.TOO_MANY_REDIRECTS, "too many redirects"),
    52: (NetworkError, Errno.INTERRUPTED, "empty reply from server"),
    55: (NetworkError, Errno.INTERRUPTED, "failed sending data (connection reset)"),
    56: (NetworkError, Errno.INTERRUPTED, "failed receiving data (connection reset)"),
    58: (NetworkError, Errno.CANNOT_CONNECT, "TLS client certificate problem"),
    59: (NetworkError, Errno.CANNOT_CONNECT, "TLS cipher problem"),
    60: (NetworkError, Errno.CANNOT_CONNECT, "TLS certificate verification failed"),
    61: (NetworkError, Errno.INTERRUPTED, "bad content encoding"),
    63: (FileError, Errno.EXCEED_MAX_FILE_SIZE, "exceed max file size"),
    65: (NetworkError, Errno.INTERRUPTED, "could not rewind the body to send it again"),
    77: (NetworkError, Errno.CANNOT_CONNECT, "TLS CA bundle could not be read"),
    80: (NetworkError, Errno.INTERRUPTED, "TLS shutdown failed"),
    83: (NetworkError, Errno.CANNOT_CONNECT, "TLS issuer check failed"),
    90: (NetworkError, Errno.CANNOT_CONNECT, "TLS public key does not match the pin"),
    91: (NetworkError, Errno.CANNOT_CONNECT, "TLS certificate status invalid"),
    92: (NetworkError, Errno.INTERRUPTED, "HTTP/2 stream error"),
    95: (NetworkError, Errno.INTERRUPTED, "HTTP/3 error"),
    96: (NetworkError, Errno.CANNOT_CONNECT, "QUIC connection failed"),
    97: (NetworkError, Errno.CANNOT_CONNECT, "proxy handshake failed"),
    99: (NetworkError, Errno.UNKNOWN_NETWORK, "unrecoverable poll error"),
    100: (NetworkError, Errno.INTERRUPTED, "response too large"),
}


# Codes with another cause once a server has answered. libcurl's code 1 is a scheme it lacks
# (caught before any request: _options.py, next_hop) or an answer that is not HTTP/1.x:
# "Received HTTP/0.9 when not allowed" (an SSH banner), "Unsupported HTTP/1 subversion in
# response" (HTTP/1.7). The request was sent and may have been acted on: interrupted, as an
# empty (52) or weird (8) reply, not "cannot connect".
ANSWER_ERRORS: dict[int, tuple[type[TransferError], int, str]] = {
    1: (NetworkError, Errno.INTERRUPTED, "the server's answer is not HTTP"),
}
# Codes with another cause when the response body is chunked: 18 is the connection closing
# before the last (0) chunk, not a Content-Length cut; 56 with a message naming the chunks
# ("chunk hex-length char not a hex digit: 0x7a", "Malformed encoding found in
# chunked-encoding") is a bad chunk framing, not a reset.
CHUNKED_ERRORS: dict[int, tuple[type[TransferError], int, str]] = {
    18: (
        NetworkError,
        Errno.INTERRUPTED,
        "the connection closed before the end of the chunked body",
    ),
    56: (NetworkError, Errno.INTERRUPTED, "malformed chunked body from the server"),
}


def map_curl_error(
    api: str, code: int, detail: str = "", *, answered: bool = False, chunked: bool = False
) -> TransferError:
    """Turn a libcurl result code into the platform's errMsg and errno.

    ``answered``: a connection was made and the request sent (:data:`ANSWER_ERRORS`);
    ``chunked``: the response being received is chunked (:data:`CHUNKED_ERRORS`).
    """
    row = None
    if answered:
        row = ANSWER_ERRORS.get(code)
    if chunked and (code != 56 or "chunk" in detail.lower()):
        row = CHUNKED_ERRORS.get(code, row)
    cls, errno, reason = row or CURL_ERRORS.get(
        code, (NetworkError, Errno.UNKNOWN_NETWORK, f"network error (curl {code})")
    )
    message = f"{api}:fail {reason}"
    if detail and cls is NetworkError and detail not in reason:
        message += f": {detail}"
    error = cls(message, errno, curl_code=code)
    error.__cause__ = pycurl.error(code, detail)
    return error


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Per-runtime settings every transfer of that runtime shares."""

    temp_dir: Callable[[], str]
    ca_file: str | None
    resolve: dict[str, str]
    user_agent: str
    rules: WeChatRules | None = None  # platform rules (see _rules.py); None: no limits


def parse_content_range(value: str | None) -> tuple[int, int, int]:
    """``bytes FIRST-LAST/TOTAL`` as numbers; (-1, -1, -1) when it is not that."""
    if value is None:
        return -1, -1, -1
    unit, _, rest = value.strip().partition(" ")
    span, _, total = rest.partition("/")
    first, _, last = span.partition("-")
    if unit.lower() != "bytes" or not (first.isdigit() and last.isdigit() and total.isdigit()):
        return -1, -1, -1
    return int(first), int(last), int(total)


def _split_port(addr: str) -> tuple[str, int | None]:
    """``"127.0.0.1:8443"`` -> (``"127.0.0.1"``, 8443); ``"[::1]:8443"``; no port: None."""
    if addr.startswith("[") and "]:" in addr:
        host, _, port = addr.rpartition(":")
    elif addr.count(":") == 1:
        host, _, port = addr.partition(":")
    else:
        return addr, None
    return (host, int(port)) if port.isdigit() else (addr, None)


def _extension(url: str, content_type: str | None) -> str:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    ext = posixpath.splitext(posixpath.basename(path))[1]
    if ext and len(ext) <= 16 and ext[1:].replace("_", "").isalnum():
        return ext.lower()
    if content_type:
        guessed = mimetypes.guess_extension(content_type.split(";")[0].strip().lower())
        if guessed:
            return guessed
    return ""


def new_template(config: TransportConfig, api: str) -> Any:
    """An easy handle with the options every transfer of ``api`` shares.

    Each transfer starts from ``duphandle()`` of it: one C call instead of a dozen setopts.
    """
    c = pycurl.Curl()
    c.setopt(pycurl.FOLLOWLOCATION, 0)  # the engine follows redirects itself, hop by hop
    c.setopt(pycurl.NOSIGNAL, 1)
    c.setopt(pycurl.BUFFERSIZE, _BUFFER)
    c.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
    c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
    if config.ca_file:
        c.setopt(pycurl.CAINFO, config.ca_file)
    if config.rules is not None:
        configure_tls(c)
    if api == "uploadFile":
        c.setopt(_MIME_OPTIONS, _MIME_PERCENT_ESCAPE)
    else:
        c.setopt(pycurl.HTTPGET, 1)
    return c


def _escape_name(name: str) -> bytes:
    """A multipart name or filename as browsers (and libcurl's MIME) write it."""
    return name.encode().replace(b'"', b"%22").replace(b"\r", b"%0D").replace(b"\n", b"%0A")


def _multipart(boundary: str, r: Request, contents: list[bytes]) -> bytes:
    """The multipart/form-data body libcurl's MIME API would send, built in one piece:
    the form fields, then each file (``contents``, in ``r.parts``'s order).

    For small files: it spares the MIME machinery (and its random boundary from OpenSSL)
    that costs more than the transfer itself. tests/test_upload.py compares both bodies.
    """
    dash = b"--" + boundary.encode()
    parts = []
    for key, value in r.form_data:
        parts += [
            dash,
            b'\r\nContent-Disposition: form-data; name="',
            _escape_name(key),
            b'"\r\n\r\n',
            value.encode(),
            b"\r\n",
        ]
    for part, data in zip(r.parts, contents, strict=True):
        parts += [
            dash,
            b'\r\nContent-Disposition: form-data; name="',
            _escape_name(part.name),
            b'"; filename="',
            _escape_name(part.filename),
            b'"\r\nContent-Type: ',
            part.content_type.encode(),
            b"\r\n\r\n",
            data,
            b"\r\n",
        ]
    parts += [dash, b"--\r\n"]
    return b"".join(parts)


class Transfer:
    """One upload or download, its easy handle, its file and its progress.

    Response header lines are only collected as they come, and parsed once, at the end of
    the head: its blank line when someone waits for the headers, else the first body bytes
    or the end of the exchange.
    """

    __slots__ = (
        "api",
        "body",
        "checks",
        "config",
        "continued",
        "curl",
        "deadline",
        "error",
        "exchange",
        "expected",
        "final",
        "flow",
        "follow",
        "fresh",
        "head",
        "head_parsed",
        "held_total",
        "hop_wall",
        "hops",
        "last_bytes",
        "last_event_time",
        "last_percent",
        "lines",
        "mime",
        "next_event",
        "number",
        "output",
        "queue_start",
        "redirecting",
        "redirects",
        "request",
        "restart",
        "retry_wait",
        "reusable",
        "source",
        "start_wall",
        "status",
        "task",
        "trace",
        "tus_base",
        "url",
        "validator",
        "waiting",
        "whole",
        "writer",
        "written",
    )

    flow: FlowRunner  # what decides the next exchange (see _flow.py), from start()

    def __init__(
        self,
        request: Request,
        task: TaskEvents,
        config: TransportConfig,
        writer: Writer,
    ) -> None:
        self.request = request
        self.number = next_number()
        self.trace = tracing()  # DEBUG traces of its phases (see _trace.py)
        self.writer = writer
        self.task = task
        self.config = config
        self.api = request.api
        self.url = request.url  # the current exchange's
        self.follow: frozenset[int] = frozenset()  # statuses the flow may follow
        self.curl: Any = None  # its easy handle, from start(): a queued one holds none
        self.hops = 0  # exchanges begun: the requests made
        self.redirects = 0  # exchanges that followed a redirect (retries not counted)
        self.exchange: Exchange | None = None  # the current one
        self.waiting = False  # between two attempts, the engine's timer runs
        self.deadline: float | None = None
        # wall-clock times in integer microseconds: the profile divides them by 1000 once,
        # which gives exactly the nearest float to 3 decimals, without round()
        self.queue_start = time.time_ns() // 1000
        self.start_wall = 0
        self.hop_wall = 0
        self.mime: Any = None
        self.source: Any = None  # a resumable upload's file, open while a PATCH sends it
        self.tus_base = 0  # the offset that PATCH sends from
        self.error: TransferError | None = None  # set by callbacks: wins over curl's code
        # the handle holds only options every begin() sets again: the next transfer of the
        # same API may take it as it is (see release)
        self.reusable = True
        # the current hop's response
        self.lines: list[bytes] = []
        self.head_parsed = 0  # how many of ``lines`` ``head`` was parsed from
        self.status = 0
        self.head = _NO_HEADERS
        self.redirecting = False  # this head is not the final one: its body is dropped
        self.retry_wait: float | None = None  # ... because it will be tried again, then
        self.restart = False  # a range answer did not fit: the next attempt starts over
        self.final = False  # the final response's head has ended (not a 1xx, not a redirect)
        # the body, across attempts: what a retried download holds and what it belongs to
        self.continued = False  # the body continues the one held (a fitting 206)
        self.whole = False  # a 416 said the part held is the whole resource
        self.fresh = False  # the file was made or started over: set up its hashing
        self.validator: str | None = None  # of the response held: strong ETag, else date
        self.held_total = 0  # its complete length; 0: unknown (nothing to continue)
        self.checks: list[Check] = []  # digests its bytes must match, if it completes 2xx
        self.body: list[bytes] = []
        self.output: Output | None = None  # a download's file, from the end of its head
        self.written = 0
        self.expected = 0
        self.last_percent = -1
        self.last_bytes = -1
        self.next_event = 0  # bytes received at which progress is due again
        self.last_event_time = 0.0

    # ---- setting up a hop ------------------------------------------------------------

    def start(
        self,
        default_timeout_ms: int,
        new_flow: Callable[[Request, Callable[[], float | None]], FlowRunner],
        curl: Any,
    ) -> None:
        """Start the transfer on the easy handle ``curl``: its clock and deadline, and its
        flow (``new_flow``, given the deadline); set up the flow's first exchange."""
        self.curl = curl
        timeout = self.request.timeout_ms
        if timeout is None:
            timeout = default_timeout_ms
        self.start_wall = time.time_ns() // 1000
        deadline = self.deadline = time.monotonic() + timeout / 1000 if timeout else None
        # The flow reads the deadline, not the transfer: no reference cycle, so a transfer
        # and its task are freed as soon as nobody holds them, not by the cyclic GC.
        self.flow = new_flow(self.request, lambda: deadline)
        if self.request.max_speed:
            self.limit_speed()
        self.begin(self.flow.first)

    def begin(self, exchange: Exchange) -> None:
        """Set the easy handle up for ``exchange``; the deadline bounds what remains."""
        c = self.curl
        r = self.request
        if self.exchange is not None and exchange.event is None and not exchange.method:
            self.redirects += 1  # a next exchange that is no retry follows a redirect
        self.exchange = exchange
        self.url, exchange_headers, self.follow = exchange.url, exchange.headers, exchange.follow
        self.retry_wait = None
        self.restart = False
        self.hops += 1
        self.hop_wall = time.time_ns() // 1000
        self.lines = []
        self.head_parsed = 0
        self.status = 0
        self.head = _NO_HEADERS
        self.redirecting = False
        self.final = False
        c.setopt(pycurl.URL, self.url)
        # Header lines are only collected, in C, unless the head's end must be known at
        # once (a headers listener, a trace): otherwise the first body bytes or the end
        # of the exchange end it, which spares a Python call per line.
        if self.trace or self.task._wants_headers():
            c.setopt(pycurl.HEADERFUNCTION, self.on_header)
        else:
            c.setopt(pycurl.HEADERFUNCTION, self.lines.append)
        if self.trace:
            self.reusable = False
            c.setopt(pycurl.PREREQFUNCTION, self._trace_connected)
        if r.compressed:
            self.reusable = False
            c.setopt(pycurl.ACCEPT_ENCODING, "")  # every encoding libcurl decodes
        # HTTP/3 falls back to HTTP/2 or 1.1 (libcurl's _3, not _3ONLY); HTTP/2 is offered
        # by ALPN over TLS. PIPEWAIT: a transfer to an origin another one is connecting to
        # waits for that connection, to multiplex on it. Set each time: the handle may
        # have served another transfer.
        if r.enable_quic:
            c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_3)
        elif r.enable_http2:
            c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS)
        else:
            c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        c.setopt(pycurl.PIPEWAIT, r.enable_quic or r.enable_http2)
        connect = r.connect_timeout_ms or 0  # 0: libcurl's default
        if self.deadline is not None:
            remaining = max(1, int((self.deadline - time.monotonic()) * 1000))
            c.setopt(pycurl.TIMEOUT_MS, remaining)
            c.setopt(pycurl.CONNECTTIMEOUT_MS, min(remaining, connect) if connect else remaining)
        else:
            c.setopt(pycurl.TIMEOUT_MS, 0)
            c.setopt(pycurl.CONNECTTIMEOUT_MS, connect)
        if self.config.resolve:  # most runtimes have none: skip parsing the URL
            self.reusable = False
            resolve = self._resolve_entries()
            if resolve:
                c.setopt(pycurl.RESOLVE, resolve)
            connect_to = self._connect_to_entries()
            if connect_to:
                c.setopt(pycurl.CONNECT_TO, connect_to)
        headers = [f"{k}: {v}" for k, v in exchange_headers]
        if not any(k.lower() == "user-agent" for k, _ in exchange_headers):
            headers.append(f"User-Agent: {self.config.user_agent}")
        if r.tus is not None:
            self.reusable = False
            headers.append("Expect:")
            self.body = []
            c.setopt(pycurl.WRITEFUNCTION, self.body.append)
            self._prepare_tus(exchange)
        elif self.api == "uploadFile":
            headers = [h for h in headers if not h.lower().startswith("content-type:")]
            headers.append("Expect:")
            self.body = []
            c.setopt(pycurl.WRITEFUNCTION, self.body.append)
            content_type = self._prepare_upload()
            if content_type is not None:
                headers.append(content_type)
        else:
            c.setopt(pycurl.WRITEFUNCTION, self.on_body)
        c.setopt(pycurl.HTTPHEADER, headers)

    def _resolve_entries(self) -> list[str]:
        parts = urllib.parse.urlsplit(self.url)
        host = (parts.hostname or "").lower()
        addr = self.config.resolve.get(host)
        if addr is None or _split_port(addr)[1] is not None:
            return []
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        if ":" in addr and not addr.startswith("["):
            addr = f"[{addr}]"
        return [f"{host}:{port}:{addr}"]

    def _connect_to_entries(self) -> list[str]:
        """``resolve`` values with a port ("127.0.0.1:8443") use libcurl's CONNECT_TO: the
        URL keeps its name and port (TLS checks that name), the connection goes there."""
        host = (urllib.parse.urlsplit(self.url).hostname or "").lower()
        addr, port = _split_port(self.config.resolve.get(host, ""))
        if port is None:
            return []
        return [f"{host}::{addr}:{port}"]

    def _prepare_upload(self) -> str | None:
        """Attach the multipart body; the Content-Type header to send, if it is ours."""
        r = self.request
        c = self.curl
        parts = r.parts
        # the sizes validate_upload found
        size = parts[0].size if len(parts) == 1 else sum(part.size for part in parts)
        if size <= _SMALL_UPLOAD:
            contents = self._read_small_files()
            if contents is not None:
                boundary = "-" * 24 + secrets.token_hex(11)
                c.setopt(pycurl.POSTFIELDS, _multipart(boundary, r, contents))
                return f"Content-Type: multipart/form-data; boundary={boundary}"
        self.reusable = False
        mime = pycurl.CurlMime(c)
        for key, value in r.form_data:
            mime.add_field(key.encode(), value.encode())
        for part in parts:  # libcurl reads each file as it sends it: constant memory
            mime.add_file(
                part.name.encode(),
                os.fsencode(part.path),
                filename=part.filename.encode(),
                content_type=part.content_type,
            )
        c.setopt(pycurl.MIMEPOST, mime)
        self.mime = mime
        if size > _QUIET_UPLOAD:
            self._watch_upload(size)
        # A body that fits one read goes out in one step: its one progress event (100 %)
        # is reported at the end, and libcurl is spared a progress call per loop.
        return None

    def _watch_upload(self, size: int) -> int:
        """Report upload progress for a body of ``size``, read in small pieces so that it
        can move by single percents; the size of a read."""
        c = self.curl
        self.reusable = False
        read = min(2 * _BUFFER, max(_QUIET_UPLOAD, size // 128))
        c.setopt(pycurl.UPLOAD_BUFFERSIZE, read)
        c.setopt(pycurl.NOPROGRESS, 0)
        c.setopt(pycurl.XFERINFOFUNCTION, self.on_upload_progress)
        return read

    def _prepare_tus(self, exchange: Exchange) -> None:
        """Set the method and body of a resumable upload's request (see _tus.py)."""
        c = self.curl
        tus = self.request.tus
        assert tus is not None
        if self.source is not None:
            self.source.close()
            self.source = None
        if exchange.keep is not None:  # before any byte goes to that upload
            record: dict[str, object] = {
                "endpoint": self.request.url,
                "path": tus.path,
                "size": tus.size,
                "mtime_ns": tus.mtime_ns,
                "upload_url": exchange.keep,
            }
            self.writer.submit(lambda: _keep_checkpoint(tus.checkpoint, record))
        method = exchange.method
        if method == "HEAD":
            c.setopt(pycurl.UPLOAD, 0)
            c.unsetopt(pycurl.CUSTOMREQUEST)
            c.setopt(pycurl.NOBODY, 1)
            return
        c.setopt(pycurl.NOBODY, 0)
        if method == "POST":
            c.setopt(pycurl.UPLOAD, 0)
            c.unsetopt(pycurl.CUSTOMREQUEST)
            c.setopt(pycurl.POSTFIELDSIZE, 0)
            c.setopt(pycurl.POSTFIELDS, b"")
            return
        assert exchange.send is not None
        offset, length = exchange.send
        try:
            source = open(tus.path, "rb")  # closed when the next exchange begins, or at close
        except OSError as exc:
            raise map_curl_error(self.api, 26, exc.strerror or "") from exc
        source.seek(offset)
        self.source, self.tus_base = source, offset
        left = length
        buffer = self._watch_upload(tus.size)

        def read(size: int) -> bytes:
            nonlocal left
            data = source.read(min(size, left))
            left -= len(data)
            return data

        def rewind(position: int, origin: int) -> int:
            """libcurl sends the body again on a new connection when a reused one died
            before any answer. Fine when it died at once (an idle connection the server
            had closed); once more than two reads went out, the server holds some of them:
            refused, so that the flow asks the server's offset instead of resending."""
            nonlocal left
            if origin != os.SEEK_SET or not 0 <= position <= length:
                return _SEEK_CANT
            if length - left > 2 * buffer:
                return _SEEK_CANT
            source.seek(offset + position)
            left = length - position
            return _SEEK_OK

        c.setopt(pycurl.UPLOAD, 1)
        c.setopt(pycurl.CUSTOMREQUEST, "PATCH")
        c.setopt(pycurl.INFILESIZE_LARGE, length)
        c.setopt(pycurl.READFUNCTION, read)
        c.setopt(pycurl.SEEKFUNCTION, rewind)

    def _read_small_files(self) -> list[bytes] | None:
        """The files' bytes, or None when they have grown past the small-upload size."""
        contents, left = [], _SMALL_UPLOAD
        for part in self.request.parts:
            try:
                fd = os.open(part.path, os.O_RDONLY)
                try:
                    data = os.read(fd, left + 1)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise map_curl_error(self.api, 26, exc.strerror or "") from exc
            left -= len(data)
            if left < 0:
                return None
            contents.append(data)
        return contents

    # ---- the response head -----------------------------------------------------------

    def parse_head(self) -> None:
        """Status and headers of the last response in ``lines`` (after any 1xx)."""
        lines = self.lines
        raw = b"".join(lines)
        start = raw.rfind(b"\nHTTP/") + 1  # 0: the first line, or no HTTP/ line at all
        status_line, _, rest = raw[start:].decode("latin-1").partition("\n")
        parts = status_line.split(None, 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        self.head = Headers._from_head(rest)  # repeats joined by ", ", as Headers documents
        self.head_parsed = len(lines)
        self.redirecting = self.status in self.follow and "location" in self.head

    def _end_of_head(self) -> bool:
        """A head has ended. If it is the final response's, report it and, for a download,
        open the file. False (with ``self.error`` set) when the download may not go on.
        """
        self.parse_head()
        if self.trace:
            self._trace_head()
        if 100 <= self.status < 200 or self.redirecting:
            return True
        judge = self.exchange.judge if self.exchange is not None else None
        if judge is not None:
            wait = judge(self.status, self.head)
            if wait is not None:  # tried again: not final, its body dropped
                self.retry_wait = wait
                self.redirecting = True
                return True
        self.final = True
        if self.api != "downloadFile":
            self.task._report_headers(HeadersReceived(self.head, self.status))
            return True
        resume = self.exchange.resume if self.exchange is not None else None
        if resume is not None and self.status == 416 and self._whole(resume):
            self.whole = self.continued = True  # the part held is the resource, whole
            self.expected = self.written = resume.total
        elif resume is not None and self.status == 206:
            if not self._fits(resume):  # discarded unwritten; the next attempt starts over
                self.restart = True
                self.error = NetworkError(
                    f"{self.api}:fail the server's range answer does not fit the "
                    f"{resume.offset} bytes held of {resume.total}",
                    Errno.INTERRUPTED,
                )
                return False
            self.continued = True
            self.expected = resume.total
            self.written = resume.offset  # progress starts at the bytes held
            if self.validator is None:  # continuing a part an earlier call kept
                self.validator, self.held_total = resume.validator, resume.total
        else:
            self.continued = False
            self.expected = self._content_length()
            self.validator, self.held_total = self._validator()
            if self.output is not None and self._keeps(self.output):
                # an earlier attempt's bytes: start over
                self.output.restart(self.expected, self._record())
                self.written = 0
                self.next_event = self.last_bytes + 1  # no event until past the reported
                self.fresh = True
        self.task._report_headers(HeadersReceived(self.head, self.status))
        try:
            if self.config.rules is not None and self.expected:
                self.config.rules.check_download_size(self.api, self.expected, announced=True)
        except TransferError as exc:
            self.error = exc
            return False
        if self.output is None or not self._keeps(self.output):
            if self.output is not None:
                self.output.close_kept()  # the part waits, untouched, for a later resume
            kept = None
            if self.request.resume and (self.continued or self.status == 200):
                assert self.request.target_path is not None
                held = self.written if self.continued else 0
                record = None if self.continued else self._record()
                kept = KeptPart(self.request.target_path, held, record)
            self.output = Output(
                self.writer, self.request.target_path, self.config.temp_dir, self.expected, kept
            )
            self.output.start()
            self.fresh = True
        if self.fresh:  # a new file or one started over: hashed as it is written
            self.fresh = False
            checks: list[Check] = []
            if self.request.checksum is not None:
                checks.append((*self.request.checksum, "checksum"))
            if self.status == 200:
                checks += header_checks(self.head)
            self.checks = checks
            if checks:
                self.output.hash_with({algorithm for algorithm, _, _ in checks})
        return True

    def _keeps(self, output: Output) -> bool:
        """Whether this response's body goes to ``output``: a kept part takes only the
        resource's bytes (200, or a 206/416 that continues it); another status's body
        goes to a file of its own, and the part waits untouched."""
        if output.kept is None:
            return True
        return self.continued or self.status == 200

    def _record(self) -> dict[str, Any]:
        """The checkpoint of a kept part: what a later call needs to continue it."""
        return {"url": self.request.url, "validator": self.validator, "total": self.held_total}

    def _whole(self, resume: Resume) -> bool:
        """A 416 ``bytes */N`` where N is the bytes held and their complete length."""
        value = (self.head.get("content-range") or "").strip()
        return value == f"bytes */{resume.total}" and resume.offset == resume.total

    def _validator(self) -> tuple[str | None, int]:
        """What a later attempt may continue this response with: a strong ETag, else its
        Last-Modified; and its complete length (``expected``, just read from the head).
        Nothing for a chunked or non-200 body."""
        length = self.expected
        if self.status != 200 or not length:
            return None, 0
        etag = self.head.get("etag")
        if etag and not etag.startswith("W/"):
            return etag, length
        modified = self.head.get("last-modified")
        return (modified, length) if modified else (None, 0)

    def _fits(self, resume: Resume) -> bool:
        """A 206 continues the bytes held: it starts at their end, runs to the end of the
        same complete length, and names no other version (ETag)."""
        first, last, total = parse_content_range(self.head.get("content-range"))
        if (first, last, total) != (resume.offset, resume.total - 1, resume.total):
            return False
        etag = self.head.get("etag")
        if etag is not None and resume.validator.startswith('"') and etag != resume.validator:
            return False
        length = self.head.get("content-length")
        return length is None or length.strip() == str(resume.total - resume.offset)

    # ---- libcurl callbacks (engine thread) -------------------------------------------

    def on_header(self, line: bytes) -> int | None:
        self.lines.append(line)
        if len(line) > 2 or self.final:  # a header line, or a trailer
            return None
        return None if self._end_of_head() else -1

    def hear_headers(self) -> bool:
        """From now on end each head at its blank line, and end one already received that
        no body byte has ended yet. False when that head may not go on."""
        self.curl.setopt(pycurl.HEADERFUNCTION, self.on_header)
        lines = self.lines
        if self.final or self.redirecting or not lines or len(lines[-1]) > 2:
            return True
        if self.head_parsed == len(lines):
            return True  # a 1xx head, already read
        return self._end_of_head()

    def on_body(self, data: bytes) -> int | None:
        output = self.output
        checked = self.redirecting or self.whole or self.config.rules is not None
        if output is None or not self.final or checked:
            return self._on_body_checked(data)
        return self._keep(output, data)  # the usual case, once per 16 KiB: keep it short

    def _on_body_checked(self, data: bytes) -> int | None:
        if self.redirecting or self.whole:  # a body not kept (a 416's: the part is whole)
            return None
        if not self.final:  # the head's first body bytes: they end it
            if not self._end_of_head():
                return -1
            if self.redirecting or self.whole:
                return None
        if self.config.rules is not None:
            try:
                self.config.rules.check_download_size(
                    self.api, self.written + len(data), announced=False
                )
            except TransferError as exc:
                self.error = exc
                return -1
        assert self.output is not None
        return self._keep(self.output, data)

    def _keep(self, output: Output, data: bytes) -> int | None:
        """Hand the bytes to the file; count them for progress."""
        error = output.write(data)
        if error is not None:
            self.error = error
            return -1
        self.written += len(data)
        if self.written >= self.next_event:
            self._progress_due()
        return None

    def _progress_due(self) -> None:
        """A download event when the percent changed (or 100 ms passed, total unknown)."""
        expected = self.expected
        if expected:
            percent = min(100, self.written * 100 // expected)
            if percent > self.last_percent:  # never backwards, across attempts too
                self._download_event(percent, expected)
            # the first byte count of the next percent
            self.next_event = -(-(percent + 1) * expected // 100)
        else:
            now = time.monotonic()
            if (
                now - self.last_event_time >= _UNKNOWN_TOTAL_INTERVAL
                and self.written > self.last_bytes
            ):
                self.last_event_time = now
                self._download_event(0, 0)

    def on_upload_progress(self, dltotal: int, dlnow: int, ultotal: int, ulnow: int) -> int:
        tus = self.request.tus
        if tus is not None:  # out of the file: what the server holds, and what is on its way
            ulnow, ultotal = self.tus_base + ulnow, tus.size
        if ultotal > 0 and ulnow > self.last_bytes:
            percent = min(100, ulnow * 100 // ultotal)
            if percent > self.last_percent:
                self.last_percent, self.last_bytes = percent, ulnow
                self.task._report_progress(UploadProgress(percent, ulnow, ultotal))
        return 0

    def _download_event(self, percent: int, total: int) -> None:
        self.last_percent, self.last_bytes = percent, self.written
        self.task._report_progress(DownloadProgress(percent, self.written, total))

    # ---- files -----------------------------------------------------------------------

    def _content_length(self) -> int:
        """The body's announced length, 0 when unknown (chunked; or decoded by libcurl,
        whose bytes are not the encoded ones Content-Length counts)."""
        value = self.head.get("content-length")
        if value and value.strip().isdigit() and "transfer-encoding" not in self.head:
            if self.request.compressed and "content-encoding" in self.head:
                return 0
            return int(value)
        return 0

    def _chunked(self) -> bool:
        """The response being received has a chunked body."""
        if not self.final and self.head_parsed != len(self.lines):
            self.parse_head()  # a head no body byte has ended yet
        return "chunked" in self.head.get("transfer-encoding", "").lower()

    def _trace_connected(self, peer_ip: str, local_ip: str, peer_port: int, local: int) -> int:
        """libcurl's PREREQFUNCTION, set while tracing: connected, the request goes next."""
        logger.debug("%s #%d connected %s:%d", self.api, self.number, peer_ip, peer_port)
        return 0  # CURL_PREREQFUNC_OK

    def _trace_head(self) -> None:
        length = self.head.get("content-length")
        logger.debug(
            "%s #%d headers %d%s",
            self.api,
            self.number,
            self.status,
            f", Content-Length {length}" if length is not None else "",
        )

    def limit_speed(self, cap: int = 0) -> None:
        """Bytes per second this transfer may move: its own ``max_speed`` or ``cap``
        (its share of the runtime's), the lower that is set; 0 for neither."""
        own = self.request.max_speed
        limit = min(own, cap) if own and cap else own or cap
        self.reusable = False
        option = (
            pycurl.MAX_RECV_SPEED_LARGE
            if self.api == "downloadFile"
            else pycurl.MAX_SEND_SPEED_LARGE
        )
        self.curl.setopt(option, limit)

    def moved(self) -> int:
        """Bytes moved so far in this exchange, both ways, heads included."""
        info = self.curl.getinfo
        return int(
            info(pycurl.SIZE_DOWNLOAD_T)
            + info(pycurl.SIZE_UPLOAD_T)
            + info(pycurl.HEADER_SIZE)
            + info(pycurl.REQUEST_SIZE)
        )

    def close(self) -> None:
        """Free the easy handle (the file, if any, is ``settle``'s)."""
        if self.curl is not None:
            self.curl.close()
        if self.source is not None:
            self.source.close()
            self.source = None

    def release(self) -> Any:
        """The easy handle, for another transfer of the same API, once this one ended
        well and left only options ``begin`` sets again; else None, and it is freed.

        A reused handle keeps libcurl's buffers and the state of its connections: no
        ``duphandle`` and ``curl_easy_cleanup`` per transfer, which cost more than a small
        transfer's own work. Its callbacks let go of this transfer."""
        if not self.reusable or self.source is not None:
            self.close()
            return None
        c = self.curl
        c.setopt(pycurl.HEADERFUNCTION, _ignore)
        c.setopt(pycurl.WRITEFUNCTION, _ignore)
        return c

    def settle(self, outcome: UploadFileResult | DownloadFileResult | TransferError) -> None:
        """Report the outcome once the file is in place, or removed after a failure."""
        output, self.output = self.output, None
        report = self.task._report_done
        tus = self.request.tus
        if tus is not None and isinstance(outcome, UploadFileResult):
            if 200 <= outcome.status_code < 300:  # whole on the server: its URL has served

                def done() -> None:
                    remove_upload_checkpoint(tus.checkpoint)
                    report(outcome)

                self.writer.submit(done)  # after the job that kept it
                return
            report(outcome)
        elif output is None:
            report(outcome)
        elif isinstance(outcome, TransferError):
            output.discard(lambda: report(outcome))
        else:
            assert isinstance(outcome, DownloadFileResult)  # only downloads have a file
            final = outcome.file_path or outcome.temp_file_path
            assert final is not None
            # Only a 2xx completion is the resource: another status's body is not checked.
            checks = self.checks if 200 <= outcome.status_code < 300 else []
            output.finish(final, lambda error: report(outcome if error is None else error), checks)

    # ---- the end of a hop ------------------------------------------------------------

    def answer(self) -> Answer:
        """How this exchange ended well: its last status, and where it points when it is a
        redirect the flow may follow. Raises the error of a head that may not go on."""
        if self.final:
            if self.head_parsed != len(self.lines):  # trailers came after the body
                self.parse_head()
        elif not self.redirecting and not self._end_of_head():  # the head never ended
            assert self.error is not None
            raise self.error
        location = None
        if self.redirecting and self.retry_wait is None:
            location = self.curl.getinfo(pycurl.REDIRECT_URL) or None
        return Answer(
            self.status,
            location,
            None,
            self.retry_wait,
            self.written,
            self.validator,
            self.held_total,
            False,
            self.head,
        )

    def answer_error(self, error: TransferError) -> Answer:
        """How this exchange failed, with what a download holds for the next attempt."""
        return Answer(
            error=error,
            held=self.written,
            validator=self.validator,
            total=self.held_total,
            restart=self.restart,
        )

    def result(self) -> UploadFileResult | DownloadFileResult:
        """Build the success result of the final hop (the file is moved into place here)."""
        profile = self.profile() if self.request.enable_profile else None
        header = self.head
        if self.api == "uploadFile":
            tus = self.request.tus
            if tus is not None and 200 <= self.status < 300:  # data: the upload's URL
                if self.last_bytes != tus.size:
                    self.task._report_progress(UploadProgress(100, tus.size, tus.size))
                data = self.url
                if self.exchange is not None and self.exchange.method == "POST":
                    data = urllib.parse.urljoin(data, header.get("location", ""))
            else:
                ultotal = int(self.curl.getinfo(pycurl.SIZE_UPLOAD_T))
                if ultotal and self.last_bytes != ultotal and tus is None:
                    self.task._report_progress(UploadProgress(100, ultotal, ultotal))
                raw = b"".join(self.body)
                if raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                data = raw.decode("utf-8", errors="replace")
            return UploadFileResult(
                data=data,
                status_code=self.status,
                header=header,
                profile=profile,
                attempts=self.hops,
                url=self.url,
                redirects=self.redirects,
            )
        if self.output is None:  # no head ever ended, and no body came
            self.output = Output(self.writer, self.request.target_path, self.config.temp_dir)
        total = self.expected or self.written
        if self.last_bytes != self.written or self.last_percent != 100:
            self._download_event(100, total)
        temp_file: str | None = None
        if self.request.target_path is None:
            try:
                folder = self.config.temp_dir()
            except OSError as exc:
                raise save_error(exc, "temp folder") from exc
            ext = _extension(self.url, self.head.get("content-type"))
            temp_file = os.path.join(folder, secrets.token_hex(8) + ext)
        return DownloadFileResult(
            status_code=200 if self.continued else self.status,  # as if in one piece
            header=header,
            data_length=self.written,
            temp_file_path=temp_file,
            file_path=self.request.target_path,
            profile=profile,
            attempts=self.hops,
            url=self.url,
            redirects=self.redirects,
        )

    def failure(self, code: int, detail: str) -> TransferError:
        if self.error is not None:
            return self.error
        if code == _REWIND_REFUSED and self.source is not None:  # a PATCH cut (see rewind)
            code = 56 if detail.startswith("Recv") else 55  # what cut it: receive or send
        answered = False
        if code in ANSWER_ERRORS:  # libcurl resets these for each hop
            info = self.curl.getinfo
            answered = bool(info(pycurl.REQUEST_SIZE) or info(pycurl.PRIMARY_IP))
        if code == 28 and self._connect_timed_out():
            error: TransferError = NetworkError(
                f"{self.api}:fail could not connect: no connection within "
                f"{self.request.connect_timeout_ms} ms",
                Errno.CANNOT_CONNECT,
                curl_code=code,
            )
            error.__cause__ = pycurl.error(code, detail)
            return error
        error = map_curl_error(self.api, code, detail, answered=answered, chunked=self._chunked())
        if self.config.rules is not None:
            error = explain_failure(error, code)
        return error

    def _connect_timed_out(self) -> bool:
        """A timeout before any connection, with the deadline still ahead: the attempt's
        own ``connect_timeout`` ran out (cannot connect), not the whole transfer's."""
        if not self.request.connect_timeout_ms or self.curl.getinfo(pycurl.CONNECT_TIME_T):
            return False
        return self.deadline is None or time.monotonic() < self.deadline - 0.005

    def profile(self) -> dict[str, Any]:
        """The platform's RequestProfile from libcurl's timings, in ms since the epoch."""
        info = self.curl.getinfo
        start = self.start_wall / 1000
        t0 = self.hop_wall  # libcurl's timings (µs) count from the final hop's start
        hop_start = t0 / 1000
        reused = info(pycurl.NUM_CONNECTS) == 0
        https = self.url[:6].lower() == "https:" and not reused
        connect_end = (t0 + info(pycurl.CONNECT_TIME_T)) / 1000
        lookup_end = (t0 + info(pycurl.NAMELOOKUP_TIME_T)) / 1000
        total = info(pycurl.TOTAL_TIME_T)
        # Each byte of the final hop's request once, head and body: a body re-sent after a
        # 307/308 counts once, like the other fields, which describe the final hop only.
        # libcurl's REQUEST_SIZE counts every byte it sends for the hop, head and body (8.23
        # here, checked by tests/test_wire_answers.py against what a server receives); older
        # libcurls counted only the first send (the head, with a small body in it), so a body
        # streamed after it (then larger than REQUEST_SIZE) is added.
        sent = info(pycurl.REQUEST_SIZE)
        body_sent = info(pycurl.SIZE_UPLOAD_T)
        if body_sent > sent:
            sent += body_sent
        received = info(pycurl.SIZE_DOWNLOAD_T) + info(pycurl.HEADER_SIZE)
        body = sent if self.api == "uploadFile" else received
        return {
            "redirectStart": start if self.redirects else 0,
            "redirectEnd": hop_start if self.redirects else 0,
            "fetchStart": start,
            "queueStart": self.queue_start / 1000,
            "queueEnd": start,
            "domainLookUpStart": hop_start,
            "domainLookUpEnd": lookup_end,
            "connectStart": lookup_end,
            "connectEnd": connect_end,
            "SSLconnectionStart": connect_end if https else 0,
            "SSLconnectionEnd": (t0 + info(pycurl.APPCONNECT_TIME_T)) / 1000 if https else 0,
            "requestStart": (t0 + info(pycurl.PRETRANSFER_TIME_T)) / 1000,
            "requestEnd": (t0 + info(pycurl.POSTTRANSFER_TIME_T)) / 1000,
            "responseStart": (t0 + info(pycurl.STARTTRANSFER_TIME_T)) / 1000,
            "responseEnd": (t0 + total) / 1000,
            "peerIP": info(pycurl.PRIMARY_IP) or "",
            "port": info(pycurl.PRIMARY_PORT) or 0,
            "socketReused": reused,
            "protocol": _PROTOCOLS.get(info(pycurl.INFO_HTTP_VERSION), "unknown"),
            "sendBytesCount": sent,
            "receivedBytedCount": received,
            # kbit/s = bytes * 8 / 1000 per second = bytes * 8000 / µs
            "throughputKbps": round(body * 8000 / (total or 1), 3),
        }


def _ignore(data: bytes) -> None:
    """A spare handle's callbacks: it runs no transfer."""


def _keep_checkpoint(checkpoint: str, record: dict[str, object]) -> None:
    """On the writer: keep a resumable upload's URL; an upload goes on without it."""
    try:
        save_upload_checkpoint(checkpoint, record)
    except OSError as exc:
        logger.warning("wxtransfer: cannot keep the upload URL in %s: %s", checkpoint, exc)
