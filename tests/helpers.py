"""Small helpers shared by the core tests."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
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
