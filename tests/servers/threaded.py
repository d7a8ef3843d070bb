"""Run an aiohttp application on 127.0.0.1 in a background thread with its own loop."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from types import TracebackType

from aiohttp import web


class ServerThread:
    """An aiohttp app served on ``127.0.0.1:<free port>`` from a daemon thread.

    ``with ServerThread(make_app()) as srv: urlopen(srv.url + "/bytes/10")``

    Handlers are cancelled when their client disconnects (``handler_cancellation``) and,
    on :meth:`stop`, after ``shutdown_timeout`` seconds, so hanging routes do not delay
    the shutdown.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        ssl_context: ssl.SSLContext | None = None,
        shutdown_timeout: float = 0.1,
        host: str = "127.0.0.1",
    ) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.shutdown_timeout = shutdown_timeout
        self.host = host
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:PORT``."""
        if not self.port:
            raise RuntimeError("server not started")
        return f"{self.scheme}://{self.host}:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> ServerThread:
        if self._thread is not None:
            raise RuntimeError("already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, 0))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"aiohttp-{self.port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("aiohttp server did not start in time")
        if self._error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError("aiohttp server failed to start") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:  # loop closed in between
                pass
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"server thread {thread.name} did not stop in {timeout} s")
        self._thread = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ thread

    async def _startup(self, sock: socket.socket) -> None:
        runner = web.AppRunner(
            self.app, handler_cancellation=True, shutdown_timeout=self.shutdown_timeout
        )
        self._runner = runner
        await runner.setup()
        site = web.SockSite(runner, sock, ssl_context=self.ssl_context)
        await site.start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                loop.run_until_complete(self._startup(sock))
            except BaseException as exc:
                self._error = exc
                sock.close()
                self._ready.set()
                return
            self._ready.set()
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(self._cleanup())
            finally:
                _cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


__all__ = ["ServerThread"]
