"""``wxtransfer demo``: a round trip through the embedded dev server, with progress bars.

Starts a :class:`~wxtransfer._server.DevServer` on a free loopback port with a temporary
root, writes a random sample file, uploads it, downloads it back from the ``url`` the
server returned, and compares sha256 digests. Then a resumable upload (tus) of the same
file: paused at about half, continued by a second call that sends only the rest.

The demo sits below the command line and imports none of it: ``wxtransfer demo`` lends it
the command line's signal handling, progress bars and failure exits as :class:`DemoTools`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

import click
from rich.console import Console
from rich.table import Table

from . import _errors as errors
from ._runtime import Runtime
from ._server import DevServer

__all__ = ["DemoTools", "file_sha256", "make_sample", "run"]

_BLOCK = 1024 * 1024
_EXIT_FAILURE = 1


class Interrupted(Protocol):
    """A stop signal's flag (the command line's ``Interrupt``)."""

    @property
    def interrupted(self) -> bool: ...

    @property
    def exit_code(self) -> int: ...


class Bar(Protocol):
    def update(self, done: int, total: int) -> None: ...


class Bars(Protocol):
    def track(self, label: str, total: int | None = None) -> Bar: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class DemoTools:
    """What the command line lends the demo: a stop-signal guard, waiting on a task
    (aborting it on a signal), progress bars, sizes for people, and the exits of a
    failure and of a stop signal."""

    interrupt: Callable[[], AbstractContextManager[Interrupted]]
    wait: Callable[[Any, Any], Any]
    reporter: Callable[[], AbstractContextManager[Bars]]
    human_size: Callable[[float], str]
    fail: Callable[[errors.TransferError], NoReturn]
    interrupted: Callable[[str, int], NoReturn]


def make_sample(path: Path, size: int, interrupt: Interrupted | None = None) -> str:
    """Write ``size`` random bytes to ``path`` in 1 MiB blocks; return their sha256."""
    digest = hashlib.sha256()
    with open(path, "xb") as f:
        left = size
        while left > 0:
            if interrupt is not None and interrupt.interrupted:
                raise KeyboardInterrupt
            block = os.urandom(min(_BLOCK, left))
            f.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def run(size: int, tools: DemoTools) -> None:
    """Upload a ``size``-byte sample to a local dev server, download it back, compare.

    Exits (``click.exceptions.Exit``) with 1 when the bytes differ, 130 on Ctrl-C.
    """
    human_size, wait = tools.human_size, tools.wait

    def exit_failure(exc: errors.TransferError, *, as_json: bool = False) -> NoReturn:
        tools.fail(exc)

    def exit_interrupted(api: str, *, as_json: bool = False, code: int) -> NoReturn:
        tools.interrupted(api, code)

    def _rate(size: int, seconds: float) -> str:
        return f"{human_size(size / seconds)}/s" if seconds > 0 else "-"

    out = Console()
    out.print(f"[bold]wxtransfer demo[/]: round trip of {human_size(size)} ({size} bytes)")
    with contextlib.ExitStack() as stack:
        interrupt = stack.enter_context(tools.interrupt())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wxtransfer-demo-")))
        server = stack.enter_context(DevServer(tmp / "root"))
        runtime = stack.enter_context(Runtime(temp_dir=tmp / "temp"))
        out.print(f"dev server at {server.url}, files in {tmp}")
        sample = tmp / "sample.bin"
        try:
            sent_sha = make_sample(sample, size, interrupt)
        except KeyboardInterrupt:
            exit_interrupted("uploadFile", as_json=False, code=interrupt.exit_code)

        with tools.reporter() as reporter:

            def finish(task: Any, api: str) -> Any:
                """Wait for one leg; a failure or Ctrl-C ends the demo with its exit code."""
                try:
                    res = wait(task, interrupt)
                except errors.TransferError as exc:
                    reporter.close()
                    exit_failure(exc, as_json=False)
                if interrupt.interrupted:
                    reporter.close()
                    exit_interrupted(api, as_json=False, code=interrupt.exit_code)
                return res

            started = time.monotonic()
            up = runtime.upload_file(server.url + "/upload", sample, "file", timeout=0)
            up_bar = reporter.track("upload", size)
            up.on_progress_update(
                lambda p: up_bar.update(p.total_bytes_sent, p.total_bytes_expected_to_send)
            )
            up_res = finish(up, "uploadFile")
            up_time = time.monotonic() - started
            try:
                stored = json.loads(up_res.data)["files"][0]
                server_sha, file_url = str(stored["sha256"]), str(stored["url"])
            except (ValueError, KeyError, IndexError, TypeError):
                reporter.close()
                raise click.ClickException(
                    f"unexpected upload reply (HTTP {up_res.status_code}): {up_res.data[:200]}"
                ) from None

            started = time.monotonic()
            down = runtime.download_file(server.url + file_url, timeout=0)
            down_bar = reporter.track("download", size)
            down.on_progress_update(
                lambda p: down_bar.update(p.total_bytes_written, p.total_bytes_expected_to_write)
            )
            down_res = finish(down, "downloadFile")
            down_time = time.monotonic() - started

            # Resumable: a first call paused (aborted) at about half, then the same call
            # again, which asks the server where it stands and sends the rest.
            started = time.monotonic()
            tus_url = server.url + "/tus/"
            # slowed (libcurl lets a second of bytes go at once) so that the pause is seen
            first = runtime.upload_resumable(
                tus_url, sample, timeout=0, max_speed=max(size // 4, 1)
            )
            first_bar = reporter.track("resumable upload, paused at ~50 %", size)

            def pause(p: Any) -> None:
                first_bar.update(p.total_bytes_sent, p.total_bytes_expected_to_send)
                if p.progress >= 50:
                    first.abort()

            first.on_progress_update(pause)
            try:
                wait(first, interrupt)
                paused = False
            except errors.AbortError:
                paused = True
            except errors.TransferError as exc:
                reporter.close()
                exit_failure(exc, as_json=False)
            if interrupt.interrupted:
                reporter.close()
                exit_interrupted("uploadFile", as_json=False, code=interrupt.exit_code)
            second = runtime.upload_resumable(tus_url, sample, timeout=0)
            second_bar = reporter.track("resumable upload, continued", size)
            second.on_progress_update(
                lambda p: second_bar.update(p.total_bytes_sent, p.total_bytes_expected_to_send)
            )
            tus_res = finish(second, "uploadFile")
            tus_time = time.monotonic() - started
        assert down_res.temp_file_path is not None
        received_sha = file_sha256(down_res.temp_file_path)
        received_size = os.path.getsize(down_res.temp_file_path)
        published = tus_res.header.get("X-Wxtransfer-File", "")
        name = urllib.parse.unquote(published.rsplit("/", 1)[-1])
        tus_sha = file_sha256(tmp / "root" / name) if name else "(not published)"

    table = Table(title="wxtransfer demo")
    table.add_column("direction")
    table.add_column("HTTP", justify="right")
    table.add_column("size", justify="right")
    table.add_column("time", justify="right")
    table.add_column("throughput", justify="right")
    table.add_row(
        "upload",
        str(up_res.status_code),
        human_size(size),
        f"{up_time:.2f} s",
        _rate(size, up_time),
    )
    table.add_row(
        "download",
        str(down_res.status_code),
        human_size(received_size),
        f"{down_time:.2f} s",
        _rate(received_size, down_time),
    )
    table.add_row(
        "resumable" + (" (paused, continued)" if paused else ""),
        str(tus_res.status_code),
        human_size(size),
        f"{tus_time:.2f} s",
        "-",
    )
    out.print(table)
    out.print(f"sha256 sent:     {sent_sha}", soft_wrap=True)
    out.print(f"sha256 server:   {server_sha}", soft_wrap=True)
    out.print(f"sha256 received: {received_sha}", soft_wrap=True)
    out.print(f"sha256 resumed:  {tus_sha}", soft_wrap=True)
    ok = sent_sha == server_sha == received_sha == tus_sha and received_size == size
    if ok:
        out.print("[bold green]OK[/]: the bytes that came back are the bytes that went up")
    else:
        out.print("[bold red]MISMATCH[/]: the bytes differ")
        raise click.exceptions.Exit(_EXIT_FAILURE)
