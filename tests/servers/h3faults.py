"""An HTTP/3 server (QUIC on UDP, ALPN ``h3``) on 127.0.0.1 that resets streams on purpose.

Built on ``aioquic``, so each frame is the one the test asks for: the first ``resets``
requests get their headers and ``cut_after`` bytes of the body, then, once those bytes have
left, ``RESET_STREAM(H3_INTERNAL_ERROR)`` — an HTTP/3 stream error for libcurl. Later
requests get the body, honouring ``Range: bytes=N-`` with ``If-Range`` (206 with
``Content-Range``). ``.requests`` records each request's headers (lower-case names).

One thread runs its own asyncio loop with the UDP endpoint; :meth:`stop` closes the
connections and the socket, then ends the loop and joins the thread.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated, QuicEvent

from tests.servers.tls import loopback_pems

__all__ = ["H3ResetServer"]

_ETAG = '"h3-v1"'


class _Protocol(QuicConnectionProtocol):
    """One QUIC connection: HTTP/3 requests answered by :meth:`H3ResetServer._answer`."""

    def __init__(self, *args: Any, server: H3ResetServer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._server = server
        self._h3: H3Connection | None = None
        self._to_reset: set[int] = set()  # streams reset once their body has left

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated):
            self._server.note_protocol(event.alpn_protocol)
            self._h3 = H3Connection(self._quic)
        if self._h3 is None:
            return
        for h3_event in self._h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived) and self._server.answer(self._h3, h3_event):
                self._to_reset.add(h3_event.stream_id)

    def transmit(self) -> None:
        """Send; then reset the streams whose cut body has all been sent, and send that.

        aioquic drops a stream's unsent data when it resets it, so the reset waits until
        the sender has no byte left to send (``_streams``: aioquic has no public view).
        """
        super().transmit()
        ready = []
        for stream_id in self._to_reset:
            stream = self._quic._streams.get(stream_id)
            if stream is None or stream.sender.buffer_is_empty:
                ready.append(stream_id)
        if ready:
            for stream_id in ready:
                self._to_reset.discard(stream_id)
                self._quic.reset_stream(stream_id, ErrorCode.H3_INTERNAL_ERROR)
            super().transmit()


class H3ResetServer:
    def __init__(self, folder: Path, body: bytes, *, cut_after: int, resets: int) -> None:
        self.body = body
        self.cut_after = cut_after
        self.resets = resets
        self.requests: list[dict[str, str]] = []
        self.protocols: list[str | None] = []  # the ALPN choice of each connection
        self.ca_file, cert_file, key_file = loopback_pems(folder, "h3-")
        self._config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
        self._config.load_cert_chain(cert_file, key_file)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._done: asyncio.Event | None = None
        self._failed: BaseException | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._failed is not None:
            self.stop()
            raise RuntimeError(f"the HTTP/3 server did not start: {self._failed!r}")
        self.url = f"https://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._done = asyncio.Event()
        try:
            server: QuicServer = await serve(
                "127.0.0.1",
                0,
                configuration=self._config,
                create_protocol=lambda *a, **k: _Protocol(*a, server=self, **k),
            )
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            raise
        assert server._transport is not None
        self.port = server._transport.get_extra_info("sockname")[1]
        self._ready.set()
        try:
            await self._done.wait()
        finally:
            server.close()  # CONNECTION_CLOSE to each client, then the socket
            await asyncio.sleep(0)  # let the transport finish closing

    def note_protocol(self, alpn: str | None) -> None:
        with self._lock:
            self.protocols.append(alpn)

    def answer(self, h3: H3Connection, event: HeadersReceived) -> bool:
        """Send the head and the body (or its cut); whether the stream is to be reset."""
        headers = {k.decode().lower(): v.decode() for k, v in event.headers}
        with self._lock:
            n = len(self.requests)
            self.requests.append(headers)
        body, status = self.body, 200
        extra = [(b"etag", _ETAG.encode())]
        asked = headers.get("range", "")
        if asked.startswith("bytes=") and asked.endswith("-") and headers.get("if-range") == _ETAG:
            start = int(asked[6:-1])
            body, status = self.body[start:], 206
            size = len(self.body)
            extra.append((b"content-range", f"bytes {start}-{size - 1}/{size}".encode()))
        h3.send_headers(
            event.stream_id,
            [(b":status", str(status).encode()), (b"content-length", b"%d" % len(body)), *extra],
        )
        if n < self.resets:
            h3.send_data(event.stream_id, body[: self.cut_after], end_stream=False)
            return True
        h3.send_data(event.stream_id, body, end_stream=True)
        return False

    def stop(self) -> None:
        done = self._done
        if done is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(done.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        self._thread.join(10)

    def __enter__(self) -> H3ResetServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
