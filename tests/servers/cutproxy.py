"""A TCP proxy that counts what the client sends and cuts connections at an exact byte.

``CutProxy(host, port, cut_after=K, cuts=N)`` listens on ``127.0.0.1:<free port>`` and
forwards every connection to ``host:port`` byte for byte, both ways; it knows nothing of
HTTP, so any server can stand behind it. For resumable uploads: a connection that dies in
the middle of a request body, at a byte the test chooses, and a count of what was sent.

- ``.sent_up``: bytes forwarded client → upstream, all connections together;
  ``.sent_down`` the same upstream → client.
- ``.connections``: bytes forwarded client → upstream, one entry per accepted connection
  in accept order (``len(.connections)`` is the number of connections).
- ``.cut``: one flag per connection, true once that connection was cut.
- With ``cut_after > 0`` the first ``cuts`` connections (``cuts=-1``: all of them) are cut
  once exactly ``cut_after`` bytes went client → upstream on that connection: those bytes
  are forwarded, then the client socket is closed with SO_LINGER 0 (the client gets an
  RST) and the upstream socket is closed: with a FIN after the forwarded bytes by default
  (the server sees a request body that ends early and has received every forwarded byte),
  or with an RST too when ``rst_upstream=True`` (then bytes the server had not yet read
  may be lost). From the moment the last of those bytes goes upstream, nothing more goes
  to the client: an answer to a request cut right after its last byte is lost (within
  ~50 ms the cut follows). A connection that ends before ``cut_after`` bytes is not cut.
- ``.errors``: unexpected exceptions in the proxy's threads (should stay empty).

``.url_for(path)`` gives ``http://127.0.0.1:<proxy port><path>``. Use it as a context
manager or ``start()``/``stop()``; ``stop()`` closes every socket and joins every thread.
Every socket has a timeout: a connection idle for ``idle_timeout`` s is closed.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from types import TracebackType

_POLL = 0.05  # how often a blocked thread looks whether it should stop
_CHUNK = 65536


class _Conn:
    """One proxied connection: two sockets, two pumps, a flag to end it."""

    def __init__(self, index: int, client: socket.socket, cut_at: int) -> None:
        self.index = index
        self.client = client
        self.cut_at = cut_at  # 0: never cut
        self.done = threading.Event()
        # Set (under send_lock) just before the last bytes go upstream: from then on
        # nothing more goes to the client, so an answer to them never reaches it.
        self.cutting = False
        self.send_lock = threading.Lock()
        self.threads: list[threading.Thread] = []


class CutProxy:
    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        cut_after: int = 0,
        cuts: int = 0,
        rst_upstream: bool = False,
        idle_timeout: float = 30.0,
    ) -> None:
        if cut_after < 0 or cuts < -1:
            raise ValueError("cut_after must be >= 0 and cuts >= -1")
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.cuts = cuts
        self.rst_upstream = rst_upstream
        self.idle_timeout = idle_timeout
        self.sent_up = 0
        self.sent_down = 0
        self.connections: list[int] = []
        self.cut: list[bool] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: list[_Conn] = []
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> CutProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(_POLL)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"cutproxy-accept-{self.port}", daemon=True
        )
        self._acceptor.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close everything and join every thread; raise if one is still alive."""
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.done.set()
        deadline = time.monotonic() + timeout
        alive: list[str] = []
        threads = [t for conn in conns for t in conn.threads]
        if self._acceptor is not None:
            threads.append(self._acceptor)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                alive.append(thread.name)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if alive:
            raise RuntimeError(f"CutProxy threads still alive after stop(): {alive}")

    def __enter__(self) -> CutProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def url_for(self, path: str = "/") -> str:
        if not path.startswith("/"):
            path = "/" + path
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def url(self) -> str:
        return self.url_for("/")

    # ------------------------------------------------------------------ workers

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(_POLL)
            with self._lock:
                index = len(self.connections)
                self.connections.append(0)
                self.cut.append(False)
                armed = self.cut_after > 0 and (self.cuts == -1 or index < self.cuts)
                conn = _Conn(index, client, self.cut_after if armed else 0)
                self._conns.append(conn)
            thread = threading.Thread(
                target=self._serve, args=(conn,), name=f"cutproxy-{self.port}-{index}", daemon=True
            )
            conn.threads.append(thread)
            thread.start()

    def _serve(self, conn: _Conn) -> None:
        """Connect upstream, pump client → upstream here and the other way in a thread."""
        try:
            upstream = socket.create_connection(
                (self.upstream_host, self.upstream_port), timeout=min(5.0, self.idle_timeout)
            )
        except OSError:
            _rst_close(conn.client)
            return
        upstream.settimeout(_POLL)
        down = threading.Thread(
            target=self._pump_down,
            args=(conn, upstream),
            name=f"cutproxy-{self.port}-{conn.index}-down",
            daemon=True,
        )
        with self._lock:
            conn.threads.append(down)
        down.start()
        cut = False
        try:
            cut = self._pump_up(conn, upstream)
        except Exception as exc:
            self.errors.append(exc)
        finally:
            conn.done.set()
            down.join()  # it looks at conn.done at least every _POLL s
            if cut:
                with self._lock:
                    self.cut[conn.index] = True
                _rst_close(conn.client)
                if self.rst_upstream:
                    _rst_close(upstream)
                else:
                    upstream.close()
            else:
                conn.client.close()
                upstream.close()

    def _pump_up(self, conn: _Conn, upstream: socket.socket) -> bool:
        """Client → upstream. Returns True when the connection is to be cut now."""
        sent = 0
        while True:
            data = self._recv(conn, conn.client)
            if data is None:
                return False
            if not data:  # the client is done sending: pass the FIN on, let the answer come
                _quiet(upstream.shutdown, socket.SHUT_WR)
                conn.done.wait()  # set when the other direction ends
                return False
            if conn.cut_at and sent + len(data) >= conn.cut_at:
                data = data[: conn.cut_at - sent]
                with conn.send_lock:
                    conn.cutting = True
            n = self._send(conn, upstream, data)
            sent += n
            with self._lock:
                self.sent_up += n
                self.connections[conn.index] += n
            if n < len(data):
                return False
            if conn.cut_at and sent >= conn.cut_at:
                return True

    def _pump_down(self, conn: _Conn, upstream: socket.socket) -> None:
        """Upstream → client, until EOF, an error or the connection's end; then end it."""
        try:
            while True:
                data = self._recv(conn, upstream)
                if data is None:
                    return
                if not data:
                    with conn.send_lock:
                        if not conn.cutting and not conn.done.is_set():
                            _quiet(conn.client.shutdown, socket.SHUT_WR)
                    return
                n = self._send(conn, conn.client, data, to_client=True)
                with self._lock:
                    self.sent_down += n
                if n < len(data):
                    return
        except Exception as exc:
            self.errors.append(exc)
        finally:
            conn.done.set()

    def _recv(self, conn: _Conn, sock: socket.socket) -> bytes | None:
        """Next chunk; b"" on EOF; None when the connection ends (error, idle, stop)."""
        idle_since = time.monotonic()
        while not conn.done.is_set() and not self._stopping.is_set():
            try:
                return sock.recv(_CHUNK)
            except TimeoutError:
                if time.monotonic() - idle_since > self.idle_timeout:
                    return None
            except OSError:
                return None
        return None

    def _send(
        self, conn: _Conn, sock: socket.socket, data: bytes, *, to_client: bool = False
    ) -> int:
        """Send ``data``; how much went, less than all when the connection ends (or is
        being cut, toward the client) first."""
        view = memoryview(data)
        idle_since = time.monotonic()
        while view:
            if conn.done.is_set() or self._stopping.is_set():
                break
            try:
                if to_client:
                    with conn.send_lock:
                        if conn.cutting:
                            break
                        n = sock.send(view)
                else:
                    n = sock.send(view)
            except TimeoutError:
                if time.monotonic() - idle_since > self.idle_timeout:
                    break
                continue
            except OSError:
                break
            view = view[n:]
            idle_since = time.monotonic()
        return len(data) - len(view)


def _rst_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    finally:
        sock.close()


def _quiet(action: Callable[[int], None], how: int) -> None:
    try:
        action(how)
    except OSError:
        pass
