"""A TCP proxy on 127.0.0.1 that delays each direction by a fixed time: a link with latency.

``DelayProxy(target_port, delay=0.010).start()`` listens on a free port of 127.0.0.1 and
forwards every connection to ``target_host:target_port``. Each chunk read from one side is
written to the other ``delay`` seconds after it was read, in order, with no bandwidth cap, so
one request/response exchange costs a round trip of ``2 * delay`` on top of the server's own
time. End of stream (FIN) is delayed like the data; a reset or error closes both sides at
once. TLS passes through untouched (the proxy sees bytes only).

What is not delayed: the TCP handshake (the kernel completes it at the proxy's listening
socket, and the proxy connects to the target at once), so a new connection costs no round
trip until its first bytes. TLS and HTTP round trips are all delayed.

Bounded: at most ``max_connections`` connections at once (more are closed at once), at most
``max_buffer`` bytes held per direction (the reader waits, so TCP flow control pushes back).
Two threads per direction (a reader stamping each chunk, a writer sleeping until its
release time), so four per connection; ``time.sleep`` wakes within some 0.05 ms here (the
writers' timer slack is set to 1 ns), where an asyncio timer is late by up to 1 ms (epoll's
millisecond timeout). ``stop()`` closes the
listener and every connection and joins every thread.

    python benchmarks/delayproxy.py --check      # measure the added latency (echo server)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import socket
import statistics
import sys
import threading
import time

CHUNK = 256 * 1024
PR_SET_TIMERSLACK = 29


def _tight_timers() -> None:
    """Linux: this thread's timer slack to 1 ns (default 50 µs), so that ``time.sleep``
    overshoots by some 50 µs instead of 100 here. Elsewhere: nothing."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)


class _Direction:
    """One direction of one connection: chunks read from ``src`` and written to ``dst``
    ``delay`` seconds later."""

    def __init__(self, conn: _Connection, src: socket.socket, dst: socket.socket, up: bool):
        self.conn = conn
        self.src = src
        self.dst = dst
        self.up = up
        self.cond = threading.Condition()
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.held = 0  # bytes in the queue
        self.done = False  # the writer ended (EOF written, or an error)

    def read_loop(self) -> None:
        proxy = self.conn.proxy
        try:
            while True:
                with self.cond:
                    while self.held >= proxy.max_buffer and not self.done:
                        self.cond.wait()
                    if self.done:
                        return
                data = self.src.recv(CHUNK)
                release = time.monotonic() + proxy.delay
                with self.cond:
                    self.queue.append((release, data))  # b"": end of stream
                    self.held += len(data)
                    self.cond.notify_all()
                if not data:
                    return
        except OSError as e:
            self.conn.fail(e)

    def write_loop(self) -> None:
        proxy = self.conn.proxy
        _tight_timers()
        try:
            while True:
                with self.cond:
                    while not self.queue and not self.done:
                        self.cond.wait()
                    if self.done:
                        return
                    release, data = self.queue[0]
                wait = release - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                with self.cond:
                    self.queue.popleft()
                    self.held -= len(data)
                    self.cond.notify_all()
                if not data:
                    with contextlib.suppress(OSError):
                        self.dst.shutdown(socket.SHUT_WR)
                    break
                self.dst.sendall(data)
                with proxy.lock:
                    if self.up:
                        proxy.bytes_up += len(data)
                    else:
                        proxy.bytes_down += len(data)
        except OSError as e:
            self.conn.fail(e)
        finally:
            self.finish()
            self.conn.direction_done()

    def finish(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify_all()


class _Connection:
    """A client connection and its connection to the target, two directions."""

    def __init__(self, proxy: DelayProxy, client: socket.socket, server: socket.socket):
        self.proxy = proxy
        self.client = client
        self.server = server
        self.lock = threading.Lock()
        self.closed = False
        self.remaining = 2
        self.dirs = (
            _Direction(self, client, server, True),
            _Direction(self, server, client, False),
        )
        self.threads = [
            threading.Thread(target=f, daemon=True, name=f"delayproxy-{name}")
            for d in self.dirs
            for f, name in ((d.read_loop, "read"), (d.write_loop, "write"))
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def direction_done(self) -> None:
        with self.lock:
            self.remaining -= 1
            last = self.remaining == 0
        if last:
            self.close()

    def fail(self, e: OSError) -> None:
        """An error on either side: count a reset, record anything else (unless we are
        stopping or the connection is already closed), close both sides."""
        if not self.proxy.stopping and not self.closed:
            with self.proxy.lock:
                if isinstance(e, (ConnectionResetError, BrokenPipeError)):
                    self.proxy.resets += 1
                else:
                    self.proxy.errors.append(f"{type(e).__name__}: {e}")
        self.close()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for d in self.dirs:
            d.finish()
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in recv
            s.close()
        with self.proxy.lock:
            self.proxy.live.discard(self)

    def join(self, timeout: float) -> None:
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(timeout)


class DelayProxy:
    """127.0.0.1:<free port> -> ``target_host:target_port``, ``delay`` s each way."""

    def __init__(
        self,
        target_port: int,
        delay: float,
        target_host: str = "127.0.0.1",
        *,
        max_connections: int = 64,
        max_buffer: int = 16 << 20,
    ) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self.max_connections = max_connections
        self.max_buffer = max_buffer
        self.port = 0
        self.lock = threading.Lock()
        self.live: set[_Connection] = set()
        self.all: list[_Connection] = []
        self.connections = 0  # accepted and connected to the target
        self.refused = 0  # closed at once: over max_connections or the target refused
        self.bytes_up = 0  # forwarded client -> target
        self.bytes_down = 0  # forwarded target -> client
        self.resets = 0  # connections ended by a reset (a peer closed with unread data)
        self.errors: list[str] = []  # anything else that went wrong
        self.stopping = False
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def url(self, scheme: str = "http") -> str:
        """``scheme://127.0.0.1:PORT``."""
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> DelayProxy:
        """Listen and accept in a thread."""
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(128)
        ls.settimeout(0.05)  # the accept loop looks at ``stopping`` this often
        self._listener = ls
        self.port = ls.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="delayproxy")
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        ls = self._listener
        assert ls is not None
        while not self.stopping:
            try:
                client, _ = ls.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stopping:
                    return
                raise
            client.setblocking(True)
            with self.lock:
                full = len(self.live) >= self.max_connections
            if full or self.stopping:
                self.refused += 1
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError as e:
                self.refused += 1
                self.errors.append(f"connect to {self.target}: {e}")
                client.close()
                continue
            server.settimeout(None)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, client, server)
            with self.lock:
                self.live.add(conn)
                self.all.append(conn)
                self.connections += 1
            conn.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection; join every thread."""
        self.stopping = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._listener is not None:
            self._listener.close()
        with self.lock:
            live = list(self.live)
        for conn in live:
            conn.close()
        deadline = time.monotonic() + timeout
        for conn in self.all:
            conn.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- check


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    """A one-connection echo server on 127.0.0.1 (for --check)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)

    def serve() -> None:
        c, _ = ls.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with c:
            while data := c.recv(65536):
                c.sendall(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return ls, t


def round_trips(port: int, n: int, size: int = 100) -> list[float]:
    """``n`` sequential ``size``-byte exchanges over one connection to ``port``: seconds each."""
    out = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        msg = b"x" * size
        for _ in range(n):
            t0 = time.perf_counter()
            s.sendall(msg)
            got = 0
            while got < size:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("echo server closed")
                got += len(chunk)
            out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    """--check: the round trip through the proxy to an echo server, against 2 × delay."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--check", action="store_true", help="measure the added latency")
    p.add_argument("--delay-ms", type=float, default=10.0, help="one-way delay (default 10)")
    p.add_argument("-n", type=int, default=100, help="sequential exchanges (default 100)")
    ns = p.parse_args(argv)
    if not ns.check:
        p.print_help()
        return 2
    ls, t = _echo_server()
    proxy = DelayProxy(ls.getsockname()[1], ns.delay_ms / 1000).start()
    try:
        rtts = round_trips(proxy.port, ns.n)
    finally:
        proxy.stop()
        ls.close()
        t.join(5)
    nominal = 2 * ns.delay_ms
    total = sum(rtts)
    med = statistics.median(rtts) * 1000
    print(
        f"{ns.n} exchanges in {total:.3f} s (nominal {ns.n * nominal / 1000:.3f} s): "
        f"median {med:.3f} ms, max {max(rtts) * 1000:.3f} ms per round trip "
        f"(+{med - nominal:.3f} ms over {nominal:g} ms); errors: {proxy.errors or 'none'}"
    )
    return 0 if not proxy.errors and total < ns.n * nominal / 1000 * 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
