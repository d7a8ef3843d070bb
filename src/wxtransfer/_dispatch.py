"""Where callbacks run: one at a time, in order, never on the engine thread.

A task started inside a running asyncio loop dispatches on that loop; any other task on the
runtime's single dispatcher thread, like the platform's single JavaScript thread.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable

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
        """Run what is queued, then stop the thread (not waiting when called from it)."""
        with self._lock:
            thread, self._closed = self._thread, True
            if thread is None:
                return
            self._thread = None
        self._queue.put(None)
        if threading.current_thread() is not thread:
            thread.join(timeout)
        else:
            # Called from a callback: what remains runs after this one, on a fresh thread.
            pass


class LoopDispatcher(Dispatcher):
    """Schedules on an asyncio loop; falls back to a thread once that loop is closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fallback: Dispatcher) -> None:
        self._loop = loop
        self._fallback = fallback

    def call(self, fn: Callable[[], object]) -> None:
        try:
            self._loop.call_soon_threadsafe(run_callback, fn)
        except RuntimeError:  # the loop is closed: the callbacks still run, elsewhere
            self._fallback.call(fn)

    def loop_alive(self) -> bool:
        """Whether the loop can still run what is scheduled on it."""
        return self._loop.is_running()

    def is_current(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False
