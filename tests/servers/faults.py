"""A resource served over raw sockets that fails on purpose, request by request.

``Faulty(body, ...)`` is a :class:`~tests.servers.rawsock.RawServer` handler. It serves
``body`` with ``Range`` and ``If-Range`` as a careful server does (a 206 from the asked
offset when the validator matches, else the whole 200), and misbehaves as told:

- ``cut_after=K, cuts=M``: the first M responses stop after K body bytes (then close).
- ``statuses=[503, ...]``: the first requests get these statuses instead (with
  ``retry_after`` as their ``Retry-After`` when given).
- ``ignore_range``: answer every request with the whole 200.
- ``versions``: a new version of the body (and its ETag) for each request.
- ``etag`` / ``last_modified``: the validators it sends (``None``: none).
- ``bad_range``: answer a Range with a 206 that starts elsewhere.
- ``stall_first``: the first response sends its head and some bytes, then nothing.
- ``drip``: seconds between 16 KiB pieces of a body (a slow link).
- ``gate``: an Event the server waits for (10 s at most) before it answers the first
  request, so a test can add its listeners before anything happens.

A ``Range`` from the end of the body, with a matching ``If-Range``, gets a 416 with
``Content-Range: bytes */N``.

``.requests`` records each request's headers (lower-case names), in order, so tests can
assert what the client sent.
"""

from __future__ import annotations

import socket
import threading
import time

from tests.servers.rawsock import build_response, graceful_close, parse_head, wait_until_closed

__all__ = ["Faulty"]


class Faulty:
    def __init__(
        self,
        body: bytes,
        *,
        cut_after: int = 0,
        cuts: int = 0,
        statuses: list[int] | None = None,
        retry_after: str | None = None,
        ignore_range: bool = False,
        versions: bool = False,
        etag: str | None = '"v1"',
        last_modified: str | None = "Wed, 21 Oct 2026 07:28:00 GMT",
        bad_range: bool = False,
        stall_first: bool = False,
        drip: float = 0.0,
        gate: threading.Event | None = None,
    ) -> None:
        self.body = body
        self.cut_after = cut_after
        self.cuts = cuts
        self.statuses = list(statuses or [])
        self.retry_after = retry_after
        self.ignore_range = ignore_range
        self.versions = versions
        self.etag = etag
        self.last_modified = last_modified
        self.bad_range = bad_range
        self.stall_first = stall_first
        self.drip = drip
        self.gate = gate
        self.requests: list[dict[str, str]] = []
        self.sent = 0  # body bytes sent, in all
        self._lock = threading.Lock()

    def version(self, n: int) -> tuple[bytes, str | None]:
        """The body and ETag of request ``n`` (0-based)."""
        if not self.versions:
            return self.body, self.etag
        return bytes((b + n) % 256 for b in self.body), f'"v{n + 1}"'

    def __call__(self, sock: socket.socket, head: bytes) -> None:
        sock.settimeout(10)
        _, _, headers = parse_head(head)
        with self._lock:
            n = len(self.requests)
            self.requests.append({k.lower(): v for k, v in headers.items()})
            status_override = self.statuses.pop(0) if self.statuses else None
        if n == 0 and self.gate is not None:
            self.gate.wait(10)
        if status_override is not None:
            extra = {"Retry-After": self.retry_after} if self.retry_after else {}
            sock.sendall(build_response(status_override, b"busy", extra))
            graceful_close(sock)
            return
        body, etag = self.version(n)
        validators = []
        if etag is not None:
            validators.append(("ETag", etag))
        if self.last_modified is not None:
            validators.append(("Last-Modified", self.last_modified))
        status, payload, extra = 200, body, list(validators)
        asked = headers.get("range") or headers.get("Range")
        if_range = headers.get("if-range") or headers.get("If-Range")
        if asked and not self.ignore_range and asked.startswith("bytes=") and asked.endswith("-"):
            offset = int(asked[6:-1])
            matches = if_range is None or if_range in (etag, self.last_modified)
            if matches and offset < len(body):
                start = offset + 1 if self.bad_range else offset
                status, payload = 206, body[start:]
                extra.append(("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}"))
            elif matches and offset == len(body):
                status, payload = 416, b"nothing past the end"
                extra.append(("Content-Range", f"bytes */{len(body)}"))
        cut = self.cut_after if n < self.cuts else 0
        raw = build_response(status, b"", extra, content_length=len(payload))
        sock.sendall(raw)
        if self.stall_first and n == 0:
            sock.sendall(payload[:1000])
            wait_until_closed(sock)
            return
        out = payload[:cut] if cut else payload
        if self.drip:
            for i in range(0, len(out), 16384):
                try:
                    sock.sendall(out[i : i + 16384])
                except OSError:
                    return  # the client went away (an abort, a kill)
                with self._lock:
                    self.sent += len(out[i : i + 16384])
                time.sleep(self.drip)
        else:
            sock.sendall(out)
            with self._lock:
                self.sent += len(out)
        graceful_close(sock)
