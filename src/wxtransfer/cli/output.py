"""What the command line shows: progress bars, the summary of several transfers, curl's
``-w`` write-out, and ``-v``'s request and response heads with the library's trace.

Everything but a download's body (``-o -``), its saved path, ``--json`` and ``-w`` goes
to stderr, so that stdout stays the command's result.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import click
from rich import filesize
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Task as BarTask
from rich.table import Table
from rich.text import Text

from .._trace import safe_url
from .exit import discard_stderr

__all__ = [
    "MultiBars",
    "Outcome",
    "PlainReporter",
    "Reporter",
    "RichReporter",
    "TraceCapture",
    "Tracker",
    "human_size",
    "make_reporter",
    "redacted_head",
    "summary_table",
    "write_out",
]

#: Header names whose values never reach the screen or a log (``-v``).
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


def human_size(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- progress


class Tracker:
    """One transfer's progress display."""

    def update(self, done: int, total: int) -> None:
        """Bytes done out of ``total`` (0: unknown)."""

    def describe(self, label: str) -> None:
        """Change the label."""

    def finish(self, ok: bool) -> None:
        """The transfer ended: its bar goes (several transfers) or stays (one)."""


class Reporter:
    """Makes trackers; the base class shows nothing."""

    def track(self, label: str, total: int | None = None) -> Tracker:
        return Tracker()

    def close(self) -> None:
        pass

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _RichTracker(Tracker):
    def __init__(self, progress: Progress, task_id: TaskID) -> None:
        self._progress = progress
        self._id = task_id

    def update(self, done: int, total: int) -> None:
        self._progress.update(self._id, completed=done, total=total or None)

    def describe(self, label: str) -> None:
        # drawn at once: a retry's wait may be shorter than the refresh period
        self._progress.update(self._id, description=escape(label), refresh=True)


def _stop(progress: Progress) -> None:
    try:
        progress.stop()
    except OSError:  # the terminal hung up (SIGHUP): nothing left to show
        discard_stderr()


class RichReporter(Reporter):
    """Live bars on stderr: bytes, percent, speed, ETA; a pulsing bar while the size is unknown."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TaskProgressColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=10,
        )
        self._progress.start()

    def track(self, label: str, total: int | None = None) -> Tracker:
        task_id = self._progress.add_task(escape(label), total=total or None)
        return _RichTracker(self._progress, task_id)

    def close(self) -> None:
        _stop(self._progress)


class _PlainTracker(Tracker):
    def __init__(self, label: str, echo: Callable[[str], None]) -> None:
        self._label = label
        self._echo = echo
        self._decile = -1
        self._lock = threading.Lock()

    def update(self, done: int, total: int) -> None:
        if total <= 0:
            return
        percent = min(100, done * 100 // total)
        with self._lock:
            if percent // 10 <= self._decile:
                return
            self._decile = percent // 10
        self._echo(f"{self._label}: {percent:3d}% ({human_size(done)} of {human_size(total)})")

    def describe(self, label: str) -> None:
        self._label = label


class PlainReporter(Reporter):
    """One plain line per 10 % on stderr, for logs."""

    def track(self, label: str, total: int | None = None) -> Tracker:
        return _PlainTracker(label, lambda line: click.echo(line, err=True))


def make_reporter(quiet: bool) -> Reporter:
    """Live bars when stderr is a terminal and not ``quiet``; else nothing."""
    if quiet:
        return Reporter()
    console = Console(stderr=True)
    if not console.is_terminal:
        return Reporter()
    return RichReporter(console)


class _AmountColumn(ProgressColumn):
    """A transfer's bytes (``1.2/4.0 MiB``); on the total bar, files and bytes."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn(binary_units=True)

    def render(self, task: BarTask) -> Text:
        files = task.fields.get("files")
        if files is None:
            return self._bytes.render(task)
        done = int(task.fields.get("finished", 0))
        moved = int(task.fields.get("moved", 0))
        return Text(f"{done}/{files} files, {human_size(moved)}", style="progress.download")


class _SpeedColumn(ProgressColumn):
    """A transfer's speed; on the total bar, all bytes over the time so far."""

    def __init__(self) -> None:
        super().__init__()
        self._speed = TransferSpeedColumn()

    def render(self, task: BarTask) -> Text:
        if task.fields.get("files") is None:
            return self._speed.render(task)
        rate = float(task.fields.get("rate", 0.0))
        return Text(f"{filesize.decimal(int(rate))}/s", style="progress.data.speed")


class _MultiTracker(Tracker):
    def __init__(self, bars: MultiBars, task_id: TaskID) -> None:
        self._bars = bars
        self._id = task_id
        self.done = 0
        self.total = 0

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        self._bars._progress.update(self._id, completed=done, total=total or None)
        self._bars._refresh_total()

    def describe(self, label: str) -> None:
        # drawn at once: a retry's wait may be shorter than the refresh period
        self._bars._progress.update(self._id, description=escape(label), refresh=True)

    def finish(self, ok: bool) -> None:
        self._bars._finish(self)

    @property
    def task_id(self) -> TaskID:
        return self._id


class MultiBars(Reporter):
    """Several transfers at once: one live bar per running transfer (removed when it
    ends) under a total bar (files done out of all, bytes so far, their rate)."""

    def __init__(self, console: Console, files: int) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            _AmountColumn(),
            TaskProgressColumn(),
            _SpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=10,
        )
        self._lock = threading.Lock()
        self._running: list[_MultiTracker] = []
        self._finished = 0
        self._finished_bytes = 0
        self._started = time.monotonic()
        self._total = self._progress.add_task(
            "total", total=files, files=files, finished=0, moved=0, rate=0.0
        )
        self._progress.start()

    def track(self, label: str, total: int | None = None) -> Tracker:
        task_id = self._progress.add_task(escape(label), total=total or None)
        tracker = _MultiTracker(self, task_id)
        with self._lock:
            self._running.append(tracker)
        return tracker

    def _finish(self, tracker: _MultiTracker) -> None:
        with self._lock:
            if tracker not in self._running:
                return
            self._running.remove(tracker)
            self._finished += 1
            self._finished_bytes += tracker.done
        self._progress.remove_task(tracker.task_id)
        self._refresh_total()

    def _refresh_total(self) -> None:
        with self._lock:
            fraction = sum(t.done / t.total for t in self._running if t.total > 0)
            moved = self._finished_bytes + sum(t.done for t in self._running)
            finished = self._finished
        elapsed = time.monotonic() - self._started
        self._progress.update(
            self._total,
            completed=finished + min(fraction, len(self._running)),
            finished=finished,
            moved=moved,
            rate=moved / elapsed if elapsed > 0 else 0.0,
        )

    def close(self) -> None:
        _stop(self._progress)


# --------------------------------------------------------------------------- results


@dataclass
class Outcome:
    """One transfer's end, as the summary, ``--json`` and ``-w`` show it."""

    url: str
    status: int = 0  # the HTTP status (0: no answer)
    size: int = 0  # bytes of the body received
    seconds: float = 0.0
    path: str | None = None  # where it was saved ("-": stdout)
    error: str | None = None  # errMsg of a failure
    exit_code: int = 0
    note: str = ""  # e.g. "not modified"
    header: Mapping[str, str] | None = None
    profile: Mapping[str, Any] | None = None
    effective_url: str | None = None
    redirects: int = 0


def _shown_path(path: str | None) -> str:
    """A saved path as the summary shows it: relative when it is under the current folder."""
    if not path or path == "-":
        return "(stdout)" if path == "-" else ""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def summary_table(outcomes: Iterable[Outcome]) -> Table:
    """Each URL, its status, size, time, and where it went or why it failed."""
    table = Table(title="wxtransfer download", title_justify="left")
    table.add_column("URL", overflow="fold")
    table.add_column("status", justify="right")
    table.add_column("size", justify="right")
    table.add_column("time", justify="right")
    table.add_column("saved to / error", overflow="fold")
    for o in outcomes:
        if o.error is not None:
            status = f"[red]{o.status or 'failed'}[/] ({o.exit_code})"
            where = f"[red]{escape(o.error)}[/]"
        else:
            status = f"[green]{o.status}[/]" if o.status < 400 else f"[yellow]{o.status}[/]"
            where = escape(o.note or _shown_path(o.path))
        table.add_row(
            escape(o.url),
            status,
            human_size(o.size) if o.error is None else "-",
            f"{o.seconds:.2f} s",
            where,
        )
    return table


# --------------------------------------------------------------------------- -w / --write-out

_WRITE_OUT_RE = re.compile(r"%\{([a-z_]+)\}|%%|\\[nrt\\]")
_ESCAPES = {"\\n": "\n", "\\r": "\r", "\\t": "\t", "\\\\": "\\"}
_HTTP_VERSIONS = {"http1.1": "1.1", "h2": "2", "quic": "3"}


def _since_start(profile: Mapping[str, Any], key: str) -> str:
    start, at = profile.get("fetchStart") or 0, profile.get(key) or 0
    return f"{max(0.0, (at - start) / 1000):.6f}" if start and at else "0.000000"


def write_out_values(o: Outcome) -> dict[str, str]:
    """curl's ``-w`` variables for one transfer."""
    profile = o.profile or {}
    header = o.header or {}
    content_type = next((v for k, v in header.items() if k.lower() == "content-type"), "")
    return {
        "http_code": f"{o.status:03d}",
        "response_code": f"{o.status:03d}",
        "size_download": str(o.size),
        "time_total": f"{o.seconds:.6f}",
        "time_namelookup": _since_start(profile, "domainLookUpEnd"),
        "time_connect": _since_start(profile, "connectEnd"),
        "time_appconnect": _since_start(profile, "SSLconnectionEnd"),
        "time_pretransfer": _since_start(profile, "requestStart"),
        "time_starttransfer": _since_start(profile, "responseStart"),
        "speed_download": f"{o.size / o.seconds:.0f}" if o.seconds > 0 else "0",
        "url": o.url,
        "url_effective": o.effective_url or o.url,
        "num_redirects": str(o.redirects),
        "filename_effective": o.path if o.path and o.path != "-" else "",
        "content_type": content_type,
        "remote_ip": str(profile.get("peerIP", "")),
        "remote_port": str(profile.get("port", "") or ""),
        "http_version": _HTTP_VERSIONS.get(str(profile.get("protocol", "")), "0"),
        "exitcode": str(o.exit_code),
        "errormsg": o.error or "",
    }


def write_out(fmt: str, o: Outcome) -> str:
    """``fmt`` with curl's ``%{variable}``s, ``%%`` and ``\\n``/``\\r``/``\\t`` replaced;
    an unknown variable is left out, as curl does."""
    values = write_out_values(o)

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "%%":
            return "%"
        if token in _ESCAPES:
            return _ESCAPES[token]
        return values.get(match.group(1), "")

    return _WRITE_OUT_RE.sub(replace, fmt)


# --------------------------------------------------------------------------- -v / --verbose


def redacted_head(lines: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Header lines with credentials' values hidden (``Authorization``, ``Cookie`` ...)."""
    return [(k, "[redacted]" if k.lower() in SECRET_HEADERS else v) for k, v in lines]


def request_head(url: str, header: Mapping[str, str]) -> list[str]:
    """The request's head as ``-v`` shows it, ``> `` first: the line, ``Host`` and the
    headers wxtransfer sends (libcurl adds ``Accept``), credentials hidden."""
    parts = urllib.parse.urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host += f":{parts.port}"
    lines = [f"> GET {target}", f"> Host: {host}"]
    lines += [f"> {k}: {v}" for k, v in redacted_head(header.items())]
    return [*lines, ">"]


def response_head(status: int, header: Mapping[str, str]) -> list[str]:
    """The final response's head as ``-v`` shows it, ``< `` first, credentials hidden."""
    lines = [f"< HTTP {status}"]
    lines += [f"< {k}: {v}" for k, v in redacted_head(header.items())]
    return [*lines, "<"]


class TraceCapture(logging.Handler):
    """The library's DEBUG trace (logger ``wxtransfer``), kept per transfer number, and
    printed on stderr (``* ...``) when ``echo``.

    Each transfer's ``queued`` line names its URL (``safe_url``: no userinfo, no query),
    so that a caller can find its number, then its redirects (``-w %{url_effective}``).
    """

    def __init__(self, echo: bool) -> None:
        super().__init__(logging.DEBUG)
        self.echo = echo
        self._lock2 = threading.Lock()
        self._queued: list[tuple[int, str]] = []  # (number, safe URL), in order
        self._claimed: set[int] = set()
        self._redirects: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) >= 3 and isinstance(args[1], int):
            number = args[1]
            message = str(record.msg)
            with self._lock2:
                if message.endswith(" queued %s"):
                    self._queued.append((number, str(args[2])))
                elif " to %s" in message and str(args[2]) == "redirect":
                    self._redirects.setdefault(number, []).append(str(args[-1]))
        if self.echo:
            try:
                click.echo(f"* {record.getMessage()}", err=True)
            except OSError:
                discard_stderr()

    def claim(self, url: str) -> int | None:
        """The number of the first transfer of ``url`` not yet claimed, if it was queued."""
        wanted = safe_url(url)
        with self._lock2:
            for number, queued in self._queued:
                if queued == wanted and number not in self._claimed:
                    self._claimed.add(number)
                    return number
        return None

    def redirects(self, number: int | None) -> list[str]:
        """The URLs transfer ``number`` was redirected to, in order (``safe_url`` form)."""
        if number is None:
            return []
        with self._lock2:
            return list(self._redirects.get(number, []))

    def __enter__(self) -> TraceCapture:
        logger = logging.getLogger("wxtransfer")
        self._level = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logger = logging.getLogger("wxtransfer")
        logger.removeHandler(self)
        logger.setLevel(self._level)
