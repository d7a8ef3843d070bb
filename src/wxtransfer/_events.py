"""What the layers below the task may tell it, and when its waiters wake.

The engine, the transport and the file writer never import the task module: they talk to
a ``TaskEvents`` (the task implements it) and hand aborts back through an ``Aborter``
(the engine implements it). So imports point one way, down, and the types stay checked.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._errors import TransferError
    from ._results import (
        DownloadFileResult,
        DownloadProgress,
        HeadersReceived,
        RetryEvent,
        UploadFileResult,
        UploadProgress,
    )

__all__ = ["Aborter", "TaskEvents", "hold_wakeups", "release_wakeups"]


class Aborter(Protocol):
    """Where a task sends its ``abort()`` once a transfer runs it (the engine), and news of
    a headers listener added while it runs."""

    def abort(self, task: TaskEvents) -> None: ...

    def want_headers(self, task: TaskEvents) -> None: ...


class TaskEvents(Protocol):
    """The events of one transfer, as the engine thread reports them."""

    def _attach(self, engine: Aborter) -> bool:
        """Bind to the engine that runs it; False when ``abort()`` came first."""
        ...

    def _report_progress(self, event: UploadProgress | DownloadProgress) -> None: ...

    def _report_headers(self, event: HeadersReceived) -> None: ...

    def _wants_headers(self) -> bool:
        """Someone listens for the headers: report them as soon as the head ends."""
        ...

    def _report_retry(self, event: RetryEvent) -> None:
        """An attempt is about to start again (never replayed to a late listener)."""
        ...

    def _report_done(self, outcome: UploadFileResult | DownloadFileResult | TransferError) -> bool:
        """Record the outcome once; False when one was recorded already."""
        ...


class _Wakeups(threading.local):
    held: list[threading.Lock] | None = None


_wakeups = _Wakeups()


def hold_wakeups() -> None:
    """Make this thread's finished tasks wake their waiters only at ``release_wakeups()``.

    The engine and the writer call it once: a waiter woken in the middle of their work
    would only contend with them for the GIL. They release just before they block or
    call into C, where the woken caller can run at once.
    """
    _wakeups.held = []


def release_wakeups() -> None:
    """Wake the waiters held on this thread (see ``hold_wakeups``)."""
    held = _wakeups.held
    if held:
        _wakeups.held = []
        for waiter in held:
            waiter.release()


def wake(waiters: list[threading.Lock]) -> None:
    """Release ``waiters`` now, or at this thread's next ``release_wakeups()`` if it holds."""
    held = _wakeups.held
    if held is None:
        for waiter in waiters:
            waiter.release()
    else:
        held += waiters
