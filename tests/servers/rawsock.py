"""A raw-socket HTTP-ish server for byte-exact faults.

``RawServer(handler)`` listens on ``127.0.0.1:<free port>``; for every accepted connection
it reads the request head (up to and including ``\\r\\n\\r\\n``, nothing more: the body, if
any, stays in the socket) and calls ``handler(sock, head)`` in a daemon thread. The socket
is closed after the handler returns (if the handler did not close it already).

``.connections`` counts accepted connections (0 means no request was ever sent),
``.requests`` holds the heads received, ``.errors`` exceptions raised by handlers
(``OSError`` from a vanished client is ignored).

Ready handlers: :func:`respond`, :func:`reset`, :func:`close_after_headers`, :func:`hang`,
:func:`read_body_then`. Helpers for custom handlers: :func:`read_body`,
:func:`read_exact`, :func:`graceful_close`, :func:`rst_close`, :func:`build_response`.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Literal

Handler = Callable[[socket.socket, bytes], None]
Then = Literal["close", "reset", "hang"]

_HEAD_LIMIT = 256 * 1024


# --------------------------------------------------------------------------- socket helpers


def read_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly ``n`` bytes; raise ``ConnectionError`` on EOF before that."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1024 * 1024))
        if not chunk:
            raise ConnectionError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_head(sock: socket.socket) -> bytes | None:
    """Read the request head up to and including ``\\r\\n\\r\\n`` and not one byte more.

    Returns ``None`` if the peer closes before a complete head arrives.
    """
    buf = bytearray()
    while True:
        peek = sock.recv(65536, socket.MSG_PEEK)
        if not peek:
            return None
        keep = min(len(buf), 3)  # the terminator may straddle the boundary
        idx = (bytes(buf[len(buf) - keep :]) + peek).find(b"\r\n\r\n")
        if idx >= 0:
            buf += read_exact(sock, idx + 4 - keep)
            return bytes(buf)
        buf += read_exact(sock, len(peek))
        if len(buf) > _HEAD_LIMIT:
            raise ValueError("request head too large")


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """``(method, target, headers)``; header names lower-cased, repeats joined by ", "."""
    lines = head.decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    target = rest.rpartition(" ")[0] or rest
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return method, target, headers


def _read_line(sock: socket.socket, limit: int = 8192) -> bytes:
    buf = bytearray()
    while not buf.endswith(b"\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise ConnectionError("EOF inside a chunked body")
        buf += byte
        if len(buf) > limit:
            raise ValueError("line too long")
    return bytes(buf[:-2])


def read_body(sock: socket.socket, head: bytes, *, send_continue: bool = True) -> bytes:
    """Read the request body announced by ``head`` (Content-Length or chunked).

    With ``Expect: 100-continue`` in the head, first sends ``HTTP/1.1 100 Continue``
    (unless ``send_continue`` is false).
    """
    _, _, headers = parse_head(head)
    if send_continue and headers.get("expect", "").lower() == "100-continue":
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size = int(_read_line(sock).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while _read_line(sock):  # trailers
                    pass
                return bytes(body)
            body += read_exact(sock, size)
            if read_exact(sock, 2) != b"\r\n":
                raise ValueError("bad chunk terminator")
    length = int(headers.get("content-length", "0") or 0)
    return read_exact(sock, length)


def graceful_close(sock: socket.socket, linger: float = 1.0) -> None:
    """FIN, then discard what the peer still sends (at most ``linger`` s), then close.

    Avoids the kernel answering unread request bytes with an RST that could destroy the
    response before the client reads it.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + linger
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(65536):
                break
    except OSError:
        pass
    finally:
        sock.close()


def rst_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


def wait_until_closed(sock: socket.socket) -> None:
    """Block until the peer closes or the server stops (it shuts the socket down)."""
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def _finish(sock: socket.socket, then: Then) -> None:
    if then == "reset":
        rst_close(sock)
    elif then == "hang":
        wait_until_closed(sock)
    else:
        graceful_close(sock)


def build_response(
    status: int = 200,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] | dict[str, str] = (),
    *,
    reason: str = "",
    content_length: int | Literal["auto"] | None = "auto",
) -> bytes:
    """Serialize an HTTP/1.1 response; ``content_length=None`` omits the header."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    lines = [f"HTTP/1.1 {status} {reason or _REASONS.get(status, 'Whatever')}"]
    if content_length == "auto":
        content_length = len(body)
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    lines += [f"{k}: {v}" for k, v in items]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_REASONS = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# --------------------------------------------------------------------------- ready handlers


def respond(raw: bytes, *, then: Then = "close") -> Handler:
    """Send ``raw`` verbatim (without reading any body), then close gracefully.

    ``then="reset"`` ends with an RST instead, ``then="hang"`` keeps the socket open
    until the client closes or the server stops.
    """

    def handler(sock: socket.socket, head: bytes) -> None:
        sock.sendall(raw)
        _finish(sock, then)

    return handler


def close_after_headers(headers: bytes) -> Handler:
    """Send ``headers`` (a full head ending in ``\\r\\n\\r\\n``, e.g. announcing a
    Content-Length) and close the connection without any body."""
    return respond(headers)


def reset() -> Handler:
    """Reset the connection (RST via SO_LINGER 0) right after the request head."""

    def handler(sock: socket.socket, head: bytes) -> None:
        rst_close(sock)

    return handler


def hang() -> Handler:
    """Never answer; keep the socket open until the client closes or the server stops."""

    def handler(sock: socket.socket, head: bytes) -> None:
        wait_until_closed(sock)

    return handler


class ReadBodyThen:
    """Handler: read the whole request body (answering ``Expect: 100-continue``), record
    it in ``.bodies``, then send ``raw`` and close (see :func:`respond` for ``then``)."""

    def __init__(self, raw: bytes, *, then: Then = "close", send_continue: bool = True):
        self.raw = raw
        self.then: Then = then
        self.send_continue = send_continue
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()

    def __call__(self, sock: socket.socket, head: bytes) -> None:
        body = read_body(sock, head, send_continue=self.send_continue)
        with self._lock:
            self.bodies.append(body)
        sock.sendall(self.raw)
        _finish(sock, self.then)


def read_body_then(raw: bytes, *, then: Then = "close", send_continue: bool = True) -> ReadBodyThen:
    return ReadBodyThen(raw, then=then, send_continue=send_continue)


# --------------------------------------------------------------------------- server


class RawServer:
    """``with RawServer(respond(build_response(200, b"hi"))) as srv: ... srv.url``."""

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.host = host
        self.port = 0
        self.connections = 0
        self.requests: list[bytes] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._socks: set[socket.socket] = set()

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> RawServer:
        if self._listener is not None:
            raise RuntimeError("already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, 0))
            listener.listen(64)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"rawsock-{self.port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop accepting, shut every open connection down, join threads (≤ ``timeout``)."""
        if self._listener is None or self._stopping.is_set():
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
            threads = list(self._threads)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def wait_for_connections(self, n: int = 1, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connections >= n:
                return True
            time.sleep(0.01)
        return self.connections >= n

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([listener], [], [], 0.05)
                if not ready:
                    continue
                conn, _ = listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            conn.setblocking(True)
            thread = threading.Thread(
                target=self._serve, args=(conn,), name=f"rawsock-{self.port}-conn", daemon=True
            )
            with self._lock:
                if self._stopping.is_set():
                    conn.close()
                    return
                self.connections += 1
                self._socks.add(conn)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            head = read_head(conn)
            if head is None:
                return
            with self._lock:
                self.requests.append(head)
            self.handler(conn, head)
        except OSError:  # client went away, or the server is stopping
            pass
        except BaseException as exc:
            with self._lock:
                self.errors.append(exc)
        finally:
            with self._lock:
                self._socks.discard(conn)
            conn.close()


__all__ = [
    "Handler",
    "RawServer",
    "ReadBodyThen",
    "build_response",
    "close_after_headers",
    "graceful_close",
    "hang",
    "parse_head",
    "read_body",
    "read_body_then",
    "read_exact",
    "read_head",
    "reset",
    "respond",
    "rst_close",
]
