"""Argument parsing, timing and result reporting shared by the Python clients.

Every client is run as ``python -m clients.<tool> SCENARIO URL TARGET [options]`` with
``benchmarks/`` as the working directory (so ``clients/pycurl.py`` cannot shadow ``pycurl``):

* ``D1 URL FILE``: download URL to FILE (``--size`` bytes expected).
* ``U1 URL FILE``: multipart upload of FILE (field ``file``) plus ``user=bench`` to URL.
* ``S1 BASE DIR``: download BASE + NAME to DIR/NAME for ``--count`` small files, 10 in flight.
* ``S2 URL DIR``: upload DIR/NAME for ``--count`` small files to URL, 10 in flight.
* ``D2 URL FILE``: download URL to FILE through a server that cuts every connection after
  some bytes of body: up to 10 retries, each continuing the bytes held (``--size`` bytes).
* ``U2 URL FILE``: resumable (tus 1.0) upload of FILE to the creation endpoint URL, through a
  proxy that cuts every connection after some bytes: up to 10 retries, each continuing from
  the server's offset; ``--chunk`` bytes per PATCH where the client is told a chunk size.

S1 and S2 also run over HTTP/2 with TLS (S3) and through a delaying proxy (S4): ``--http2``
asks for HTTP/2 (offered by ALPN; transfers to one origin multiplexed on one connection
where the tool can) and ``--ca-file`` names the CA (PEM) that signed the server's
certificate. The harness gives ``--http2`` only to a tool whose probe said ``"http2": true``.

``--progress`` attaches a progress listener (D1/U1 only). On success the client prints one JSON
line with the wall and CPU time of the transfer phase only (imports and interpreter start-up
excluded) and exits 0; on any failure it exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20  # 1 MiB reads/writes where the tool lets us choose
D2_RETRIES = 10  # D2: retries after the first attempt, for every tool
U2_RETRIES = 10  # U2: the same
EXPECTED_UPLOAD_BODY = b"ok\n"  # what the nginx /upload endpoint answers


def small_name(i: int) -> str:
    """File name of the i-th small file."""
    return f"{i:04d}.bin"


@dataclass
class Args:
    """Parsed command line of a client."""

    scenario: str
    url: str
    target: Path
    count: int
    size: int
    progress: bool
    concurrency: int
    chunk: int = 0  # U2: bytes per PATCH for a client that is told one (0: not told)
    http2: bool = False  # S3/S4-h2: HTTP/2 over TLS, multiplexed where the tool can
    ca_file: str = ""  # the CA (PEM) of an https:// server

    def small_urls(self) -> list[tuple[str, Path]]:
        """(URL, output path) pairs for S1."""
        return [(self.url + small_name(i), self.target / small_name(i)) for i in range(self.count)]

    def small_files(self) -> list[Path]:
        """Source paths for S2."""
        return [self.target / small_name(i) for i in range(self.count)]

    def small_upload_bytes(self) -> int:
        """Bytes of file S2 sends: the small files all have one size, so one stat() tells
        (a stat per file would time the file system, not the tool)."""
        return self.count * (self.target / small_name(0)).stat().st_size


@dataclass
class Progress:
    """A minimal progress listener: counts calls and keeps the last value."""

    calls: int = 0
    last: float | None = None

    def update(self, value: float) -> None:
        """Record one progress event."""
        self.calls += 1
        self.last = value


class Failure(Exception):
    """A transfer finished but its result is wrong."""


def check(cond: bool, msg: str) -> None:
    """Raise Failure(msg) unless cond."""
    if not cond:
        raise Failure(msg)


def check_file(path: Path, size: int) -> None:
    """Raise unless path exists with the given size."""
    got = path.stat().st_size if path.exists() else -1
    check(got == size, f"{path}: {got} bytes, expected {size}")


def check_upload(status: int, body: bytes | str | None) -> None:
    """Raise unless an upload got 200 and nginx's ``ok``."""
    if isinstance(body, str):
        body = body.encode()
    check(status == 200, f"upload status {status}")
    check(body == EXPECTED_UPLOAD_BODY, f"upload response body {body!r}")


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


Runner = Callable[[Args, Progress | None], int]


def main(
    run: Runner,
    version: Callable[[], str],
    progress: frozenset[str],
    http2: Callable[[], bool] = lambda: False,
) -> None:
    """Parse argv, run one scenario, print the JSON result; ``--probe`` prints capabilities
    (``http2``: whether the tool can do HTTP/2 here)."""
    p = argparse.ArgumentParser()
    p.add_argument("--probe", action="store_true", help="print version/capabilities and exit")
    p.add_argument("scenario", nargs="?", choices=["D1", "U1", "S1", "S2", "D2", "U2"])
    p.add_argument("url", nargs="?")
    p.add_argument("target", nargs="?", type=Path)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--size", type=int, default=-1, help="expected size of each download")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--chunk", type=int, default=0, help="U2: bytes per PATCH (0: not told)")
    p.add_argument("--http2", action="store_true", help="HTTP/2 over TLS (S1/S2)")
    p.add_argument("--ca-file", default="", help="CA (PEM) of an https:// server")
    ns = p.parse_args()
    if ns.probe:
        caps = {"version": version(), "progress": sorted(progress), "http2": http2()}
        print(json.dumps(caps))
        return
    if ns.scenario is None or ns.url is None or ns.target is None:
        p.error("scenario, url and target are required")
    args = Args(
        ns.scenario,
        ns.url,
        ns.target,
        ns.count,
        ns.size,
        ns.progress,
        ns.concurrency,
        ns.chunk,
        ns.http2,
        ns.ca_file,
    )
    if args.http2 and not http2():
        print("HTTP/2 not supported by this tool here", file=sys.stderr)
        sys.exit(3)
    if args.progress and args.scenario not in progress:
        print(f"progress not supported for {args.scenario}", file=sys.stderr)
        sys.exit(3)
    prog = Progress() if args.progress else None
    t0, c0 = time.perf_counter(), _cpu()
    try:
        nbytes = run(args, prog)
    except Exception as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    out = {
        "wall": wall,
        "cpu": cpu,
        "bytes": nbytes,
        "progress_calls": prog.calls if prog else None,
        "progress_last": prog.last if prog else None,
    }
    print(json.dumps(out))
