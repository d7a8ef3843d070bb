"""Tasks: what upload_file / download_file return. State, listeners, result, await.

The engine reports events with the ``_report_*`` methods from its own thread; every user
callable runs on the task's dispatcher, one at a time and in the order the events happened.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import threading
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

from ._dispatch import Dispatcher, run_callback
from ._errors import AbortError, Errno, TransferError
from ._events import Aborter, wake
from ._options import Api
from ._results import (
    DownloadFileResult,
    DownloadProgress,
    HeadersReceived,
    RetryEvent,
    UploadFileResult,
    UploadProgress,
)

__all__ = ["DownloadTask", "Task", "UploadTask"]

logger = logging.getLogger("wxtransfer")

R = TypeVar("R", UploadFileResult, DownloadFileResult)
P = TypeVar("P", UploadProgress, DownloadProgress)
Listener = Callable[[Any], object]


class _Channel:
    """One kind of event: its listeners, the latest delivered (kept for a late listener
    when the kind ``replays``), how many are queued."""

    __slots__ = ("latest", "listeners", "pending", "replays")

    def __init__(self, replays: bool = True) -> None:
        self.listeners: list[Listener] = []
        self.latest: Any = None
        self.pending = 0
        self.replays = replays


class Task(Generic[R, P]):
    """A transfer under way. Created by the runtime; never instantiate it yourself."""

    def __init__(
        self,
        api: Api,
        dispatcher: Dispatcher,
        *,
        success: Callable[[R], object] | None = None,
        fail: Callable[[TransferError], object] | None = None,
        complete: Callable[[R | TransferError], object] | None = None,
    ) -> None:
        self._api = api
        self._dispatcher = dispatcher
        self._success: Callable[[R], object] | None = success
        self._fail: Callable[[TransferError], object] | None = fail
        self._complete: Callable[[R | TransferError], object] | None = complete
        self._engine: Aborter | None = None
        self._lock = threading.Lock()
        self._progress = _Channel()
        self._headers = _Channel()
        self._retries = _Channel(replays=False)  # a retry is news only when it happens
        self._outcome: R | TransferError | None = None
        self._finished = False  # success/fail has been dispatched
        # An Event costs a Condition per task; most tasks are never waited on, so each
        # waiter brings a held lock of its own, released when the callbacks are done.
        self._callbacks_done = False
        self._waiters: list[threading.Lock] | None = None
        self._done_callbacks: list[Callable[[], object]] = []
        self._runtime_tasks: set[Task[Any, Any]] | None = None  # the runtime's, while it runs
        self._abort_requested = False
        self._unobserved = False

    # ---- the platform's task methods -------------------------------------------------

    def abort(self) -> None:
        """Abort the task: ``fail`` gets ``<api>:fail abort``, then ``complete``.

        Idempotent, from any thread or callback; does nothing once the task is done.
        """
        with self._lock:
            if self._outcome is not None or self._abort_requested:
                return
            self._abort_requested = True
            engine = self._engine
        if engine is not None:
            engine.abort(self)
        else:
            self._report_done(AbortError(f"{self._api}:fail abort", Errno.ABORT))

    def on_progress_update(self, listener: Callable[[P], object]) -> None:
        """Call ``listener`` with each progress event (at once with the latest, if any)."""
        self._add_listener(self._progress, listener)

    def off_progress_update(self, listener: Callable[[P], object] | None = None) -> None:
        """Remove ``listener``, or every progress listener when none is given."""
        self._remove_listener(self._progress, listener)

    def on_headers_received(self, listener: Callable[[HeadersReceived], object]) -> None:
        """Call ``listener`` with the response headers (at once, if they already arrived)."""
        self._add_listener(self._headers, listener)
        engine = self._engine
        if engine is not None and self._outcome is None:
            engine.want_headers(self)  # a head already in but not yet read is read now

    def off_headers_received(
        self, listener: Callable[[HeadersReceived], object] | None = None
    ) -> None:
        """Remove ``listener``, or every headers listener when none is given."""
        self._remove_listener(self._headers, listener)

    def on_retry(self, listener: Callable[[RetryEvent], object]) -> None:
        """Call ``listener`` with a ``RetryEvent`` each time an attempt starts again."""
        self._add_listener(self._retries, listener)

    def off_retry(self, listener: Callable[[RetryEvent], object] | None = None) -> None:
        """Remove ``listener``, or every retry listener when none is given."""
        self._remove_listener(self._retries, listener)

    onProgressUpdate = on_progress_update
    offProgressUpdate = off_progress_update
    onHeadersReceived = on_headers_received
    offHeadersReceived = off_headers_received
    onRetry = on_retry
    offRetry = off_retry

    # ---- the Python face ---------------------------------------------------------------

    def done(self) -> bool:
        """Whether the outcome is known (success or failure)."""
        return self._outcome is not None

    def result(self, timeout: float | None = None) -> R:
        """Wait for the outcome and return it, or raise its ``TransferError``.

        ``timeout`` is in seconds; when it runs out, builtin ``TimeoutError`` is raised and
        the task goes on. Returns once ``success``/``fail`` and ``complete`` have run.
        """
        dispatcher = self._dispatcher
        if not dispatcher.is_current():
            if dispatcher.runs_here():  # e.g. a Jupyter cell: the loop is this thread
                if not self._callbacks_done:
                    self._add_done_callback(dispatcher.wake)
                waited = dispatcher.run_until(lambda: self._callbacks_done, timeout)
            else:
                waited = self._wait_callbacks(timeout)
            if not waited:
                raise builtins.TimeoutError(f"{self._api} task not done after {timeout} s")
        elif self._outcome is None:
            raise RuntimeError(
                "task.result() called from a callback before the task is done: it would "
                "block the thread the task's own callbacks run on; use the complete callback"
            )
        outcome = self._outcome
        assert outcome is not None
        self._unobserved = False
        if isinstance(outcome, TransferError):
            raise outcome
        return outcome

    def exception(self, timeout: float | None = None) -> TransferError | None:
        """Wait like ``result()`` and return the failure, or None on success."""
        try:
            self.result(timeout)
        except TransferError as exc:
            return exc
        return None

    def __await__(self) -> Generator[Any, None, R]:
        return self._wait_async().__await__()

    async def wait(self) -> R:
        """Wait for the outcome in asyncio, like ``await task``, as a coroutine: for
        ``asyncio.create_task(task.wait())``, ``asyncio.wait_for`` and the like."""
        return await self._wait_async()

    async def _wait_async(self) -> R:
        import asyncio  # only code that awaits needs it: not imported with wxtransfer

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        def on_done() -> None:
            try:
                here = asyncio.get_running_loop()
            except RuntimeError:
                here = None
            if here is loop:
                wake()
            else:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(wake)

        self._add_done_callback(on_done)
        try:
            await future
        except asyncio.CancelledError:
            self.abort()
            raise
        return self.result(0)

    def __repr__(self) -> str:
        state = "done" if self._outcome is not None else "running"
        return f"<{type(self).__name__} {self._api} {state}>"

    # ---- engine side -------------------------------------------------------------------

    def _orphan(self, reason: str) -> None:
        """In a forked child: the transfer runs in the parent, which runs its callbacks.
        Here it ends as aborted, silently, so a wait on it returns instead of hanging."""
        self._lock = threading.Lock()  # another thread may have held it at the fork
        if self._outcome is None:
            error = AbortError(f"{self._api}:fail abort: {reason}", Errno.ABORT)
            error.__traceback__ = None
            self._outcome = error
        self._finished = self._callbacks_done = True
        self._waiters = None
        self._done_callbacks = []
        self._runtime_tasks = None
        self._unobserved = False

    def _attach(self, engine: Aborter) -> bool:
        """Bind to the engine; False when abort() already ran."""
        with self._lock:
            self._engine = engine
            return not self._abort_requested

    def _report_progress(self, event: UploadProgress | DownloadProgress) -> None:
        self._report(event, self._progress)

    def _report_headers(self, event: HeadersReceived) -> None:
        self._report(event, self._headers)

    def _report_retry(self, event: RetryEvent) -> None:
        self._report(event, self._retries)

    def _wants_headers(self) -> bool:
        return bool(self._headers.listeners)

    def _report(self, event: Any, channel: _Channel) -> None:
        with self._lock:
            if not channel.listeners and not channel.pending:
                # Nobody listens: keep it for a late listener, skip the dispatcher.
                if channel.replays and not self._finished:
                    channel.latest = event
                return
            channel.pending += 1
        self._dispatcher.call(lambda: self._deliver(event, channel))

    def _report_done(self, outcome: UploadFileResult | DownloadFileResult | TransferError) -> bool:
        """Record the outcome once; later reports are ignored. True if this one counted.

        The engine reports the result of this task's own API (R), or a TransferError.
        """
        if isinstance(outcome, TransferError):
            # The traceback only shows our internals and would tie the task in a cycle.
            outcome.__traceback__ = None
            if outcome.__cause__ is not None:
                outcome.__cause__.__traceback__ = None
        with self._lock:
            if self._outcome is not None:
                return False
            self._outcome = outcome  # type: ignore[assignment]  # of this task's API
            quiet = (
                self._success is None
                and self._fail is None
                and self._complete is None
                and not self._progress.pending
                and not self._headers.pending
                and not self._retries.pending
            )
        if quiet:  # no user callable to run, nothing queued before it: finish here
            self._deliver_outcome()
        else:
            self._dispatcher.call(self._deliver_outcome)
        return True

    # ---- dispatcher side ---------------------------------------------------------------

    def _deliver(self, event: Any, channel: _Channel) -> None:
        with self._lock:
            channel.pending -= 1
            if self._finished:
                return
            if channel.replays:
                channel.latest = event
            listeners = list(channel.listeners)
        for fn in listeners:
            _call(fn, event)

    def _add_listener(self, channel: _Channel, fn: Listener) -> None:
        if not callable(fn):
            raise TypeError(f"listener should be callable, not {type(fn).__name__}")
        with self._lock:
            channel.listeners.append(fn)
            # Events still queued will reach the new listener; only when none is queued
            # is the latest delivered one replayed, so it never sees an event twice.
            replay = channel.latest if channel.pending == 0 and not self._finished else None
            if replay is not None:
                channel.pending += 1  # the outcome waits for it, as for any queued event
        if replay is not None:
            self._dispatcher.call(lambda: self._replay(fn, replay, channel))

    def _replay(self, fn: Listener, event: Any, channel: _Channel) -> None:
        with self._lock:
            channel.pending -= 1
            wanted = not self._finished and any(f is fn for f in channel.listeners)
        if wanted:
            _call(fn, event)

    def _remove_listener(self, channel: _Channel, fn: Listener | None) -> None:
        with self._lock:
            if fn is None:
                channel.listeners.clear()
                return
            for i, registered in enumerate(channel.listeners):
                if registered is fn or registered == fn:
                    del channel.listeners[i]
                    return

    def _deliver_outcome(self) -> None:
        outcome = self._outcome
        with self._lock:
            self._finished = True
        if isinstance(outcome, TransferError):
            if self._fail is None and self._complete is None:
                self._unobserved = True
            if self._fail is not None:
                _call(self._fail, outcome)
        elif self._success is not None:
            _call(self._success, outcome)
        if self._complete is not None:
            _call(self._complete, outcome)
        with self._lock:
            self._callbacks_done = True
            waiters, self._waiters = self._waiters, None
            callbacks, self._done_callbacks = self._done_callbacks, []
            tasks, self._runtime_tasks = self._runtime_tasks, None
        if waiters:
            wake(waiters)
        if tasks is not None:
            tasks.discard(self)
        for cb in callbacks:
            run_callback(cb)

    def _add_done_callback(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` once callbacks are done: at once if they are, else on the dispatcher."""
        with self._lock:
            if not self._callbacks_done:
                self._done_callbacks.append(fn)
                return
        fn()

    def _wait_callbacks(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (None: for ever) for the callbacks to be done."""
        if self._callbacks_done:
            return True
        if timeout is not None and not timeout > 0:  # like Event.wait: only look
            return self._callbacks_done
        waiter = threading.Lock()
        waiter.acquire()
        with self._lock:
            if self._callbacks_done:
                return True
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
        if waiter.acquire(True, -1 if timeout is None else timeout):
            return True
        with self._lock:  # timed out: unless the callbacks just finished, stop waiting
            if self._callbacks_done:
                return True
            if self._waiters is not None:
                self._waiters.remove(waiter)
            return False

    def __del__(self) -> None:
        if self._unobserved:
            logger.warning("%s task failed and nobody saw it: %r", self._api, self._outcome)


def _call(fn: Callable[[Any], object], arg: Any) -> None:
    try:
        fn(arg)
    except Exception:
        logger.exception("exception in wxtransfer callback %r", fn)


class UploadTask(Task[UploadFileResult, UploadProgress]):
    """The task ``upload_file`` returns."""


class DownloadTask(Task[DownloadFileResult, DownloadProgress]):
    """The task ``download_file`` returns."""
