"""The engine: one thread per runtime that owns a CurlMulti and every easy handle.

libcurl handles are not thread-safe, so nothing else touches them: other threads post
commands to a queue and write a byte to a wake-up pipe. The loop is ``perform()`` on every
handle at once, then ``poll()`` on the sockets ``fdset()`` names plus the pipe: with a few
transfers in flight that is one C call per wake-up where the socket interface
(``socket_action``) costs a Python callback per socket change and a call per ready socket.
Uploads and downloads each have their own limit of transfers in flight; the rest wait in
order and start as others end.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import logging
import math
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import pycurl

from ._errors import AbortError, Errno, TimeoutError, TransferError
from ._events import TaskEvents, hold_wakeups, release_wakeups
from ._flow import Exchange, FlowRunner, LazyFlow
from ._options import Api, Request
from ._output import Writer
from ._results import DownloadFileResult, UploadFileResult
from ._retry import Retry
from ._trace import safe_url
from ._transport import Transfer, TransportConfig, new_template
from ._tus import TusFlow

__all__ = ["Engine"]

logger = logging.getLogger("wxtransfer")

_IN = select.POLLIN | select.POLLPRI
_OUT = select.POLLOUT
# A wait with transfers in flight but no socket to watch (libcurl is busy with something it
# cannot name in an fd_set, such as a socket numbered past FD_SETSIZE) is cut to this.
_BLIND_WAIT_MS = 10

Outcome = UploadFileResult | DownloadFileResult | TransferError


class Engine:
    """Runs transfers for one runtime on its own thread."""

    def __init__(
        self,
        config: TransportConfig,
        limits: dict[Api, int],
        timeouts: dict[Api, int],
        name: str = "wxtransfer-engine",
        stall_timeout_ms: int = 0,
        speed_caps: dict[Api, int] | None = None,
        retry: Retry | None = None,
    ) -> None:
        self._config = config
        self._limits = limits
        self._timeouts = timeouts
        self._stall_timeout_ms = stall_timeout_ms  # the runtime's default; 0: off
        self._retry = retry  # the runtime's default; None: no retry
        # bytes per second for the sum of each API's transfers; 0: no cap
        self._speed_caps: dict[Api, int] = speed_caps or {"uploadFile": 0, "downloadFile": 0}
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._closing = False
        self._stopped = False  # the loop takes no more commands (see _post)
        self._woken = False  # a byte is in the pipe, or about to be
        self._sleeping = False  # the loop is in poll(), or about to be
        self._closed = threading.Event()
        self._lock = threading.Lock()
        # engine-thread state
        self._poll = select.poll()  # no kernel state: a reused socket number is never stale
        self._poll.register(self._wake_r, select.POLLIN)
        self._fds: dict[int, int] = {}  # socket -> events, as registered in _poll
        self._added = False  # a handle was added since the last perform()
        self._multi = pycurl.CurlMulti()
        self._templates = {api: new_template(config, api) for api in ("uploadFile", "downloadFile")}
        # easy handles of transfers that ended well, for the next of the same API
        self._spare: dict[Api, list[Any]] = {"uploadFile": [], "downloadFile": []}
        self._writer = Writer(name=f"{name}-files")
        self._waiting: dict[Api, collections.deque[Transfer]] = {
            "uploadFile": collections.deque(),
            "downloadFile": collections.deque(),
        }
        self._active: dict[Api, int] = {"uploadFile": 0, "downloadFile": 0}
        self._by_handle: dict[Any, Transfer] = {}
        self._by_task: dict[int, Transfer] = {}
        # timers: (when, order, what), on the engine thread's monotonic clock
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_order = itertools.count()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ---- any thread ------------------------------------------------------------------

    def submit(self, request: Request, task: TaskEvents) -> None:
        """Queue a checked request; its outcome reaches ``task._report_done``."""
        if not self._post(lambda: self._start(request, task)):
            task._report_done(AbortError(f"{request.api}:fail abort", Errno.ABORT))

    def abort(self, task: TaskEvents) -> None:
        """Abort ``task`` on the engine thread. Once the loop has stopped there is nothing
        to do: shutting down reported every transfer it had as aborted."""
        self._post(lambda: self._abort(task))

    def want_headers(self, task: TaskEvents) -> None:
        """A headers listener was added to ``task``: end a head already received at once,
        and each later one at its blank line."""
        self._post(lambda: self._want_headers(task))

    def close(self, timeout: float | None = 10) -> None:
        """Abort everything, stop the thread and free libcurl's handles."""
        with self._lock:
            if self._closing:
                already = True
            else:
                already, self._closing = False, True
        if not already:
            self._commands.put(self._shutdown)
            self._wake()
        if threading.current_thread() is not self._thread:
            self._closed.wait(timeout)

    def _post(self, command: Callable[[], None]) -> bool:
        """Queue ``command`` for the engine thread; False once the loop takes no more.

        Commands only ever run on the engine thread, closing or not: the loop drains every
        command queued before it stops, so none is lost and none touches libcurl's handles
        from another thread.
        """
        with self._lock:
            if self._stopped:
                return False
            self._commands.put(command)
        self._wake()
        return True

    def _wake(self) -> None:
        # Only a loop asleep in poll() needs the pipe: a busy one looks at the queue before
        # it sleeps. One byte is enough; the drain takes every command.
        with self._lock:
            if self._woken or not self._sleeping:
                return
            self._woken = True
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    # ---- engine thread ---------------------------------------------------------------

    def _run(self) -> None:
        wake_r = self._wake_r
        poll = self._poll.poll
        commands = self._commands
        hold_wakeups()
        self._writer.hold()
        try:
            while True:
                if not commands.empty():
                    self._drain_commands()
                    if self._closed.is_set():
                        return
                self._perform()
                if self._timers:
                    self._run_timers()
                if self._added:  # a finished transfer made room for the next: start it
                    continue
                wait = self._watch()
                if self._timers:
                    wait = self._timer_wait(wait)
                self._writer.flush()
                release_wakeups()  # callers waiting on a result run while we wait here
                with self._lock:
                    if commands.empty():
                        self._sleeping = True
                    else:
                        wait = 0
                events = poll(wait)
                with self._lock:
                    self._sleeping = self._woken = False
                for fd, _ in events:
                    if fd == wake_r:
                        with contextlib.suppress(BlockingIOError):
                            while os.read(wake_r, 4096):
                                pass
                        break
        except BaseException:  # pragma: no cover - a bug; fail every task rather than hang
            logger.exception("wxtransfer engine crashed")
            with self._lock:
                self._stopped = True
            with contextlib.suppress(BaseException):
                self._abort_everything()
                self._drain_commands()
            self._closed.set()
            raise
        finally:
            self._writer.flush()
            release_wakeups()

    def _drain_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command()

    def _perform(self) -> None:
        """Let libcurl move every transfer on, then settle the ones that ended."""
        self._added = False
        if not self._by_handle:
            return
        multi = self._multi
        self._writer.flush()  # perform() lets go of the GIL: the writer and a woken caller
        release_wakeups()  # run beside it
        while True:
            ret, running = multi.perform()
            if ret != pycurl.E_CALL_MULTI_PERFORM:
                break
        if running < len(self._by_handle):
            self._collect()

    # ---- timers: waits the loop keeps, since the engine thread never sleeps ----------

    def _schedule(self, delay: float, action: Callable[[], None]) -> None:
        """Run ``action`` on the engine thread in ``delay`` seconds (or a little after)."""
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_order), action))

    def _run_timers(self) -> None:
        now = time.monotonic()
        timers = self._timers
        while timers and timers[0][0] <= now:
            heapq.heappop(timers)[2]()

    def _timer_wait(self, wait: int) -> int:
        """``wait`` (ms, -1: none) cut to the first timer."""
        due = max(0, math.ceil((self._timers[0][0] - time.monotonic()) * 1000))
        return due if wait < 0 else min(wait, due)

    def _watch_stall(self, transfer: Transfer, stall_ms: int) -> None:
        """Fail ``transfer`` once no byte has moved, either way, for ``stall_ms``.

        libcurl's own low-speed check averages over seconds; this looks at its byte
        counters a few times per period instead, so a stall is known within a quarter of
        it, and costs nothing per byte.
        """
        period = stall_ms / 1000
        interval = max(0.01, period / 4)
        last = [transfer.moved(), time.monotonic()]  # bytes, and when they last changed

        def check() -> None:
            if self._by_handle.get(transfer.curl) is not transfer:
                return  # ended
            moved, now = transfer.moved(), time.monotonic()
            if moved != last[0] or transfer.waiting:  # a wait between attempts is no stall
                last[0], last[1] = moved, now
            elif now - last[1] >= period:
                stalled = TimeoutError(
                    f"{transfer.api}:fail timeout (stalled: no byte moved for {stall_ms} ms)",
                    Errno.TIMEOUT,
                )
                self._exchange_failed(transfer, stalled)  # tried again, if retry allows
                if self._by_handle.get(transfer.curl) is not transfer:
                    return
                last[0], last[1] = -1, now
            self._schedule(interval, check)

        self._schedule(interval, check)

    def _watch(self) -> int:
        """Register the sockets libcurl waits on; the poll timeout in ms (-1: none)."""
        if not self._by_handle:
            if self._fds:
                for fd in self._fds:
                    self._poll.unregister(fd)
                self._fds = {}
            return -1
        readers, writers, _ = self._multi.fdset()
        want = dict.fromkeys(readers, _IN)
        for fd in writers:
            want[fd] = want.get(fd, 0) | _OUT
        fds = self._fds
        if want != fds:
            register = self._poll.register
            for fd in fds.keys() - want.keys():
                self._poll.unregister(fd)
            for fd, events in want.items():
                if fds.get(fd) != events:
                    register(fd, events)  # registering again modifies
            self._fds = want
        wait: int = self._multi.timeout()
        if not want and (wait < 0 or wait > _BLIND_WAIT_MS):
            # Only transfers libcurl runs count: one waiting between attempts has a timer.
            if any(not t.waiting for t in self._by_handle.values()):
                wait = _BLIND_WAIT_MS
        return wait

    def _start(self, request: Request, task: TaskEvents) -> None:
        if self._closing or not task._attach(self):  # closing, or abort() came first
            task._report_done(AbortError(f"{request.api}:fail abort", Errno.ABORT))
            return
        transfer = Transfer(request, task, self._config, self._writer)
        if transfer.trace:
            logger.debug("%s #%d queued %s", request.api, transfer.number, safe_url(request.url))
        self._by_task[id(task)] = transfer
        self._waiting[request.api].append(transfer)
        self._fill(request.api)

    def _new_flow(self, request: Request, deadline: Callable[[], float | None]) -> FlowRunner:
        """What decides a transfer's exchanges: retries, redirects, resume or tus."""
        retry = request.retry if request.retry is not None else self._retry
        if request.tus is not None:
            return TusFlow(request, retry, deadline)
        return LazyFlow(request, self._config.rules, retry, deadline)

    def _fill(self, api: Api) -> None:
        """Start what waits, as far as the limit allows (a transfer ended, or more came)."""
        waiting = self._waiting[api]
        if waiting:
            self._fill_waiting(api, waiting)
        if self._speed_caps[api]:  # share the cap anew among those that run
            self._share_speed(api)

    def _share_speed(self, api: Api) -> None:
        """Give each running transfer of ``api`` an equal share of the runtime's cap (or
        its own ``max_speed``, if lower): the sum stays under the cap. libcurl takes a new
        limit on a running transfer at its next read or write."""
        running = [t for t in self._by_handle.values() if t.api == api]
        if running:
            share = max(1, self._speed_caps[api] // len(running))
            for transfer in running:
                transfer.limit_speed(share)

    def _fill_waiting(self, api: Api, waiting: collections.deque[Transfer]) -> None:
        spare = self._spare[api]
        while waiting and self._active[api] < self._limits[api]:
            transfer = waiting.popleft()
            self._active[api] += 1
            handle = spare.pop() if spare else self._templates[api].duphandle()
            try:
                transfer.start(self._timeouts[api], self._new_flow, handle)
                if transfer.trace:
                    resume = transfer.exchange.resume if transfer.exchange else None
                    logger.debug(
                        "%s #%d start%s",
                        api,
                        transfer.number,
                        f", resuming from byte {resume.offset}" if resume else "",
                    )
                self._by_handle[transfer.curl] = transfer
                self._multi.add_handle(transfer.curl)
                self._added = True
                stall_ms = transfer.request.stall_timeout_ms
                if stall_ms is None:
                    stall_ms = self._stall_timeout_ms
                if stall_ms:
                    self._watch_stall(transfer, stall_ms)
            except pycurl.error as exc:
                self._finish(transfer, transfer.failure(exc.args[0], str(exc.args[-1])))
            except TransferError as exc:
                self._finish(transfer, exc)

    def _abort(self, task: TaskEvents) -> None:
        transfer = self._by_task.get(id(task))
        if transfer is None or transfer.task is not task:
            return
        api = transfer.api
        if transfer in self._waiting[api]:
            self._waiting[api].remove(transfer)
            self._release(transfer)
            return
        self._finish(transfer, AbortError(f"{api}:fail abort", Errno.ABORT))

    def _want_headers(self, task: TaskEvents) -> None:
        transfer = self._by_task.get(id(task))
        if transfer is None or transfer.task is not task or transfer.waiting:
            return  # done, or not begun: its next exchange sees the listener
        if self._by_handle.get(transfer.curl) is not transfer:
            return  # still queued
        if not transfer.hear_headers():  # the head may not go on (see _end_of_head)
            assert transfer.error is not None
            self._exchange_failed(transfer, transfer.error)

    def _collect(self) -> None:
        while True:
            queued, ok, failed = self._multi.info_read()
            for handle in ok:
                transfer = self._by_handle.get(handle)
                if transfer is not None:
                    self._hop_done(transfer)
            for handle, code, message in failed:
                transfer = self._by_handle.get(handle)
                if transfer is not None:
                    self._exchange_failed(transfer, transfer.failure(code, message))
            if not queued:
                return

    def _hop_done(self, transfer: Transfer) -> None:
        """An exchange ended well: run the next one the flow asks for, or settle."""
        self._multi.remove_handle(transfer.curl)
        try:
            answer = transfer.answer()
            exchange = transfer.flow.send(answer)
            if exchange is not None:
                if transfer.trace and exchange.event is None:
                    logger.debug(
                        "%s #%d %s %d to %s",
                        transfer.api,
                        transfer.number,
                        f"tus {exchange.method} after" if exchange.method else "redirect",
                        answer.status,
                        safe_url(exchange.url),
                    )
                self._next_exchange(transfer, exchange)
                return
            outcome: Outcome = transfer.result()
        except TransferError as exc:
            outcome = exc
        except pycurl.error as exc:
            outcome = transfer.failure(exc.args[0], str(exc.args[-1]))
        self._finish(transfer, outcome, removed=True)

    def _exchange_failed(self, transfer: Transfer, error: TransferError) -> None:
        """An exchange failed: the flow tries again (after its wait), or that is the end."""
        with contextlib.suppress(pycurl.error):
            self._multi.remove_handle(transfer.curl)
        try:
            exchange = transfer.flow.send(transfer.answer_error(error))
        except TransferError as exc:
            self._finish(transfer, exc, removed=True)
            return
        if exchange is None:  # pragma: no cover - a flow never ends on an error
            self._finish(transfer, error, removed=True)
            return
        self._next_exchange(transfer, exchange)

    def _next_exchange(self, transfer: Transfer, exchange: Exchange) -> None:
        """Start the flow's next exchange now, or once its wait is over."""
        event = exchange.event
        if event is not None:
            if transfer.trace:
                reason = event.error.err_msg if event.error else f"status {event.status_code}"
                logger.debug(
                    "%s #%d retry: attempt %d in %.3f s after %s%s",
                    transfer.api,
                    transfer.number,
                    event.attempt,
                    event.delay,
                    reason,
                    f", continuing from byte {exchange.resume.offset}" if exchange.resume else "",
                )
            transfer.task._report_retry(event)
        if exchange.delay > 0:
            transfer.waiting = True
            self._schedule(exchange.delay, lambda: self._after_wait(transfer, exchange))
            return
        self._begin(transfer, exchange)

    def _after_wait(self, transfer: Transfer, exchange: Exchange) -> None:
        if self._by_handle.get(transfer.curl) is not transfer:
            return  # aborted, or the runtime closed, meanwhile
        transfer.waiting = False
        self._begin(transfer, exchange)

    def _begin(self, transfer: Transfer, exchange: Exchange) -> None:
        try:
            transfer.begin(exchange)
            self._multi.add_handle(transfer.curl)
            self._added = True
        except pycurl.error as exc:
            self._finish(transfer, transfer.failure(exc.args[0], str(exc.args[-1])), removed=True)
        except TransferError as exc:
            self._finish(transfer, exc, removed=True)

    def _finish(self, transfer: Transfer, outcome: Outcome, removed: bool = False) -> None:
        """End an active transfer: free its handle and slot, report, start the next."""
        if not removed:
            with contextlib.suppress(pycurl.error):
                self._multi.remove_handle(transfer.curl)
        self._by_handle.pop(transfer.curl, None)
        self._by_task.pop(id(transfer.task), None)
        api = transfer.api
        if isinstance(outcome, TransferError):
            transfer.close()
        elif (handle := transfer.release()) is not None:
            spare = self._spare[api]
            if len(spare) < self._limits[api]:
                spare.append(handle)
            else:
                handle.close()
        self._active[api] -= 1
        if isinstance(outcome, TransferError) and not outcome.attempts:
            outcome.attempts = transfer.hops
        if transfer.trace:
            _trace_end(transfer, outcome)
        transfer.settle(outcome)
        self._fill(transfer.api)

    def _abort_everything(self) -> None:
        """Report every waiting and active transfer as aborted, and free them."""
        for waiting in self._waiting.values():
            transfers = list(waiting)
            waiting.clear()
            for transfer in transfers:
                self._release(transfer)
        for transfer in list(self._by_handle.values()):
            with contextlib.suppress(pycurl.error):
                self._multi.remove_handle(transfer.curl)
            self._release(transfer)

    def _release(self, transfer: Transfer) -> None:
        self._by_handle.pop(transfer.curl, None)
        self._by_task.pop(id(transfer.task), None)
        transfer.close()
        aborted = AbortError(f"{transfer.api}:fail abort", Errno.ABORT)
        if transfer.trace:
            _trace_end(transfer, aborted)
        transfer.settle(aborted)

    def _shutdown(self) -> None:
        with self._lock:
            self._stopped = True  # from here on submit() and abort() answer for themselves
        self._drain_commands()  # what came before: starts report abort, aborts find nothing
        self._abort_everything()
        self._writer.close()  # every file finished or removed, every outcome reported
        self._multi.close()
        for template in self._templates.values():
            template.close()
        for spare in self._spare.values():
            for handle in spare:
                handle.close()
            spare.clear()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._closed.set()


def _trace_end(transfer: Transfer, outcome: Outcome) -> None:
    if isinstance(outcome, TransferError):
        message = outcome.err_msg  # it may quote a URL: never with its query or userinfo
        for url in {transfer.request.url, transfer.url}:
            message = message.replace(url, safe_url(url))
        logger.debug("%s #%d failed: %s", transfer.api, transfer.number, message)
    else:
        logger.debug(
            "%s #%d done %d after %d exchange(s)",
            transfer.api,
            transfer.number,
            outcome.status_code,
            transfer.hops,
        )
