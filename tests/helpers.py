"""Small helpers shared by the core tests."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import wxtransfer


@contextmanager
def runtime(tmp_path: Path, **options: Any) -> Iterator[wxtransfer.Runtime]:
    """An isolated runtime: its own temp and saved-file folders under ``tmp_path``."""
    rt = wxtransfer.Runtime(home=tmp_path / "home", temp_dir=tmp_path / "tmp", **options)
    try:
        yield rt
    finally:
        rt.close()


def leftovers(folder: Path) -> list[str]:
    """Every file under ``folder`` (recursively), as relative paths; not the lock file a
    live runtime holds in its temp folder (``wxtransfer-*/.lock``)."""
    if not folder.exists():
        return []
    return sorted(
        os.path.relpath(os.path.join(d, f), folder)
        for d, _, fs in os.walk(folder)
        for f in fs
        if not (f == ".lock" and os.path.basename(d).startswith("wxtransfer-"))
    )


class Recorder:
    """Records callback calls with the thread they ran on; thread-safe."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.threads: set[str] = set()
        self.done = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, kind: str) -> Any:
        def record(arg: Any) -> None:
            with self._lock:
                self.events.append((kind, arg))
                self.threads.add(threading.current_thread().name)
            if kind == "complete":
                self.done.set()

        return record

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]

    def callbacks(self) -> dict[str, Any]:
        return {"success": self("success"), "fail": self("fail"), "complete": self("complete")}


def cli_on_terminal(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> tuple[int, str, bytes]:
    """Run the CLI with stderr on a pty, so that its live bars are drawn: its exit code,
    the terminal's text (escape sequences removed) and its stdout. ``env`` is added to
    ours with ``TERM=xterm`` and ``COLUMNS=160``."""
    master, slave = pty.openpty()
    full_env = {**os.environ, "TERM": "xterm", "COLUMNS": "160", **(env or {})}
    stdout_path = cwd.parent / f"{cwd.name}.stdout"
    with open(stdout_path, "wb") as stdout:  # a file: a pipe left unread would block
        proc = subprocess.Popen(
            [sys.executable, "-m", "wxtransfer", *args],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=slave,
        )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    out = stdout_path.read_bytes()
    stdout_path.unlink()
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", "replace"))
    return code, screen, out
