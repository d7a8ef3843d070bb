"""aiohttp client: iter_chunked(1 MiB), FormData with an open file; Semaphore(10) for S1/S2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from clients._common import CHUNK, Args, Progress, check, check_file, check_upload, main

TIMEOUT = aiohttp.ClientTimeout(total=None)  # the harness bounds the run


async def _get(
    s: aiohttp.ClientSession, url: str, out: Path, size: int, prog: Progress | None
) -> None:
    async with s.get(url) as r:
        check(r.status == 200, f"status {r.status}")
        total = r.content_length or 0
        done = 0
        with open(out, "wb") as f:
            async for chunk in r.content.iter_chunked(CHUNK):
                f.write(chunk)
                if prog:
                    done += len(chunk)
                    prog.update(done / total if total else 0.0)
    check_file(out, size)


async def _post(s: aiohttp.ClientSession, url: str, path: Path) -> None:
    with open(path, "rb") as f:
        form = aiohttp.FormData()
        form.add_field("file", f, filename=path.name, content_type="application/octet-stream")
        form.add_field("user", "bench")
        async with s.post(url, data=form) as r:
            body = await r.read()
            check_upload(r.status, body)


async def arun(args: Args, prog: Progress | None) -> int:
    """All scenarios on one ClientSession."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        if args.scenario == "D1":
            await _get(s, args.url, args.target, args.size, prog)
            return args.size
        if args.scenario == "U1":
            await _post(s, args.url, args.target)
            return args.target.stat().st_size
        sem = asyncio.Semaphore(args.concurrency)

        async def get(url: str, out: Path) -> None:
            async with sem:
                await _get(s, url, out, args.size, None)

        async def post(path: Path) -> None:
            async with sem:
                await _post(s, args.url, path)

        if args.scenario == "S1":
            await asyncio.gather(*(get(u, o) for u, o in args.small_urls()))
            return args.count * args.size
        await asyncio.gather(*(post(p) for p in args.small_files()))
        return args.small_upload_bytes()


def run(args: Args, prog: Progress | None) -> int:
    """Dispatch on the scenario."""
    return asyncio.run(arun(args, prog))


if __name__ == "__main__":
    main(run, lambda: f"aiohttp {aiohttp.__version__}", frozenset({"D1"}))
