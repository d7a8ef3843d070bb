"""Exit statuses, stop signals and failure reports of the command line.

The statuses are curl's where curl has one (``man curl``, EXIT CODES): a failure libcurl
reported exits with libcurl's code (7 cannot connect, 18 a body cut short, 47 too many
redirects, 60 a certificate ...), as curl's own exit status is that code.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import json
import os
import signal
import sys
import threading
from collections.abc import Mapping
from enum import IntEnum
from types import FrameType
from typing import Any, NoReturn, TypeVar

import click

from .. import _errors as errors
from .._results import DownloadFileResult, UploadFileResult
from .._task import Task

__all__ = [
    "ExitStatus",
    "Interrupt",
    "discard_stderr",
    "exit_failure",
    "exit_interrupted",
    "exit_status",
    "exit_with",
    "http_error",
    "print_json",
    "save_error",
    "wait",
]

R = TypeVar("R", UploadFileResult, DownloadFileResult)

#: How long to wait for an aborted task to report its end, in seconds.
_ABORT_GRACE = 30.0


class ExitStatus(IntEnum):
    """The command's exit statuses: curl's numbers where curl has one."""

    OK = 0
    #: any other failure: a file error, a checksum mismatch, a rule refused the call
    FAILURE = 1
    #: a usage error, or an argument the library refuses (curl uses 2 for "failed to init")
    USAGE = 2
    COULDNT_RESOLVE_HOST = 6
    COULDNT_CONNECT = 7
    PARTIAL_FILE = 18
    #: ``--fail`` and the server answered with a status >= 400
    HTTP_ERROR = 22
    #: the file could not be written or saved
    WRITE_ERROR = 23
    #: a file to upload could not be read
    READ_ERROR = 26
    OPERATION_TIMEDOUT = 28
    TOO_MANY_REDIRECTS = 47
    GOT_NOTHING = 52
    RECV_ERROR = 56
    PEER_FAILED_VERIFICATION = 60
    BAD_CONTENT_ENCODING = 61
    #: a stop signal aborted the transfer: 128 + the signal's number, as shells report it
    HUNG_UP = 128 + 1
    INTERRUPTED = 128 + 2
    TERMINATED = 128 + 15


#: libcurl codes that are not an exit status of their own: none, or the transfer was
#: stopped by wxtransfer's own callback, which reports why in its error class.
_NOT_CURLS = frozenset({0, 42})


def exit_status(exc: errors.TransferError) -> int:
    """The exit status of a failed transfer: curl's code where curl has one."""
    if isinstance(exc, errors.TimeoutError):
        return ExitStatus.OPERATION_TIMEDOUT
    if isinstance(exc, errors.AbortError):
        return ExitStatus.INTERRUPTED
    if isinstance(exc, errors.InvalidArgumentError):
        return ExitStatus.USAGE
    if isinstance(exc, errors.RuleError | errors.ChecksumError):
        return ExitStatus.FAILURE
    if exc.curl_code not in _NOT_CURLS and 0 < exc.curl_code < 100:
        return exc.curl_code
    if exc.errno == errors.Errno.TOO_MANY_REDIRECTS:
        return ExitStatus.TOO_MANY_REDIRECTS
    if isinstance(exc, errors.FileError) and exc.errno in (
        errors.Errno.SAVE_FILE_ERROR,
        errors.Errno.PERMISSION_DENIED,
    ):
        return ExitStatus.WRITE_ERROR
    return ExitStatus.FAILURE


# --------------------------------------------------------------------------- stop signals

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


# --------------------------------------------------------------------------- reports


def print_json(data: Mapping[str, Any], *, err: bool = False) -> None:
    """One JSON object on one line (JSON Lines), on stdout or stderr."""
    click.echo(json.dumps(data, ensure_ascii=False, default=str), err=err)


def discard_stderr() -> None:
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


def exit_with(
    report: Mapping[str, Any], *, as_json: bool, code: int, quiet: bool = False
) -> NoReturn:
    """Print ``report`` (errMsg, errno, ...) on stderr, as JSON or as an error line (not
    when ``quiet``: curl's ``-s`` without ``-S``); exit with ``code``."""
    try:
        if as_json:
            print_json(report, err=True)
        elif code == ExitStatus.USAGE:
            ctx = click.get_current_context()
            click.echo(ctx.get_usage(), err=True)
            click.echo(f"Try '{ctx.command_path} --help' for help.\n", err=True)
            click.echo(f"Error: {report['errMsg']}", err=True)
        elif not quiet:
            click.echo(f"Error: {report['errMsg']}", err=True)
    except OSError:  # stderr is gone (SIGHUP from a closed terminal): exit all the same
        discard_stderr()
    raise click.exceptions.Exit(code)


def exit_failure(
    exc: errors.TransferError, *, as_json: bool, code: int | None = None, quiet: bool = False
) -> NoReturn:
    """Report a failure on stderr and exit with its status."""
    exit_with(
        exc.to_dict(), as_json=as_json, code=exit_status(exc) if code is None else code, quiet=quiet
    )


def exit_interrupted(
    api: str, *, as_json: bool, code: int = ExitStatus.INTERRUPTED, quiet: bool = False
) -> NoReturn:
    """Report the abort a stop signal caused; exit with ``code`` (``Interrupt.exit_code``)."""
    exit_failure(
        errors.AbortError(f"{api}:fail abort", errors.Errno.ABORT),
        as_json=as_json,
        code=code,
        quiet=quiet,
    )


def http_error_report(api: str, status: int) -> dict[str, Any]:
    """``--fail``: the platform has no errno for this, so ``errno`` is null."""
    return {
        "errMsg": f"{api}:fail the server answered HTTP {status} (--fail)",
        "errno": None,
        "statusCode": status,
    }


def http_error(api: str, status: int, *, as_json: bool, quiet: bool = False) -> NoReturn:
    """Exit 22 for ``--fail``."""
    exit_with(
        http_error_report(api, status), as_json=as_json, code=ExitStatus.HTTP_ERROR, quiet=quiet
    )


def save_error(exc: OSError, dest: str) -> errors.FileError:
    """The error of a download that cannot take its name ``dest``."""
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
