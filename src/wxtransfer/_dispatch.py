"""Where callbacks run: one at a time, in order, never on the engine thread.

A task started inside a running asyncio loop dispatches on that loop; any other task on the
runtime's single dispatcher thread, like the platform's single JavaScript thread.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

__all__ = ["Dispatcher", "LoopDispatcher", "ThreadDispatcher", "run_callback"]

logger = logging.getLogger("wxtransfer")


def run_callback(fn: Callable[[], object]) -> None:
    """Run one user callback; an exception is logged and goes no further."""
    try:
        fn()
    except Exception:
        logger.exception("exception in a wxtransfer callback %r", fn)


class Dispatcher:
    """Runs scheduled callables one at a time, in the order they were scheduled."""

    def call(self, fn: Callable[[], object]) -> None:
        raise NotImplementedError

    def is_current(self) -> bool:
        """Whether the caller is running on this dispatcher right now."""
        raise NotImplementedError

    def runs_here(self) -> bool:
        """Whether what is scheduled would run on the caller's thread, once it lets go: a
        blocking wait there would wait on itself."""
        return False

    def run_until(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Run what is scheduled, here, until ``done()``; False when ``timeout`` runs out."""
        raise NotImplementedError

    def wake(self) -> None:
        """Tell a ``run_until`` that ``done()`` may have changed."""


class ThreadDispatcher(Dispatcher):
    """One daemon thread draining a FIFO queue; started on first use."""

    def __init__(self, name: str = "wxtransfer-dispatch") -> None:
        self._name = name
        self._queue: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def call(self, fn: Callable[[], object]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        self._queue.put(fn)

    def is_current(self) -> bool:
        return threading.current_thread() is self._thread

    def _run(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is None:
                return
            run_callback(fn)
            del fn  # holding the last callable would keep its task alive

    def close(self, timeout: float | None = None) -> None:
        """Run what is queued, then stop the thread; a later call() starts a new one."""
        with self._lock:
            thread, self._closed = self._thread, True
            if thread is None:
                return
            self._thread = None
        self._queue.put(None)
        if threading.current_thread() is not thread:  # from a callback: nothing to wait for
            thread.join(timeout)


class LoopDispatcher(Dispatcher):
    """Runs callables on an asyncio loop while it runs, else on a fallback thread.

    Callables wait in one FIFO of our own, drained on whichever side gets to it, so
    nothing is lost when the loop stops or closes, and order is kept either way.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fallback: Dispatcher) -> None:
        self._loop = loop
        self._fallback = fallback
        self._items: collections.deque[Callable[[], object]] = collections.deque()
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._draining: int | None = None  # the thread running a callable right now
        self._here: threading.Condition | None = None  # a run_until waiting for items

    def call(self, fn: Callable[[], object]) -> None:
        with self._lock:
            self._items.append(fn)
            if self._here is not None:
                self._here.notify()
        if self._loop.is_running():
            try:
                self._loop.call_soon_threadsafe(self._drain)
                return
            except RuntimeError:  # closed in the meantime
                pass
        self._fallback.call(self._drain)

    def _drain(self) -> None:
        with self._run_lock:
            self._draining = threading.get_ident()
            try:
                while True:
                    with self._lock:
                        if not self._items:
                            return
                        fn = self._items.popleft()
                    run_callback(fn)
                    del fn
            finally:
                self._draining = None

    def runs_here(self) -> bool:
        import asyncio  # imported already: a loop runs

        return asyncio._get_running_loop() is self._loop

    def run_until(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Drain the queue on this thread (the loop's, blocked in a synchronous wait) until
        ``done()``: the loop cannot run what it was sent, so the waiter runs it, in order."""
        deadline = None if timeout is None else time.monotonic() + timeout
        here = threading.Condition(self._lock)
        with self._lock:
            outer, self._here = self._here, here
        try:
            while True:
                self._drain()
                with self._lock:
                    if done():
                        return True
                    if self._items:
                        continue
                    if deadline is None:
                        here.wait()
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                        here.wait(remaining)
        finally:
            with self._lock:
                self._here = outer

    def wake(self) -> None:
        with self._lock:
            if self._here is not None:
                self._here.notify()

    def loop_alive(self) -> bool:
        """Whether the loop can still run what is scheduled on it."""
        return self._loop.is_running()

    def is_current(self) -> bool:
        return self._draining == threading.get_ident()
