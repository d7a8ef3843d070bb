"""tuspy client (``tusclient``, the Python tus client on requests) for U2.

``TusClient(URL).uploader(FILE, chunk_size=--chunk, retries=10, retry_delay=0,
metadata={"filename": NAME}).upload()``: a POST creates the upload, then one PATCH per chunk,
each read whole into memory and sent by ``requests.patch`` on a new connection (tuspy keeps
no session). A failed PATCH is retried after ``retry_delay`` seconds: a HEAD asks the
server's offset, then the PATCH goes again from there (up to ``retries`` times per chunk).
The metadata is there because tuspy sends an empty ``Upload-Metadata`` header without it,
which @tus/server answers with 400.
"""

from __future__ import annotations

from tusclient import client

from clients._common import U2_RETRIES, Args, Progress, check, main


def _version() -> str:
    from importlib.metadata import version

    return f"tuspy {version('tuspy')}"


def resumable(args: Args) -> int:
    """U2: chunks of ``args.chunk`` bytes (the whole file in one PATCH when 0)."""
    size = args.target.stat().st_size
    chunk = {"chunk_size": args.chunk} if args.chunk else {}
    uploader = client.TusClient(args.url).uploader(
        str(args.target),
        retries=U2_RETRIES,
        retry_delay=0,
        metadata={"filename": args.target.name},
        **chunk,
    )
    uploader.upload()
    check(uploader.offset == size, f"offset {uploader.offset} after the upload, file {size}")
    url = uploader.url
    check(isinstance(url, str) and url.startswith(args.url), f"upload URL {url!r}")
    return size


def run(args: Args, prog: Progress | None) -> int:
    """U2 only."""
    check(args.scenario == "U2", f"tuspy runs U2 only, not {args.scenario}")
    return resumable(args)


if __name__ == "__main__":
    main(run, _version, frozenset())
