"""Check cutserver.py against nginx: Range, If-Range and HEAD answers, then the cut itself.

    python benchmarks/cutserver_check.py

Serves one small random file from both servers (the cut server with no cut) and compares
status, ``Content-Range``, ``Content-Length``, ``ETag``, ``Last-Modified``, ``Accept-Ranges``
and body for each request; then checks, with a cut of 1 MiB, that a connection stops after
exactly that much body (also over two keep-alive responses) and that the log counts it.
Exit status 0 when everything matches, 1 otherwise, 2 when a server cannot start.
"""

from __future__ import annotations

import email.utils
import http.client
import os
import socket
import sys
import tempfile
from pathlib import Path

from cutserver import CutServer
from server import Nginx

MiB = 1 << 20
SIZE = 3 * MiB + 123
HEADERS = ("content-range", "content-length", "etag", "last-modified", "accept-ranges")


def fetch(port: int, headers: dict[str, str], method: str = "GET") -> tuple[int, dict, bytes]:
    """One request on a fresh connection: status, the headers compared, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, "/f.bin", headers=headers)
        r = conn.getresponse()
        body = r.read()
        head = {k: r.getheader(k) for k in HEADERS}
        if r.status >= 400:  # error pages differ (nginx: HTML), only their status matters
            head["content-length"], body = None, b""
        return r.status, head, body
    finally:
        conn.close()


def cases(etag: str, modified: str, mtime: float) -> list[tuple[str, dict[str, str], str]]:
    """(label, request headers, method); every one is answered alike by both servers."""
    earlier = email.utils.formatdate(mtime - 1, usegmt=True)
    ranges = [
        "bytes=0-99",
        "bytes=100-",
        "bytes=-100",
        f"bytes={SIZE - 1}-",
        f"bytes={SIZE}-",
        "bytes=5-2",
        "bytes=abc",
        "items=0-5",
        "bytes=-0",
        "bytes=0-999999999999",
        "bytes= 10 - 20",
        "bytes=5",
        f"bytes=-{SIZE + 10}",
        "BYTES=7-8",
    ]
    out = [
        ("no Range", {}, "GET"),
        ("HEAD", {}, "HEAD"),
        ("HEAD Range", {"Range": "bytes=1-"}, "HEAD"),
    ]
    out += [(f"Range: {r}", {"Range": r}, "GET") for r in ranges]
    for ir in (etag, '"other"', f"W/{etag}", modified, earlier, "garbage"):
        out.append((f"If-Range: {ir}", {"Range": "bytes=100-", "If-Range": ir}, "GET"))
    out.append(("If-Range without Range", {"If-Range": etag}, "GET"))
    return out


def read_until_eof(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes."""
    chunks = []
    while data := sock.recv(1 << 16):
        chunks.append(data)
    return b"".join(chunks)


def check_cut(cs: CutServer, src: bytes) -> list[str]:
    """The cut: 1 MiB of body per connection, then a FIN; two responses share the budget."""
    errors = []
    with socket.create_connection(("127.0.0.1", cs.port), timeout=10) as s:
        s.sendall(b"GET /f.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = read_until_eof(s)
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or body != src[:MiB]:
        errors.append(f"cut GET: {head[:40]!r}, {len(body)} body bytes, expected {MiB}")
    with socket.create_connection(("127.0.0.1", cs.port), timeout=10) as s:
        req = b"GET /f.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=%d-%d\r\n\r\n"
        s.sendall(req % (0, 600 * 1024 - 1) + req % (MiB, 2 * MiB - 1))
        raw = read_until_eof(s)
    parts = raw.split(b"\r\n\r\n")
    first = parts[1][: 600 * 1024] if len(parts) == 3 else b""
    second = parts[2] if len(parts) == 3 else b""
    if first != src[: 600 * 1024] or second != src[MiB : MiB + 424 * 1024]:
        errors.append(f"cut keep-alive: {len(first)} + {len(second)} bytes")
    recs = cs.new_records()
    want = [(200, MiB, True), (206, 600 * 1024, False), (206, 424 * 1024, True)]
    got = [(r["status"], r["sent"], r["cut"]) for r in recs]
    if got != want:
        errors.append(f"cut log {got}, expected {want}")
    return errors


def main() -> int:
    """Run the checks; see the module docstring."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "www"
        root.mkdir()
        src = os.urandom(SIZE)
        (root / "f.bin").write_bytes(src)
        ng = Nginx(work=Path(tmp) / "nginx", root=root)
        plain = CutServer(work=Path(tmp) / "plain", root=root, cut=0)
        cut = CutServer(work=Path(tmp) / "cut", root=root, cut=MiB)
        try:
            ng.start()
            plain.start()
            cut.start()
        except RuntimeError as e:
            print(e, file=sys.stderr)
            ng.stop()
            plain.stop()
            return 2
        errors: list[str] = []
        try:
            _, head, _ = fetch(ng.port, {}, "HEAD")
            mtime = (root / "f.bin").stat().st_mtime
            for label, hdrs, method in cases(head["etag"], head["last-modified"], mtime):
                a, b = fetch(ng.port, hdrs, method), fetch(plain.port, hdrs, method)
                same = a == b
                print(f"{'ok ' if same else 'BAD'} {label:44} nginx {a[0]} {a[1]['content-range']}")
                if not same:
                    errors.append(f"{label}: nginx {a[:2]}, cut server {b[:2]}")
            multi = fetch(plain.port, {"Range": "bytes=0-0,5-9"})
            ok = multi[0] == 200 and multi[2] == src  # nginx: 206 multipart/byteranges
            print(f"{'ok ' if ok else 'BAD'} {'Range: bytes=0-0,5-9 (the whole file)':44}")
            if not ok:
                errors.append(f"several ranges: {multi[:2]}")
            cut.new_records()
            cut_errors = check_cut(cut, src)
            print(
                f"{'BAD' if cut_errors else 'ok '} cut after 1 MiB (one response; two sharing it)"
            )
            errors += cut_errors
        finally:
            cut.stop()
            plain.stop()
            ng.stop()
    for e in errors:
        print("FAIL:", e)
    print("all match" if not errors else f"{len(errors)} failed")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
