"""httpx client: Client.stream + iter_bytes(1 MiB); AsyncClient + Semaphore(10) for S1/S2
(with ``--http2``: ``AsyncClient(http2=True)``, which needs the ``h2`` package; httpcore then
multiplexes the requests on one connection)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx

from clients._common import CHUNK, Args, Progress, check, check_file, check_upload, main

TIMEOUT = httpx.Timeout(None)  # no timeouts: the harness bounds the run


def _http2() -> bool:
    """httpx's HTTP/2 needs the h2 package (``pip install httpx[http2]``)."""
    try:
        import h2  # noqa: F401
    except ImportError:
        return False
    return True


def _verify(args: Args) -> ssl.SSLContext | bool:
    """The CA of an https:// server as an SSL context (httpx 0.28 wants no path)."""
    return ssl.create_default_context(cafile=args.ca_file) if args.ca_file else True


def download(args: Args, prog: Progress | None) -> int:
    """D1."""
    with (
        httpx.Client(timeout=TIMEOUT) as client,
        client.stream("GET", args.url) as r,
        open(args.target, "wb") as f,
    ):
        check(r.status_code == 200, f"status {r.status_code}")
        total = int(r.headers.get("Content-Length", 0))
        for chunk in r.iter_bytes(CHUNK):
            f.write(chunk)
            if prog:
                prog.update(r.num_bytes_downloaded / total if total else 0.0)
    check_file(args.target, args.size)
    return args.size


def upload(args: Args) -> int:
    """U1 (httpx has no upload-progress hook, so no P1 variant)."""
    with httpx.Client(timeout=TIMEOUT) as client, open(args.target, "rb") as f:
        files = {"file": (args.target.name, f, "application/octet-stream")}
        r = client.post(args.url, files=files, data={"user": "bench"})
    check_upload(r.status_code, r.content)
    return args.target.stat().st_size


async def many(args: Args) -> int:
    """S1/S2 on one AsyncClient, at most ``concurrency`` requests in flight."""
    sem = asyncio.Semaphore(args.concurrency)

    async def get(client: httpx.AsyncClient, url: str, out: Path) -> None:
        async with sem, client.stream("GET", url) as r:
            check(r.status_code == 200, f"status {r.status_code}")
            with open(out, "wb") as f:
                async for chunk in r.aiter_bytes(CHUNK):
                    f.write(chunk)
        check_file(out, args.size)

    async def post(client: httpx.AsyncClient, path: Path) -> None:
        async with sem:
            with open(path, "rb") as f:
                files = {"file": (path.name, f, "application/octet-stream")}
                r = await client.post(args.url, files=files, data={"user": "bench"})
        check_upload(r.status_code, r.content)

    async with httpx.AsyncClient(timeout=TIMEOUT, http2=args.http2, verify=_verify(args)) as client:
        if args.scenario == "S1":
            await asyncio.gather(*(get(client, u, o) for u, o in args.small_urls()))
            return args.count * args.size
        await asyncio.gather(*(post(client, p) for p in args.small_files()))
        return args.small_upload_bytes()


def run(args: Args, prog: Progress | None) -> int:
    """Dispatch on the scenario."""
    if args.scenario == "D1":
        return download(args, prog)
    if args.scenario == "U1":
        return upload(args)
    return asyncio.run(many(args))


if __name__ == "__main__":
    main(run, lambda: f"httpx {httpx.__version__}", frozenset({"D1"}), _http2)
