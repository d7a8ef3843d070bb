"""A static file server on 127.0.0.1 that cuts every connection after N bytes of body.

Scenario D2 runs it as a child process (``python cutserver.py ROOT --port P --cut BYTES
--log FILE``); ``CutServer`` starts and stops it by PID and reads its log.

It serves files under ROOT to GET and HEAD with ``os.sendfile`` (the kernel copies; the
interpreter only parses heads), one thread per connection, keep-alive. Ranges follow nginx's
range filter (``ngx_http_range_filter_module.c``):

- ``ETag`` is nginx's strong ``"<mtime hex>-<size hex>"``, ``Last-Modified`` the file's
  mtime; a 200 says ``Accept-Ranges: bytes``.
- ``Range`` is looked at only when it starts with ``bytes=``. With ``If-Range``, a value
  ending in ``"`` must equal the ETag byte for byte and any other must be an HTTP date equal
  to the mtime, else the Range is ignored (200, the whole file).
- One range (``a-b``, ``a-``, ``-n``) that overlaps the file: 206 with ``Content-Range:
  bytes a-b/size``. A malformed one, or none that overlaps: 416 with ``Content-Range:
  bytes */size``. Several ranges: the whole file, 200 (RFC 9110 lets a server ignore a
  Range; nginx would send multipart/byteranges, which no client here asks for).

The cut: a connection sends at most ``--cut`` bytes of body over all its responses. When a
response's body would go past that, the first bytes up to the limit are sent and the
connection is closed (FIN after the bytes, as a server that dies or a proxy that times out),
so the client sees a body shorter than its ``Content-Length``. A connection whose limit is
reached exactly at the end of a response is closed after it. ``--cut 0``: no cut.

Every response is logged as one JSON line once it ends: method, path, status, the Range and
If-Range asked, the body bytes announced and the body bytes sent, and whether it was cut.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server import free_port, stop_group, wait_listening

SENDFILE_MAX = 1 << 30  # bytes per sendfile call (the kernel caps one call near 2 GiB)


# ---------------------------------------------------------------- ranges, as nginx


def etag_of(st: os.stat_result) -> str:
    """nginx's strong ETag: ``"<mtime hex>-<size hex>"``."""
    return f'"{int(st.st_mtime):x}-{st.st_size:x}"'


def if_range_ok(if_range: str | None, etag: str, mtime: int) -> bool:
    """Whether a Range may be honoured: no If-Range, or one naming this version."""
    if if_range is None:
        return True
    if len(if_range) >= 2 and if_range.endswith('"'):
        return if_range == etag
    try:
        when = email.utils.parsedate_to_datetime(if_range)
    except (TypeError, ValueError, IndexError):
        return False
    return int(when.timestamp()) == mtime


def parse_range(value: str, size: int) -> tuple[int, int] | str:
    """One Range header against a file of ``size`` bytes, as nginx parses it.

    Returns ``(first, last)`` inclusive for one satisfiable range, ``"whole"`` when the
    whole file is sent instead (several ranges, or one nginx declines), ``"416"`` when
    the range is malformed or none overlaps the file.
    """
    spec = value[6:]
    ranges: list[tuple[int, int]] = []
    for part in spec.split(","):
        part = part.strip(" ")
        first_s, dash, last_s = part.partition("-")
        first_s, last_s = first_s.strip(" "), last_s.strip(" ")
        if not dash or (first_s and not first_s.isdigit()) or (last_s and not last_s.isdigit()):
            return "416"
        if not first_s and not last_s:
            return "416"
        if not first_s:  # suffix: the last n bytes
            n = int(last_s)
            start, end = (size - n if n < size else 0), size
        else:
            start = int(first_s)
            end = size if not last_s else min(int(last_s) + 1, size)
        if start < end:
            ranges.append((start, end - 1))
        elif start == 0:  # an empty file: nginx declines the Range
            return "whole"
    if not ranges:
        return "416"
    if len(ranges) > 1:
        return "whole"
    return ranges[0]


# ---------------------------------------------------------------- the server (child)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, addr: tuple[str, int], root: Path, cut: int, log: Path) -> None:
        super().__init__(addr, _Handler)
        self.root = root.resolve()
        self.cut = cut
        self.log_file = open(log, "a", buffering=1)
        self.log_lock = threading.Lock()

    def log_record(self, rec: dict[str, Any]) -> None:
        line = json.dumps(rec, separators=(",", ":"))
        with self.log_lock:
            self.log_file.write(line + "\n")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.budget = self.server.cut or -1  # body bytes this connection may still send

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the JSON log says it all

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _plain(self, status: int, extra: list[tuple[str, str]] | None = None) -> None:
        body = f"{status}\n".encode()
        self.send_response(status)
        for k, v in extra or []:
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        sent = 0
        if self.command != "HEAD":
            self.wfile.write(body)
            sent = len(body)
        self._log(status, len(body), sent, cut=False)

    def _log(self, status: int, announced: int, sent: int, *, cut: bool) -> None:
        self.server.log_record(
            {
                "t": time.time(),
                "method": self.command,
                "path": self.path,
                "status": status,
                "range": self.headers.get("Range"),
                "if_range": self.headers.get("If-Range"),
                "announced": announced,
                "sent": sent,
                "cut": cut,
            }
        )

    def _serve(self, *, head: bool) -> None:
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        path = (self.server.root / rel).resolve()
        if not path.is_relative_to(self.server.root) or not path.is_file():
            self._plain(404)
            return
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            size, mtime = st.st_size, int(st.st_mtime)
            etag = etag_of(st)
            headers = [
                ("Content-Type", "application/octet-stream"),
                ("Last-Modified", email.utils.formatdate(mtime, usegmt=True)),
                ("ETag", etag),
            ]
            status, first, last = 200, 0, size - 1
            rng = self.headers.get("Range")
            if (
                rng is not None
                and len(rng) >= 7
                and rng[:6].lower() == "bytes="
                and if_range_ok(self.headers.get("If-Range"), etag, mtime)
            ):
                got = parse_range(rng, size)
                if got == "416":
                    self._plain(416, [("Content-Range", f"bytes */{size}")])
                    return
                if isinstance(got, tuple):
                    status, (first, last) = 206, got
                    headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
            if status == 200:
                headers.append(("Accept-Ranges", "bytes"))
            length = last - first + 1
            if not head:  # full segments, as nginx's tcp_nopush: some 40 % faster here
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if head:
                self._log(status, length, 0, cut=False)
                return
            allowed = length if self.budget < 0 else min(length, self.budget)
            sent = self._sendfile(f.fileno(), first, allowed)
        with contextlib.suppress(OSError):  # uncorked: the last partial segment goes now
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        if self.budget >= 0:
            self.budget -= sent
            if self.budget <= 0:
                self.close_connection = True  # cut mid-body, or closed after a full one
        cut = sent < length
        if cut:
            self.close_connection = True
        self._log(status, length, sent, cut=cut)

    def _sendfile(self, fd: int, offset: int, count: int) -> int:
        out = self.connection.fileno()
        sent = 0
        try:
            while sent < count:
                n = os.sendfile(out, fd, offset + sent, min(count - sent, SENDFILE_MAX))
                if n == 0:
                    break
                sent += n
        except OSError:  # the client went away
            self.close_connection = True
        return sent


def serve(root: Path, port: int, cut: int, log: Path) -> None:
    """Run the server until SIGTERM or SIGINT."""
    srv = _Server(("127.0.0.1", port), root, cut, log)

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        srv.serve_forever(poll_interval=0.1)
    finally:
        srv.server_close()
        srv.log_file.close()


# ---------------------------------------------------------------- the controller (harness)


@dataclass
class CutServer:
    """Starts and stops the cutting server as a child process; reads its log."""

    work: Path
    root: Path
    cut: int
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _log_offset: int = field(default=0, repr=False)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        """Path of the JSON-lines log."""
        return self.work / "cutserver.log"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server on a free port and wait until it accepts connections."""
        self.work.mkdir(parents=True, exist_ok=True)
        last_err = ""
        for _ in range(5):
            self.port = free_port()
            self.log.write_bytes(b"")
            self._log_offset = 0
            err = open(self.work / "cutserver.stderr", "wb")
            argv = [sys.executable, str(Path(__file__).resolve()), str(self.root)]
            argv += ["--port", str(self.port), "--cut", str(self.cut), "--log", str(self.log)]
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
            )
            err.close()
            if wait_listening(self.proc, (self.port,), timeout):
                return
            last_err = (self.work / "cutserver.stderr").read_text(errors="replace")
            self.stop()
        raise RuntimeError(f"cut server did not start: {last_err}")

    def stop(self) -> None:
        """Stop the server we started (SIGTERM to its PID, then SIGKILL to its group)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_group(proc, signal.SIGTERM)

    def __enter__(self) -> CutServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def new_records(self) -> list[dict[str, Any]]:
        """Log records written since the previous call."""
        with open(self.log, "rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._log_offset += end
        return [json.loads(line) for line in data[:end].splitlines()]


def main() -> None:
    """Command line of the child process."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("root", type=Path, help="folder served")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cut", type=int, default=0, help="body bytes per connection (0: no cut)")
    p.add_argument("--log", type=Path, required=True, help="JSON-lines log, appended")
    ns = p.parse_args()
    serve(ns.root, ns.port, ns.cut, ns.log)


if __name__ == "__main__":
    main()
