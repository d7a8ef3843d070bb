"""wxtransfer client, through its public API only (download_file / upload_file /
upload_resumable / Runtime)."""

from __future__ import annotations

import contextlib
from typing import Any

import pycurl

import wxtransfer
from clients._common import (
    D2_RETRIES,
    U2_RETRIES,
    Args,
    Progress,
    check,
    check_file,
    check_upload,
    main,
)

# Fail the probe (so the harness reports the tool as skipped) until the API exists.
_API = (wxtransfer.download_file, wxtransfer.upload_file)


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"wxtransfer {version('wxtransfer')}"
    except Exception:
        return f"wxtransfer {getattr(wxtransfer, '__version__', '?')}"


def _http2() -> bool:
    """wxtransfer's HTTP/2 is libcurl's (through pycurl), built with nghttp2 or not."""
    return bool(pycurl.version_info()[4] & pycurl.VERSION_HTTP2)


def download(args: Args, prog: Progress | None) -> int:
    """D1."""
    task = wxtransfer.download_file(args.url, file_path=str(args.target), timeout=0)
    if prog:
        p = prog
        task.on_progress_update(lambda ev: p.update(ev.progress))
    res = task.result()
    check(res.status_code == 200, f"status {res.status_code}")
    check_file(args.target, args.size)
    return args.size


def cut_download(args: Args) -> int:
    """D2: retries with no wait; each continues the bytes held (Range + If-Range)."""
    retry = wxtransfer.Retry(total=D2_RETRIES, backoff=0.0)
    task = wxtransfer.download_file(args.url, file_path=str(args.target), retry=retry, timeout=0)
    res = task.result()
    check(res.status_code in (200, 206), f"status {res.status_code}")
    check_file(args.target, args.size)
    return args.size


def upload(args: Args, prog: Progress | None) -> int:
    """U1."""
    task = wxtransfer.upload_file(
        args.url, str(args.target), "file", form_data={"user": "bench"}, timeout=0
    )
    if prog:
        p = prog
        task.on_progress_update(lambda ev: p.update(ev.progress))
    res = task.result()
    check_upload(res.status_code, res.data)
    return args.target.stat().st_size


def resumable(args: Args) -> int:
    """U2: one PATCH for the rest of the file (no chunk size); after a cut, at once a HEAD
    for the server's offset and a PATCH from there. ``WXTRANSFER_HOME`` (set by the harness
    to a fresh folder per run) keeps the upload URL, so no run continues an older one."""
    retry = wxtransfer.Retry(total=U2_RETRIES, backoff=0.0)
    task = wxtransfer.upload_resumable(args.url, str(args.target), retry=retry, timeout=0)
    res = task.result()
    check(res.status_code == 204, f"status {res.status_code}")
    check(isinstance(res.data, str) and res.data.startswith(args.url), f"upload URL {res.data!r}")
    return args.target.stat().st_size


def many(args: Args) -> int:
    """S1/S2 (and S3/S4): start every task at once; the runtime keeps at most 10 in flight.
    With ``--http2`` each call has ``enable_http2=True``: libcurl offers h2 by ALPN and,
    with PIPEWAIT, multiplexes the runtime's transfers to one origin on one connection."""
    rt_cls = getattr(wxtransfer, "Runtime", None)
    opts: dict[str, Any] = {"ca_file": args.ca_file} if args.ca_file else {}
    ctx: Any = (
        rt_cls(
            max_concurrent_downloads=args.concurrency,
            max_concurrent_uploads=args.concurrency,
            **opts,
        )
        if rt_cls is not None
        else contextlib.nullcontext(wxtransfer)
    )
    h2: dict[str, Any] = {"enable_http2": True} if args.http2 else {}
    with ctx as api:
        if args.scenario == "S1":
            pairs = args.small_urls()
            tasks = [api.download_file(u, file_path=str(o), timeout=0, **h2) for u, o in pairs]
            for task, (_, out) in zip(tasks, pairs, strict=True):
                res = task.result()
                check(res.status_code == 200, f"status {res.status_code}")
                check_file(out, args.size)
            return args.count * args.size
        files = args.small_files()
        tasks = [
            api.upload_file(args.url, str(p), "file", form_data={"user": "bench"}, timeout=0, **h2)
            for p in files
        ]
        for task in tasks:
            res = task.result()
            check_upload(res.status_code, res.data)
        return args.small_upload_bytes()


def run(args: Args, prog: Progress | None) -> int:
    """Dispatch on the scenario."""
    if args.scenario == "D1":
        return download(args, prog)
    if args.scenario == "U1":
        return upload(args, prog)
    if args.scenario == "D2":
        return cut_download(args)
    if args.scenario == "U2":
        return resumable(args)
    return many(args)


if __name__ == "__main__":
    main(run, _version, frozenset({"D1", "U1"}), _http2)
