"""The ``wxtransfer`` command line: upload, download, serve, demo.

Exit codes (curl's where curl has one):

* 0   done (any HTTP status, as on the platform, unless ``--fail``)
* 1   any other failure (cannot connect, file error, refused overwrite, ...), and a missing
  extra: ``serve`` and ``demo`` without aiohttp say to install ``wxtransfer[server]``
  (``wxtransfer.__main__`` says ``wxtransfer[cli]`` when click or rich is missing)
* 2   usage error, or an argument the library refuses (``InvalidArgumentError``)
* 22  ``--fail`` and the server answered with a status >= 400
* 28  the transfer timed out
* 130 interrupted (Ctrl-C, SIGINT), 143 terminated (SIGTERM), 129 hung up (SIGHUP): 128 +
  the signal's number, as shells report it; the transfer is aborted and leaves no file behind
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import functools
import ipaddress
import json
import math
import os
import re
import secrets
import signal
import sys
import threading
import unicodedata
import urllib.parse
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from . import _errors as errors
from ._options import TimeoutUnitWarning
from ._output import PART_SUFFIX
from ._results import (
    DownloadFileResult,
    DownloadProgress,
    HeadersReceived,
    RetryEvent,
    UploadFileResult,
    UploadProgress,
)
from ._retry import Retry
from ._rules import WeChatRules
from ._runtime import Runtime, __version__
from ._task import Task

__all__ = [
    "RuntimeSettings",
    "main",
    "new_file_mode",
    "parse_resolve",
    "parse_size",
    "remote_file_name",
    "safe_file_name",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_HTTP_ERROR = 22
EXIT_TIMEOUT = 28
EXIT_INTERRUPTED = 130

#: How long to wait for an aborted task to report its end, in seconds.
_ABORT_GRACE = 30.0
_BLOCK = 1024 * 1024
_NAME_MAX_BYTES = 255
_FALLBACK_NAME = "download"

R = TypeVar("R", UploadFileResult, DownloadFileResult)


# --------------------------------------------------------------------------- sizes

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(i?)(b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_size(text: str) -> int:
    """Bytes in ``text``: ``1048576``, ``256MiB``, ``10MB`` (10**7), ``4k`` (4096), ``1.5GiB``.

    ``KiB``/``MiB``/``K``/``M`` are powers of 1024, ``kB``/``MB`` powers of 1000.
    """
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size (examples: 1048576, 256MiB, 10MB)")
    number, prefix, binary, byte = match.groups()
    power = _POWERS[prefix.lower()]
    if binary and not prefix:
        raise ValueError(f"{text!r} is not a size (examples: 1048576, 256MiB, 10MB)")
    base = 1000 if (prefix and byte and not binary) else 1024
    value = float(number) * base**power
    if value != int(value) and power == 0:
        raise ValueError(f"{text!r}: a byte count must be a whole number")
    return int(value)


class SizeType(click.ParamType[int]):
    """A click parameter taking sizes like ``256MiB``, ``10MB`` or ``1048576``."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeType()


def human_size(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- option parsing


def _parse_headers(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    header: dict[str, str] = {}
    for raw in values:
        name, sep, value = raw.partition(":")
        name = name.strip()
        if not sep or not name:
            raise click.BadParameter(f"{raw!r} should look like 'Name: value'", ctx, param)
        header[name] = value.strip()
    return header


def _parse_form(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[tuple[str, str]]:
    """``KEY=VALUE`` pairs, in order (``-F``'s ``KEY=@PATH`` is told apart later)."""
    form: list[tuple[str, str]] = []
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{raw!r} should look like key=value", ctx, param)
        form.append((key, value))
    return form


def _split_form(
    form: list[tuple[str, str]], literal: list[tuple[str, str]]
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """curl's ``-F``: ``name=@path`` attaches a file, anything else is a text field;
    ``--form-string`` values are text whatever they start with."""
    fields: dict[str, str] = {}
    files: list[tuple[str, str]] = []
    for key, value in form:
        if value.startswith("@"):
            path = value[1:]
            if not path:
                raise click.BadParameter(f"{key}=@ names no file", param_hint="'-F'")
            if ";" in path and not os.path.exists(path):
                raise click.BadParameter(
                    f"{key}={value}: curl's ;type= and ;filename= are not supported (the "
                    "file's name and type are sent as the platform does)",
                    param_hint="'-F'",
                )
            files.append((key, path))
        else:
            fields[key] = value
    for key, value in literal:
        fields[key] = value
    return fields, files


# --------------------------------------------------------------------------- --resolve

_RESOLVE_FORMS = (
    "HOST:ADDR, HOST:ADDR:PORT, HOST:[IPV6] or HOST:[IPV6]:PORT (or curl's HOST:PORT:ADDR)"
)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _port(text: str) -> int | None:
    if text.isascii() and text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    return None


def _runtime_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int | None) -> str:
    """The value ``Runtime(resolve={host: ...})`` takes: ``addr`` or ``addr:port``."""
    if port is None:
        return str(addr)
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


def parse_resolve(entry: str) -> tuple[str, str]:
    """One ``--resolve`` value -> ``(host, value for Runtime(resolve=...))``.

    ``HOST:ADDR`` connects to ADDR on the URL's port; ``HOST:ADDR:PORT`` connects to
    ADDR:PORT whatever the URL's port (like curl's ``--connect-to``); an IPv6 ADDR is
    written in brackets. curl's own ``HOST:PORT:ADDR`` is accepted too and means
    ``HOST:ADDR`` (the mapping then holds for every port of HOST). ADDR is an IP address.
    Raises ``ValueError`` with what is wrong.
    """
    text = entry.strip()
    host, sep, rest = text.partition(":")
    host = host.strip().lower().rstrip(".")
    if not sep or not host or not rest or any(c in host for c in "[]/ \t"):
        raise ValueError(f"{entry!r} should be {_RESOLVE_FORMS}")
    if host.startswith(("-", "+")):
        raise ValueError(f"{entry!r}: curl's '+' and '-' prefixes are not supported")
    if rest.startswith("["):  # HOST:[IPV6] or HOST:[IPV6]:PORT
        inside, close, after = rest[1:].partition("]")
        addr = _ip(inside) if close else None
        if addr is None or addr.version != 6:
            raise ValueError(f"{entry!r}: {rest!r} is not a bracketed IPv6 address")
        if not after:
            return host, _runtime_address(addr, None)
        port = _port(after[1:]) if after.startswith(":") else None
        if port is None:
            raise ValueError(f"{entry!r}: bad port after {inside!r} (1-65535)")
        return host, _runtime_address(addr, port)
    first, sep2, second = rest.partition(":")
    if not sep2:  # HOST:ADDR
        addr = _ip(first)
        if addr is None:
            raise ValueError(f"{entry!r}: {first!r} is not an IP address")
        return host, _runtime_address(addr, None)
    if _port(first) is not None:  # curl's HOST:PORT:ADDR
        addr = _ip(second[1:-1] if second.startswith("[") and second.endswith("]") else second)
        if addr is not None:
            return host, _runtime_address(addr, None)
        if "," in second:
            raise ValueError(f"{entry!r}: give one address, not a list")
        if _ip(rest) is None:
            raise ValueError(f"{entry!r}: {second!r} is not an IP address")
    addr = _ip(first)
    if addr is None:
        if _ip(rest) is not None:
            raise ValueError(f"{entry!r}: write an IPv6 address in brackets: {host}:[{rest}]")
        raise ValueError(f"{entry!r} should be {_RESOLVE_FORMS}")
    port = _port(second)
    if port is None:
        raise ValueError(f"{entry!r}: bad port {second!r} (1-65535)")
    return host, _runtime_address(addr, port)


def _parse_resolve_option(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    resolve: dict[str, str] = {}
    for raw in values:
        try:
            host, addr = parse_resolve(raw)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
        if host in resolve and resolve[host] != addr:
            raise click.BadParameter(f"{host} is given twice ({resolve[host]}, {addr})", ctx, param)
        resolve[host] = addr
    return resolve


# --------------------------------------------------------------------------- file names

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM_RE = re.compile(rf';\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _fix_latin1(value: str) -> str:
    """Header values arrive decoded as latin-1: recover UTF-8 when that is what was sent."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def content_disposition_filename(value: str) -> str | None:
    """The file name a ``Content-Disposition`` value suggests (``filename*`` first), raw."""
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(value):
        key, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(key, raw)
    extended = params.get("filename*")
    if extended:
        charset, sep, rest = extended.partition("'")
        _lang, sep2, encoded = rest.partition("'")
        if sep and sep2:
            try:
                return urllib.parse.unquote(encoded, encoding=charset or "utf-8", errors="replace")
            except LookupError:  # unknown charset
                pass
    plain = params.get("filename")
    return _fix_latin1(plain) if plain else None


def _truncate(name: str, limit: int = _NAME_MAX_BYTES) -> str:
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 16:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    budget = limit - len(suffix.encode("utf-8"))
    stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore")
    return stem + suffix


def safe_file_name(raw: str | None) -> str | None:
    """A name that can only mean a file directly inside the current folder, or None.

    Control and format characters (NUL, CR/LF, bidi overrides ...) are dropped, only the
    last path component is kept (``/`` and ``\\`` both separate), leading dots are removed
    (no ``..``, no hidden files), and the result fits in 255 bytes.
    """
    if not raw:
        return None
    name = unicodedata.normalize("NFC", raw)
    name = "".join(c for c in name if not unicodedata.category(c).startswith("C"))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = name.strip().lstrip(".").rstrip(" .")
    name = _truncate(name).strip()
    if not name or name in {".", ".."} or "/" in name or "\0" in name:
        return None
    return name


def url_file_name(url: str) -> str | None:
    """The (unsafe, decoded) last segment of the URL's path, or None."""
    path = urllib.parse.urlsplit(url).path
    last = path.rsplit("/", 1)[-1]
    return urllib.parse.unquote(last, errors="replace") or None


def _header(header: Mapping[str, str], name: str) -> str | None:
    for key, value in header.items():
        if key.lower() == name:
            return value
    return None


def remote_file_name(url: str, header: Mapping[str, str]) -> str:
    """The safe local name for a download: Content-Disposition, else the URL's path."""
    disposition = _header(header, "content-disposition")
    if disposition:
        name = safe_file_name(content_disposition_filename(disposition))
        if name:
            return name
    return safe_file_name(url_file_name(url)) or _FALLBACK_NAME


def _inside(folder: str, name: str) -> str:
    """``folder/name``, checked to be a direct child of ``folder``."""
    dest = os.path.join(folder, name)
    if (
        os.path.isabs(name)
        or os.sep in name
        or (os.altsep is not None and os.altsep in name)
        or os.path.dirname(os.path.abspath(dest)) != os.path.abspath(folder)
    ):  # pragma: no cover - safe_file_name already guarantees it
        raise click.ClickException(f"refusing unsafe file name {name!r}")
    return dest


# --------------------------------------------------------------------------- placing files


def _process_umask() -> int:
    """The process's umask, read without changing it where the system allows.

    ``os.umask`` can only read the mask by setting it, for every thread at once: another
    thread creating a file meanwhile would get the wrong permissions. Linux (4.7+) shows it
    in ``/proc/self/status``; elsewhere the set-and-restore is the only way, and it sets
    0o077 for that moment so that such a file is private rather than open to all.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permissions a newly created file gets: 0o666 less the umask (SPEC §5)."""
    return 0o666 & ~_process_umask()


class MoveCancelled(Exception):
    """:func:`move_into_place` stopped because its ``cancel`` event was set; nothing was
    put in place and nothing of the move is left beside the destination."""


def _copy_exclusive(src: str, dest: str, cancel: threading.Event | None = None) -> None:
    """Copy ``src`` to ``dest`` created exclusively (fails if ``dest`` exists), with the
    permissions of a new file; :class:`MoveCancelled` (and no ``dest``) once ``cancel`` is
    set."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb", closefd=False) as fout:
            while block := fin.read(_BLOCK):
                if cancel is not None and cancel.is_set():
                    raise MoveCancelled(dest)
                fout.write(block)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(dest)
        raise
    os.close(fd)


def move_into_place(
    src: str, dest: str, *, force: bool, cancel: threading.Event | None = None
) -> None:
    """Move the finished file ``src`` to ``dest``; never overwrites unless ``force``.

    ``dest`` gets the permissions of a newly created file (:func:`new_file_mode`), not
    those of ``src`` (a private temp file). Without ``force`` the new name is made with
    ``link()`` (atomic, fails if ``dest`` exists); across file systems the file is first
    copied beside ``dest``. Raises ``FileExistsError`` when ``dest`` exists and ``force``
    is off, :class:`MoveCancelled` when ``cancel`` is set before a copy has been put in
    place (``src`` is then left as it was).
    """
    try:
        # Set on src, before it gets the new name: dest never shows src's mode.
        os.chmod(src, new_file_mode())
    except OSError:  # cannot set it here: make a new file instead
        linked = False
    else:
        linked = True
    if linked:
        try:
            if force:
                os.replace(src, dest)
            else:
                os.link(src, dest)
                os.unlink(src)
            return
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (
                errno_codes.EXDEV,
                errno_codes.EPERM,
                errno_codes.ENOTSUP,
                errno_codes.EOPNOTSUPP,
                errno_codes.EMLINK,
                errno_codes.ENOSYS,
            ):
                raise
    if not force and os.path.lexists(dest):
        raise FileExistsError(errno_codes.EEXIST, "File exists", dest)
    folder, base = os.path.split(os.path.abspath(dest))
    part = os.path.join(folder, f".{base[:200]}.{secrets.token_hex(4)}.wxpart")
    try:
        _copy_exclusive(src, part, cancel)
        if cancel is not None and cancel.is_set():
            raise MoveCancelled(dest)
        if force:
            os.replace(part, dest)
        else:
            try:
                os.link(part, dest)
            except FileExistsError:
                raise
            except OSError:  # no hard links here: create exclusively and copy again
                _copy_exclusive(part, dest, cancel)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(part)
    with contextlib.suppress(OSError):
        os.unlink(src)


# --------------------------------------------------------------------------- progress


class Tracker:
    """One transfer's progress display."""

    def update(self, done: int, total: int) -> None:
        """Bytes done out of ``total`` (0: unknown)."""

    def describe(self, label: str) -> None:
        """Change the label."""


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
        self._progress.update(self._id, description=_escape_markup(label))


def _escape_markup(text: str) -> str:
    return escape(text)


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
        task_id = self._progress.add_task(_escape_markup(label), total=total or None)
        return _RichTracker(self._progress, task_id)

    def close(self) -> None:
        try:
            self._progress.stop()
        except OSError:  # the terminal hung up (SIGHUP): nothing left to show
            _discard_stderr()


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


def _reporter(quiet: bool) -> Reporter:
    if quiet:
        return Reporter()
    console = Console(stderr=True)
    if not console.is_terminal:
        return Reporter()
    return RichReporter(console)


# --------------------------------------------------------------------------- waiting, signals

#: The signals that stop a transfer cleanly: Ctrl-C, ``kill`` (and service managers), a
#: closed terminal. Others (SIGKILL, SIGQUIT ...) keep their default action.
_STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Interrupt:
    """While active (main thread only), SIGINT, SIGTERM and SIGHUP set a flag instead of
    stopping the process, so that the transfer is aborted and its files removed first.

    A signal that was ignored when this started (``nohup``, a background job's SIGINT)
    stays ignored. The previous handlers are put back on exit.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        #: The first stop signal received, or None.
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def interrupted(self) -> bool:
        return self.event.is_set()

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as shells report it: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP."""
        return 128 + (self.signum if self.signum is not None else signal.SIGINT)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            for signum in _STOP_SIGNALS:
                if signal.getsignal(signum) is signal.SIG_IGN:
                    continue
                self._previous[signum] = signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            # None: a handler not set from Python, which cannot be put back
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def wait(task: Task[R, Any], interrupt: Interrupt) -> R:
    """``task.result()``, aborting the task when a stop signal (:class:`Interrupt`) comes
    meanwhile."""
    while True:
        if interrupt.interrupted:
            task.abort()
            try:
                return task.result(timeout=_ABORT_GRACE)
            except errors.TransferError:
                raise
            except TimeoutError:  # builtin: the abort did not complete in time
                raise errors.AbortError(f"{task._api}:fail abort", errors.Errno.ABORT) from None
        try:
            return task.result(timeout=0.1)
        except errors.TransferError:
            raise
        except TimeoutError:  # builtin: not done yet
            continue


# --------------------------------------------------------------------------- output, exits


def _print_json(data: Mapping[str, Any], *, err: bool = False) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str), err=err)


def _exit_code(exc: errors.TransferError) -> int:
    if isinstance(exc, errors.TimeoutError):
        return EXIT_TIMEOUT
    if isinstance(exc, errors.AbortError):
        return EXIT_INTERRUPTED
    if isinstance(exc, errors.InvalidArgumentError):
        return EXIT_USAGE
    return EXIT_FAILURE


def exit_failure(
    exc: errors.TransferError,
    *,
    as_json: bool,
    code: int | None = None,
) -> NoReturn:
    """Report a failure on stderr and exit with its code."""
    _exit_with(exc.to_dict(), as_json=as_json, code=_exit_code(exc) if code is None else code)


def _discard_stderr() -> None:
    """stderr cannot be written (its terminal hung up, its pipe closed): point it at
    /dev/null, so that what is still buffered, and the interpreter's last flush (exit
    status 120 when it fails), go nowhere instead of failing again."""
    with contextlib.suppress(OSError, ValueError):  # no file descriptor (CliRunner)
        fd = sys.stderr.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)


def _exit_with(report: Mapping[str, Any], *, as_json: bool, code: int) -> NoReturn:
    """Print ``report`` (errMsg, errno, ...) on stderr, as JSON or as an error line; exit."""
    try:
        if as_json:
            _print_json(report, err=True)
        elif code == EXIT_USAGE:
            ctx = click.get_current_context()
            click.echo(ctx.get_usage(), err=True)
            click.echo(f"Try '{ctx.command_path} --help' for help.\n", err=True)
            click.echo(f"Error: {report['errMsg']}", err=True)
        else:
            click.echo(f"Error: {report['errMsg']}", err=True)
    except OSError:  # stderr is gone (SIGHUP from a closed terminal): exit all the same
        _discard_stderr()
    raise click.exceptions.Exit(code)


def exit_interrupted(api: str, *, as_json: bool, code: int = EXIT_INTERRUPTED) -> NoReturn:
    """Report the abort a stop signal caused; exit with ``code`` (``Interrupt.exit_code``)."""
    exit_failure(
        errors.AbortError(f"{api}:fail abort", errors.Errno.ABORT), as_json=as_json, code=code
    )


def _http_error(api: str, status: int, *, as_json: bool) -> NoReturn:
    """``--fail``: the platform has no errno for this, so ``errno`` is null."""
    report = {
        "errMsg": f"{api}:fail the server answered HTTP {status} (--fail)",
        "errno": None,
        "statusCode": status,
    }
    _exit_with(report, as_json=as_json, code=EXIT_HTTP_ERROR)


def _save_error(exc: OSError, dest: str) -> errors.FileError:
    if isinstance(exc, FileExistsError):
        return errors.FileError(
            f"downloadFile:fail file already exists {dest} (use --force to overwrite)",
            1300000 + errno_codes.EEXIST,
        )
    if exc.errno in (errno_codes.EACCES, errno_codes.EPERM):
        return errors.FileError(
            f"downloadFile:fail permission denied {dest}", errors.Errno.PERMISSION_DENIED
        )
    return errors.FileError(
        f"downloadFile:fail download save file error: {exc.strerror or exc} {dest}",
        errors.Errno.SAVE_FILE_ERROR,
    )


# --------------------------------------------------------------------------- runtime options


@dataclass(frozen=True)
class RuntimeSettings:
    """What ``--rules``/``--resolve``/``--cacert`` ask for; :meth:`build` makes the runtime."""

    rules: WeChatRules | None = None
    resolve: Mapping[str, str] = field(default_factory=dict)
    ca_file: str | None = None

    def build(self) -> Runtime:
        return Runtime(rules=self.rules, resolve=dict(self.resolve), ca_file=self.ca_file)


#: The options that only mean something under ``--rules wechat``.
_RULE_FLAGS = (
    ("app_id", "--app-id"),
    ("app_version", "--app-version"),
    ("upload_domains", "--upload-domain"),
    ("download_domains", "--download-domain"),
    ("project", "--project"),
)


def runtime_settings(
    *,
    rules_name: str | None,
    app_id: str | None = None,
    app_version: str | None = None,
    upload_domains: tuple[str, ...] = (),
    download_domains: tuple[str, ...] = (),
    project: str | None = None,
    resolve: Mapping[str, str] | None = None,
    ca_file: str | None = None,
) -> RuntimeSettings:
    """Check the runtime options together; ``click.UsageError`` (exit 2) when they clash."""
    given = {
        "app_id": app_id is not None,
        "app_version": app_version is not None,
        "upload_domains": bool(upload_domains),
        "download_domains": bool(download_domains),
        "project": project is not None,
    }
    rules: WeChatRules | None = None
    if rules_name is None:
        stray = [flag for key, flag in _RULE_FLAGS if given[key]]
        if stray:
            raise click.UsageError(
                f"{', '.join(stray)} only {'applies' if len(stray) == 1 else 'apply'} "
                "under the platform's rules: add --rules wechat"
            )
    else:
        overrides: dict[str, Any] = {}
        if app_id is not None:
            overrides["app_id"] = app_id
        if app_version is not None:
            overrides["version"] = app_version
        if upload_domains:
            overrides["upload_domains"] = list(upload_domains)
        if download_domains:
            overrides["download_domains"] = list(download_domains)
        if project is None and app_id is None:
            raise click.UsageError(
                "--rules wechat needs the mini program's AppID: add --app-id wx... "
                "(or --project DIR, whose project.config.json names it)"
            )
        try:
            if project is not None:
                rules = WeChatRules.from_project(project, **overrides)
            else:
                rules = WeChatRules(**overrides)
        except ValueError as exc:
            message = str(exc)
            for key, flag in (
                ("upload_domains", "--upload-domain"),
                ("download_domains", "--download-domain"),
                ("app_id", "--app-id"),
                ("version", "--app-version"),
            ):
                if message.startswith(key) and key in overrides:
                    message = flag + message[len(key) :]
            if message.startswith("no AppID"):
                message = (
                    f"--project {project}: no AppID there (project.config.json's appid); "
                    "add --app-id wx..."
                )
            raise click.UsageError(message) from None
    return RuntimeSettings(rules=rules, resolve=dict(resolve or {}), ca_file=ca_file)


_runtime_option_decorators: tuple[Callable[[Callable[..., Any]], Callable[..., Any]], ...] = (
    click.option(
        "--rules",
        "rules_name",
        type=click.Choice(["wechat"]),
        default=None,
        help="Apply the mini program platform's network rules (docs/rules.md): https only, "
        "the domain allowlists, ports, the fixed Referer, TLS 1.2+, 200 MB per download ...",
    ),
    click.option(
        "--app-id",
        metavar="ID",
        default=None,
        help="(--rules) The mini program's AppID, used in the Referer.",
    ),
    click.option(
        "--app-version",
        metavar="V",
        default=None,
        help="(--rules) The Referer's version: devtools (the default), 0 or a release version.",
    ),
    click.option(
        "--upload-domain",
        "upload_domains",
        multiple=True,
        metavar="D",
        help="(--rules) An uploadFile server domain, https://host[:port] as the console shows "
        "it (repeatable; replaces the --project list).",
    ),
    click.option(
        "--download-domain",
        "download_domains",
        multiple=True,
        metavar="D",
        help="(--rules) A downloadFile server domain, https://host[:port] (repeatable; "
        "replaces the --project list).",
    ),
    click.option(
        "--project",
        metavar="DIR",
        type=click.Path(exists=True, path_type=str),
        default=None,
        help="(--rules) Read the AppID, networkTimeout and domains.json from a mini program "
        "project folder (or its app.json); the flags above override it.",
    ),
    click.option(
        "--resolve",
        multiple=True,
        metavar="HOST:ADDR[:PORT]",
        callback=_parse_resolve_option,
        help="Connect to ADDR (an IP address; IPv6 in brackets) for HOST, on PORT if given, "
        "else the URL's port; TLS still checks HOST. curl's HOST:PORT:ADDR works too "
        "(repeatable).",
    ),
    click.option(
        "--cacert",
        "ca_file",
        metavar="FILE",
        type=click.Path(exists=True, dir_okay=False, path_type=str),
        default=None,
        help="Also trust the CA certificates in this PEM file (staging or company CAs).",
    ),
)


def runtime_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--rules``, ``--app-id`` ... ``--resolve``, ``--cacert`` to a command, which then
    receives them as one ``settings: RuntimeSettings`` (checked: usage errors come first)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = runtime_settings(
            rules_name=kwargs.pop("rules_name"),
            app_id=kwargs.pop("app_id"),
            app_version=kwargs.pop("app_version"),
            upload_domains=kwargs.pop("upload_domains"),
            download_domains=kwargs.pop("download_domains"),
            project=kwargs.pop("project"),
            resolve=kwargs.pop("resolve"),
            ca_file=kwargs.pop("ca_file"),
        )
        return command(*args, settings=settings, **kwargs)

    decorated: Callable[..., Any] = wrapper
    for option in reversed(_runtime_option_decorators):
        decorated = option(decorated)
    return decorated


# --------------------------------------------------------------------------- commands


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("Interrupted", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wxtransfer")
def cli() -> None:
    """Uploads and downloads the way wx.uploadFile / wx.downloadFile do them.

    Exit codes: 0 done, 1 failure, 2 usage, 22 HTTP error with --fail, 28 timeout,
    130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (the transfer is aborted, no file is left).
    """


_header_option = click.option(
    "-H",
    "--header",
    "header",
    multiple=True,
    metavar="'NAME: VALUE'",
    callback=_parse_headers,
    help="Request header (repeatable).",
)
_json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the result object (statusCode, data/filePath, header, profile, errMsg) "
    "as JSON on stdout; a failure as {errMsg, errno} on stderr.",
)
_quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")

#: The CLI's defaults are curl's, not the platform's: no overall deadline, and a stall
#: (no byte moving) of 30 s ends a transfer, so a dead connection never hangs for ever.
_DEFAULT_STALL_S = 30.0


@dataclass(frozen=True)
class Robustness:
    """``--retry``, ``--retry-delay``, ``--stall-timeout``, ``--limit-rate`` and
    ``--max-time`` / ``--timeout``, as the library's keyword arguments."""

    timeout: int
    retry: Retry | None
    stall_timeout: int
    max_speed: int | None
    connect_timeout: int | None

    def kwargs(self) -> dict[str, Any]:
        return {
            "timeout": self.timeout,
            "retry": self.retry,
            "stall_timeout": self.stall_timeout,
            "max_speed": self.max_speed,
            "connect_timeout": self.connect_timeout,
        }


def robustness_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add curl's options for bad networks; the command receives ``robust: Robustness``."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        timeout_ms: int | None = kwargs.pop("timeout")
        max_time: float | None = kwargs.pop("max_time")
        retries: int = kwargs.pop("retries")
        retry_delay: float | None = kwargs.pop("retry_delay")
        retry_max_time: float | None = kwargs.pop("retry_max_time")
        connect: float | None = kwargs.pop("connect_timeout")
        stall: float | None = kwargs.pop("stall_timeout")
        rate: int | None = kwargs.pop("limit_rate")
        if timeout_ms is not None and max_time is not None:
            raise click.UsageError("use --timeout MS or --max-time SECONDS, not both")
        if max_time is not None:
            timeout_ms = math.ceil(max_time * 1000)
        retry = None
        if retries:
            delay = retry_delay if retry_delay is not None else 1.0
            retry = Retry(
                total=retries,
                backoff=delay,
                max_backoff=delay if retry_delay is not None else 30.0,
                max_time=retry_max_time or None,
            )
        robust = Robustness(
            timeout=timeout_ms if timeout_ms is not None else 0,
            retry=retry,
            stall_timeout=math.ceil((_DEFAULT_STALL_S if stall is None else stall) * 1000),
            max_speed=rate or None,
            connect_timeout=math.ceil(connect * 1000) if connect else None,
        )
        return command(*args, robust=robust, **kwargs)

    decorated: Callable[..., Any] = wrapper
    for option in reversed(_robustness_option_decorators):
        decorated = option(decorated)
    return decorated


_robustness_option_decorators = [
    click.option(
        "--timeout",
        type=click.IntRange(min=0),
        metavar="MS",
        default=None,
        help="Limit for the whole transfer in milliseconds, as on the platform (0: none; "
        "default: none, as curl).",
    ),
    click.option(
        "-m",
        "--max-time",
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        default=None,
        help="The same limit in seconds, as curl's --max-time.",
    ),
    click.option(
        "--retry",
        "retries",
        type=click.IntRange(min=0),
        metavar="N",
        default=0,
        help="Try again up to N times after a failure worth it (cannot connect, reset, "
        "cut, stall, 408/429/500/502/503/504); a download continues where it stopped.",
    ),
    click.option(
        "--retry-delay",
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        default=None,
        help="Wait up to this long between attempts (default: a doubling backoff from 1 s).",
    ),
    click.option(
        "--retry-max-time",
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        default=None,
        help="Start no retry later than this after the first attempt began.",
    ),
    click.option(
        "--connect-timeout",
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        default=None,
        help="Give up connecting after this long (each attempt; retried with --retry).",
    ),
    click.option(
        "--stall-timeout",
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        default=None,
        help=f"End (or retry) a transfer once no byte moved for this long (default "
        f"{_DEFAULT_STALL_S:g}; 0: never).",
    ),
    click.option(
        "--limit-rate",
        type=SIZE,
        metavar="RATE",
        default=None,
        help="At most this many bytes per second, curl's suffixes (500K, 1M).",
    ),
]
_fail_option = click.option(
    "-f",
    "--fail",
    "fail_http",
    is_flag=True,
    help="Exit 22 when the server answers with a status >= 400 (a download is removed).",
)


@cli.command()
@click.argument("url")
@click.argument("file", type=click.Path(path_type=str), required=False)
@click.option("--name", default="file", show_default=True, help="Multipart field name of FILE.")
@click.option(
    "-F",
    "--form",
    "form",
    multiple=True,
    metavar="KEY=VALUE|KEY=@FILE",
    callback=_parse_form,
    help="A text field, or with @ a file to attach (repeatable; the same name may repeat). "
    "Fields go first, then the files in order. With --resumable: the upload's metadata.",
)
@click.option(
    "--form-string",
    "form_string",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_parse_form,
    help="A text field taken literally, even when it starts with @ (repeatable).",
)
@click.option(
    "--resumable",
    is_flag=True,
    help="Upload FILE with tus 1.0 to URL (a tus endpoint); the same command continues an "
    "upload that was cut, stopped or killed.",
)
@_header_option
@robustness_options
@_json_option
@_quiet_option
@_fail_option
@runtime_options
def upload(
    url: str,
    file: str | None,
    name: str,
    form: list[tuple[str, str]],
    form_string: list[tuple[str, str]],
    resumable: bool,
    header: dict[str, str],
    robust: Robustness,
    as_json: bool,
    quiet: bool,
    fail_http: bool,
    settings: RuntimeSettings,
) -> None:
    """Upload FILE to URL as multipart/form-data (like wx.uploadFile), with the files of
    -F NAME=@PATH, all in one request.

    The response body is printed on stdout (with --resumable: the upload's URL).
    """
    api = "uploadFile"
    fields, attached = _split_form(form, form_string)
    files = ([(name, file)] if file is not None else []) + attached
    if not files:
        raise click.UsageError("nothing to upload: give FILE, or -F NAME=@FILE")
    if resumable and (file is None or attached):
        raise click.UsageError("--resumable uploads one FILE (-F KEY=VALUE is its metadata)")
    # Interrupt first: its handlers stay until the runtime has closed and removed its files.
    with Interrupt() as interrupt, settings.build() as runtime, _reporter(quiet) as reporter:
        if resumable:
            assert file is not None
            task = runtime.upload_resumable(
                url, file, metadata=fields, header=header, **robust.kwargs()
            )
        else:
            task = runtime.upload_file(
                url, files=files, header=header, form_data=fields, **robust.kwargs()
            )
        label = "upload " + ", ".join(os.path.basename(path) for _, path in files)
        tracker = reporter.track(label)
        _show_retries(task, tracker, label, robust)

        def on_progress(p: UploadProgress) -> None:
            tracker.update(p.total_bytes_sent, p.total_bytes_expected_to_send)

        task.on_progress_update(on_progress)
        try:
            res = wait(task, interrupt)
        except errors.TransferError as exc:
            reporter.close()
            if resumable and not isinstance(exc, errors.InvalidArgumentError):
                with contextlib.suppress(OSError):
                    click.echo(
                        "the server keeps what it received: run the same command again to "
                        "continue.",
                        err=True,
                    )
            if interrupt.interrupted:
                exit_interrupted(api, as_json=as_json, code=interrupt.exit_code)
            exit_failure(exc, as_json=as_json)
        reporter.close()
    if interrupt.interrupted:
        exit_interrupted(api, as_json=as_json, code=interrupt.exit_code)
    if fail_http and res.status_code >= 400:
        _http_error(api, res.status_code, as_json=as_json)
    if as_json:
        _print_json(res.to_dict())
    else:
        click.echo(res.data, nl=not res.data.endswith("\n"))


@cli.command()
@click.argument("url")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=str),
    help="Save to this path (or into this folder, under the remote name).",
)
@click.option(
    "-O",
    "--remote-name",
    is_flag=True,
    help="Save in the current folder under the name from Content-Disposition or the URL "
    "(the default).",
)
@_header_option
@robustness_options
@click.option(
    "-C",
    "--continue",
    "resume",
    is_flag=True,
    help="Keep the bytes of a failed or interrupted download in PATH.wxpart and continue "
    "them with the same command (validated: a changed file starts over).",
)
@click.option(
    "--checksum",
    metavar="ALGO:HEX",
    default=None,
    help="Check the file against this digest (md5, sha1, sha256, sha512) before it takes its name.",
)
@_json_option
@_quiet_option
@_fail_option
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@runtime_options
def download(
    url: str,
    output: str | None,
    remote_name: bool,
    header: dict[str, str],
    robust: Robustness,
    resume: bool,
    checksum: str | None,
    as_json: bool,
    quiet: bool,
    fail_http: bool,
    force: bool,
    settings: RuntimeSettings,
) -> None:
    """Download URL to a file (like wx.downloadFile).

    The file is named after the response's Content-Disposition or the URL's path, made
    safe (a plain name in the current folder), unless -o names it. An existing file is
    never overwritten without --force. The saved path is printed on stdout.
    """
    api = "downloadFile"
    if output is not None and remote_name:
        raise click.UsageError("use -o PATH or -O, not both")
    folder = "."
    explicit: str | None = None
    if output is not None:
        if os.path.isdir(output):
            folder = output
        else:
            explicit = output
            if not force and os.path.lexists(explicit):
                exit_failure(_save_error(FileExistsError(), explicit), as_json=as_json)
            parent = os.path.dirname(explicit) or "."
            if not os.path.isdir(parent):
                exit_failure(
                    errors.FileError(
                        f"downloadFile:fail download save file error: no such folder {parent}",
                        errors.Errno.SAVE_FILE_ERROR,
                    ),
                    as_json=as_json,
                )

    if resume:  # the part waits beside a name known before the request: -o, or the URL's
        _download_resumable(
            url,
            explicit or _inside(folder, remote_file_name(url, {})),
            header,
            robust,
            checksum,
            as_json=as_json,
            quiet=quiet,
            fail_http=fail_http,
            force=force,
            settings=settings,
        )
        return
    state: dict[str, Any] = {}
    # Interrupt first: its handlers stay until the runtime has closed and removed its files.
    with Interrupt() as interrupt, settings.build() as runtime, _reporter(quiet) as reporter:
        task = runtime.download_file(url, header=header, checksum=checksum, **robust.kwargs())
        label = f"download {os.path.basename(explicit) if explicit else ''}".rstrip()
        tracker = reporter.track(label)
        _show_retries(task, tracker, label, robust)

        def on_headers(h: HeadersReceived) -> None:
            state["status"] = h.status_code
            if fail_http and h.status_code >= 400:
                state["http_error"] = h.status_code
                task.abort()
                return
            if explicit is None:
                name = remote_file_name(url, h.header)
                dest = _inside(folder, name)
                state["dest"] = dest
                tracker.describe(f"download {name}")
                if not force and os.path.lexists(dest):
                    state["exists"] = dest
                    task.abort()

        def on_progress(p: DownloadProgress) -> None:
            tracker.update(p.total_bytes_written, p.total_bytes_expected_to_write)

        task.on_headers_received(on_headers)
        task.on_progress_update(on_progress)
        res: DownloadFileResult | None = None
        failure: errors.TransferError | None = None
        try:
            res = wait(task, interrupt)
        except errors.TransferError as exc:
            failure = exc
        reporter.close()

        temp = res.temp_file_path if res is not None else None
        try:
            if interrupt.interrupted:
                exit_interrupted(api, as_json=as_json, code=interrupt.exit_code)
            if "http_error" in state:
                _http_error(api, state["http_error"], as_json=as_json)
            if "exists" in state:
                exit_failure(_save_error(FileExistsError(), state["exists"]), as_json=as_json)
            if failure is not None:
                exit_failure(failure, as_json=as_json)
            assert res is not None and temp is not None
            if fail_http and res.status_code >= 400:
                _http_error(api, res.status_code, as_json=as_json)
            dest = (
                explicit or state.get("dest") or _inside(folder, remote_file_name(url, res.header))
            )
            try:
                move_into_place(temp, dest, force=force, cancel=interrupt.event)
            except MoveCancelled:  # a stop signal during a copy across file systems
                exit_interrupted(api, as_json=as_json, code=interrupt.exit_code)
            except OSError as exc:
                exit_failure(_save_error(exc, dest), as_json=as_json)
            temp = None
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)

    path = os.path.abspath(dest)
    if as_json:
        out = {"filePath": path, **res.to_dict()}
        out.pop("tempFilePath", None)
        _print_json(out)
    else:
        click.echo(path)
        if not quiet and Console(stderr=True).is_terminal:
            click.echo(f"saved {human_size(res.data_length)} (HTTP {res.status_code})", err=True)


def _show_retries(task: Task[Any, Any], tracker: Tracker, label: str, robust: Robustness) -> None:
    """Show each retry on the bar as it happens; the label comes back with the answer."""
    if robust.retry is None:
        return
    total = robust.retry.total

    def on_retry(event: RetryEvent) -> None:
        # the error's headline only ("connection reset"), so the bar keeps its columns
        reason = (
            event.error.err_msg.partition(":fail ")[2].partition(":")[0]
            if event.error
            else f"HTTP {event.status_code}"
        )
        tracker.describe(
            f"{label} · retry {event.attempt - 1}/{total} in {event.delay:.1f} s: {reason}"
        )

    task.on_retry(on_retry)
    task.on_headers_received(lambda h: tracker.describe(label))


def _download_resumable(
    url: str,
    dest: str,
    header: dict[str, str],
    robust: Robustness,
    checksum: str | None,
    *,
    as_json: bool,
    quiet: bool,
    fail_http: bool,
    force: bool,
    settings: RuntimeSettings,
) -> None:
    """``download -C``: straight to ``dest``, its bytes waiting in ``dest.wxpart`` when it
    fails or is interrupted, continued by the same command."""
    api = "downloadFile"
    if not force and os.path.lexists(dest):
        exit_failure(_save_error(FileExistsError(), dest), as_json=as_json)
    with Interrupt() as interrupt, settings.build() as runtime, _reporter(quiet) as reporter:
        task = runtime.download_file(
            url, header=header, file_path=dest, resume=True, checksum=checksum, **robust.kwargs()
        )
        label = f"download {os.path.basename(dest)}"
        tracker = reporter.track(label)
        _show_retries(task, tracker, label, robust)
        task.on_progress_update(
            lambda p: tracker.update(p.total_bytes_written, p.total_bytes_expected_to_write)
        )
        failure: errors.TransferError | None = None
        try:
            res = wait(task, interrupt)
        except errors.TransferError as exc:
            failure = exc
        reporter.close()
    if failure is not None or interrupt.interrupted:
        kept = dest + PART_SUFFIX
        if os.path.exists(kept):
            held = os.path.getsize(kept)
            with contextlib.suppress(OSError):
                click.echo(
                    f"{human_size(held)} received wait in {kept}: run the same command again "
                    "(with -C) to continue.",
                    err=True,
                )
        if interrupt.interrupted:
            exit_interrupted(api, as_json=as_json, code=interrupt.exit_code)
        assert failure is not None
        exit_failure(failure, as_json=as_json)
    if fail_http and res.status_code >= 400:
        with contextlib.suppress(OSError):
            os.unlink(dest)
        _http_error(api, res.status_code, as_json=as_json)
    path = os.path.abspath(dest)
    if as_json:
        _print_json({**res.to_dict(), "filePath": path})
    else:
        click.echo(path)


@contextlib.contextmanager
def _server_extra(command: str) -> Iterator[None]:
    """Around the import of the dev server: without aiohttp (the ``server`` extra), a
    one-line error (exit 1) that says what to install instead of a traceback."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "aiohttp":
            raise
        raise click.ClickException(
            f"'wxtransfer {command}' needs aiohttp, which comes with the server extra: "
            "pip install 'wxtransfer[server]'"
        ) from None


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--root",
    default="wxtransfer-files",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder uploads are stored in (created if missing).",
)
@click.option("--max-size", type=SIZE, default=None, help="Largest upload body (e.g. 100MiB).")
@click.option("--token", default=None, help="Require 'Authorization: Bearer TOKEN'.")
def serve(host: str, port: int, root: Path, max_size: int | None, token: str | None) -> None:
    """Run the development server: POST /upload, GET /files/NAME, GET / lists files."""
    with _server_extra("serve"):
        from . import _server

    if token is not None and not token:
        raise click.BadParameter("must not be empty", param_hint="--token")
    try:
        _server.serve(host, port, root=root, max_size=max_size, token=token)
    except OSError as exc:
        raise click.ClickException(
            f"cannot serve on {host}:{port}: {exc.strerror or exc}"
        ) from None


# --------------------------------------------------------------------------- demo


@cli.command()
@click.option(
    "--size",
    type=SIZE,
    default="256MiB",
    show_default=True,
    help="Size of the sample file (256MiB, 10MB, 1048576 ...).",
)
def demo(size: int) -> None:
    """Round trip through a local dev server: upload a sample file, download it, compare."""
    with _server_extra("demo"):
        from . import _demo

    _demo.run(size)


def main(argv: list[str] | None = None) -> None:
    """The command line; the console script and ``python -m wxtransfer`` reach it through
    ``wxtransfer.__main__.main``, which says which extra to install when click or rich is
    missing."""
    # --timeout is documented in milliseconds: the library's warning is for Python callers.
    warnings.filterwarnings("ignore", category=TimeoutUnitWarning)
    cli.main(args=argv, prog_name="wxtransfer")


if __name__ == "__main__":  # pragma: no cover
    main()
