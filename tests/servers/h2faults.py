"""An HTTP/2 server over TLS (ALPN ``h2``) on 127.0.0.1 that resets streams on purpose.

Built on the ``h2`` protocol library, so each frame is the one the test asks for: the first
``resets`` requests get their headers and ``cut_after`` bytes of the body, then
``RST_STREAM(INTERNAL_ERROR)`` — libcurl's ``CURLE_HTTP2_STREAM`` (92), an HTTP/2 stream
error. Later requests get the body, honouring ``Range: bytes=N-`` with ``If-Range`` (206 with
``Content-Range``). ``.requests`` records each request's headers (lower-case names).

One thread per connection, every socket with a timeout; :meth:`stop` ends them all.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from types import TracebackType

import h2.config
import h2.connection
import h2.errors
import h2.events

from tests.servers.tls import loopback_pems

__all__ = ["H2ResetServer"]

_ETAG = '"h2-v1"'


class H2ResetServer:
    def __init__(self, folder: Path, body: bytes, *, cut_after: int, resets: int) -> None:
        self.body = body
        self.cut_after = cut_after
        self.resets = resets
        self.requests: list[dict[str, str]] = []
        self.protocols: list[str | None] = []  # the ALPN choice of each connection
        self.ca_file, cert_file, key_file = loopback_pems(folder, "h2-")
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert_file, key_file)
        self._context.set_alpn_protocols(["h2"])
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(5)
        try:
            sock = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with sock:
            with self._lock:
                self.protocols.append(sock.selected_alpn_protocol())
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            pending: dict[int, tuple[bytes, bool]] = {}  # stream -> (body left, reset at end)
            while not self._stopped.is_set():
                try:
                    data = sock.recv(65536)
                except (OSError, ssl.SSLError):
                    return
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        pending[event.stream_id] = self._answer(conn, event)
                    elif isinstance(event, h2.events.StreamReset):
                        pending.pop(event.stream_id, None)
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        return
                self._pump(conn, pending)
                try:
                    sock.sendall(conn.data_to_send())
                except (OSError, ssl.SSLError):
                    return

    def _answer(
        self, conn: h2.connection.H2Connection, event: h2.events.RequestReceived
    ) -> tuple[bytes, bool]:
        """Send the head; the body to send and whether the stream is reset after it."""
        headers = {
            (k.decode() if isinstance(k, bytes) else k).lower(): (
                v.decode() if isinstance(v, bytes) else v
            )
            for k, v in event.headers or []
        }
        with self._lock:
            n = len(self.requests)
            self.requests.append(headers)
        stream = event.stream_id
        body, status = self.body, 200
        extra = [("etag", _ETAG)]
        asked = headers.get("range", "")
        if asked.startswith("bytes=") and asked.endswith("-") and headers.get("if-range") == _ETAG:
            start = int(asked[6:-1])
            body, status = self.body[start:], 206
            extra.append(("content-range", f"bytes {start}-{len(self.body) - 1}/{len(self.body)}"))
        conn.send_headers(
            stream,
            [(":status", str(status)), ("content-length", str(len(body))), *extra],
        )
        if n < self.resets:
            return body[: self.cut_after], True
        return body, False

    @staticmethod
    def _pump(conn: h2.connection.H2Connection, pending: dict[int, tuple[bytes, bool]]) -> None:
        """Send what the flow-control windows allow; end or reset the streams sent whole."""
        for stream, (left, reset) in list(pending.items()):
            while left:
                size = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
                if size <= 0:
                    break
                conn.send_data(stream, left[:size])
                left = left[size:]
            if left:
                pending[stream] = (left, reset)
                continue
            del pending[stream]
            if reset:
                conn.reset_stream(stream, h2.errors.ErrorCodes.INTERNAL_ERROR)
            else:
                conn.end_stream(stream)

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> H2ResetServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
