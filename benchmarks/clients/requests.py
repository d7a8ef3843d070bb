"""requests client: streaming iter_content(1 MiB), requests-toolbelt MultipartEncoder uploads,
a shared Session with a ThreadPoolExecutor(10) for S1/S2."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import requests_toolbelt
from requests_toolbelt import MultipartEncoder, MultipartEncoderMonitor

from clients._common import CHUNK, Args, Progress, check, check_file, check_upload, main


def _get(s: requests.Session, url: str, out: Path, size: int, prog: Progress | None) -> None:
    with s.get(url, stream=True) as r:
        check(r.status_code == 200, f"status {r.status_code}")
        total = int(r.headers.get("Content-Length", 0))
        done = 0
        with open(out, "wb") as f:
            for chunk in r.iter_content(CHUNK):
                f.write(chunk)
                if prog:
                    done += len(chunk)
                    prog.update(done / total if total else 0.0)
    check_file(out, size)


def _post(s: requests.Session, url: str, path: Path, prog: Progress | None) -> None:
    with open(path, "rb") as f:
        enc = MultipartEncoder(
            fields={"file": (path.name, f, "application/octet-stream"), "user": "bench"}
        )
        body: MultipartEncoder | MultipartEncoderMonitor = enc
        if prog:
            p = prog
            body = MultipartEncoderMonitor(enc, lambda m: p.update(m.bytes_read / m.len))
        r = s.post(url, data=body, headers={"Content-Type": body.content_type})
    check_upload(r.status_code, r.content)


def run(args: Args, prog: Progress | None) -> int:
    """Dispatch on the scenario."""
    with requests.Session() as s:
        if args.scenario == "D1":
            _get(s, args.url, args.target, args.size, prog)
            return args.size
        if args.scenario == "U1":
            _post(s, args.url, args.target, prog)
            return args.target.stat().st_size
        with ThreadPoolExecutor(args.concurrency) as pool:
            if args.scenario == "S1":
                futs = [pool.submit(_get, s, u, o, args.size, None) for u, o in args.small_urls()]
            else:
                futs = [pool.submit(_post, s, args.url, p, None) for p in args.small_files()]
            for fut in futs:
                fut.result()
        if args.scenario == "S1":
            return args.count * args.size
        return args.small_upload_bytes()


if __name__ == "__main__":
    main(
        run,
        lambda: (
            f"requests {requests.__version__}, requests-toolbelt {requests_toolbelt.__version__}"
        ),
        frozenset({"D1", "U1"}),
    )
