"""pycurl client: easy handle for D1/U1, CurlMulti with 10 reused handles for S1/S2 (with
``--http2``: HTTP_VERSION 2TLS and PIPEWAIT, so the multi handle multiplexes them on one
connection)."""

from __future__ import annotations

import io
from collections import deque
from pathlib import Path
from typing import Any

import pycurl

from clients._common import (
    CHUNK,
    Args,
    Failure,
    Progress,
    check,
    check_file,
    check_upload,
    main,
)


def _easy() -> Any:
    c = pycurl.Curl()
    c.setopt(pycurl.BUFFERSIZE, CHUNK)
    c.setopt(pycurl.NOSIGNAL, 1)
    return c


def _handles(args: Args) -> list[Any]:
    """S1/S2's ``concurrency`` easy handles, with the CA and, for ``--http2``, HTTP/2 and
    PIPEWAIT set."""
    free = [_easy() for _ in range(args.concurrency)]
    for c in free:
        if args.ca_file:
            c.setopt(pycurl.CAINFO, args.ca_file)
        if args.http2:
            c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS)
            c.setopt(pycurl.PIPEWAIT, 1)  # wait for a connection being made, to multiplex
    return free


def _http2() -> bool:
    """libcurl built with nghttp2."""
    return bool(pycurl.version_info()[4] & pycurl.VERSION_HTTP2)


def _attach_progress(c: Any, prog: Progress, upload: bool) -> None:
    def cb(dltotal: int, dlnow: int, ultotal: int, ulnow: int) -> None:
        total, now = (ultotal, ulnow) if upload else (dltotal, dlnow)
        prog.update(now / total if total else 0.0)

    c.setopt(pycurl.NOPROGRESS, 0)
    c.setopt(pycurl.XFERINFOFUNCTION, cb)


def _form(c: Any, path: Path) -> Any:
    """Attach a multipart body (file field ``file``, text field ``user``) via the MIME API."""
    mime = pycurl.CurlMime(c)
    mime.add_file("file", str(path))
    mime.add_field("user", "bench")
    c.setopt(pycurl.MIMEPOST, mime)
    return mime


def download(args: Args, prog: Progress | None) -> int:
    """D1."""
    c = _easy()
    if prog:
        _attach_progress(c, prog, upload=False)
    with open(args.target, "wb") as f:
        c.setopt(pycurl.URL, args.url)
        c.setopt(pycurl.WRITEDATA, f)
        c.perform()
    check(c.getinfo(pycurl.RESPONSE_CODE) == 200, "status")
    c.close()
    check_file(args.target, args.size)
    return args.size


def upload(args: Args, prog: Progress | None) -> int:
    """U1."""
    c = _easy()
    if prog:
        _attach_progress(c, prog, upload=True)
    body = io.BytesIO()
    c.setopt(pycurl.URL, args.url)
    mime = _form(c, args.target)
    c.setopt(pycurl.WRITEDATA, body)
    c.perform()
    check_upload(c.getinfo(pycurl.RESPONSE_CODE), body.getvalue())
    mime.close()
    c.close()
    return args.target.stat().st_size


def many(args: Args, upload_: bool) -> int:
    """S1/S2: a CurlMulti driving at most ``concurrency`` reused easy handles."""
    m = pycurl.CurlMulti()
    free = _handles(args)
    if upload_:
        jobs: deque[tuple[str, Path]] = deque((args.url, p) for p in args.small_files())
    else:
        jobs = deque(args.small_urls())
    state: dict[int, tuple[Path, Any, Any]] = {}
    active = done = 0
    while jobs or active:
        while jobs and free:
            c = free.pop()
            url, path = jobs.popleft()
            c.setopt(pycurl.URL, url)
            mime = None
            if upload_:
                sink: Any = io.BytesIO()
                mime = _form(c, path)
            else:
                sink = open(path, "wb")
            c.setopt(pycurl.WRITEDATA, sink)
            state[id(c)] = (path, sink, mime)
            m.add_handle(c)
            active += 1
        while m.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        while True:
            queued, ok, failed = m.info_read()
            for _c, errno, errmsg in failed:
                raise Failure(f"curl error {errno}: {errmsg}")
            for c in ok:
                path, sink, mime = state.pop(id(c))
                code = c.getinfo(pycurl.RESPONSE_CODE)
                m.remove_handle(c)
                if upload_:
                    check_upload(code, sink.getvalue())
                    mime.close()
                else:
                    sink.close()
                    check(code == 200, f"status {code}")
                    check_file(path, args.size)
                free.append(c)
                active -= 1
                done += 1
            if not queued:
                break
        if jobs and free:
            continue  # start the next transfers at once, before waiting on the sockets
        if active:
            # Wait for a socket, but no longer than libcurl's own timer (-1: none set): a
            # transfer held back by PIPEWAIT or just added may have nothing to wait on yet.
            wait = m.timeout()
            if wait != 0:
                m.select(wait / 1000 if 0 < wait < 1000 else 1.0)
    check(done == args.count, f"{done} of {args.count} transfers")
    return args.small_upload_bytes() if upload_ else done * args.size


def run(args: Args, prog: Progress | None) -> int:
    """Dispatch on the scenario."""
    if args.scenario == "D1":
        return download(args, prog)
    if args.scenario == "U1":
        return upload(args, prog)
    return many(args, upload_=args.scenario == "S2")


if __name__ == "__main__":
    main(run, lambda: str(pycurl.version), frozenset({"D1", "U1"}), _http2)
