"""HTTPS test servers on 127.0.0.1 with trustme certificates, for the platform-rule tests.

- :class:`Pki`: a root CA, an intermediate CA under it, leaf certificates issued by the
  intermediate (good, expired, for other names), and server ``ssl.SSLContext`` objects
  that serve the full chain or the leaf alone, optionally TLS 1.1 only. ``pki.ca_file`` is
  the root alone (PEM), for ``Runtime(ca_file=...)``.
- :class:`TLSServer`: a small threaded HTTP/1.1 server over TLS, one request per
  connection (``Connection: close``), so ``.connections`` (TCP accepts) says whether a
  request was sent at all. A route ``handler(request, server) -> Reply`` answers;
  a ``Reply`` body may be bytes (Content-Length added), or an iterable of chunks sent
  chunked (``chunked=True``, the default) or close-delimited.

Every socket has a timeout and :meth:`TLSServer.stop` ends the threads, so no test hangs.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import trustme

__all__ = ["NAMES", "Pki", "Received", "Reply", "TLSServer", "loopback_pems", "tls11_unavailable"]

# Every name the rule tests use; a leaf for all of them, mapped to 127.0.0.1 with resolve=.
NAMES = (
    "upload.example.com",
    "download.example.com",
    "cdn.example.com",
    "files.example.com",
    "evil.example.com",
    "a.b.example.com",
    "example.com",
)

_HEAD_LIMIT = 64 * 1024


def loopback_pems(folder: Path, prefix: str = "") -> tuple[str, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1 and localhost, written to
    ``folder``: the CA's PEM (for ``ca_file``), the certificate's chain and its key."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = folder / f"{prefix}ca.pem"
    cert_file, key_file = folder / f"{prefix}cert.pem", folder / f"{prefix}key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))
    return str(ca_file), cert_file, key_file


# ----------------------------------------------------------------------------- certificates


class Pki:
    """Root CA -> intermediate CA -> leaves; server contexts serving them in various ways."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.intermediate = self.ca.create_child_ca()
        self.ca_file = str(folder / "root-ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self._count = 0

    def leaf(self, *names: str, expired: bool = False) -> trustme.LeafCert:
        """A leaf issued by the intermediate for ``names`` (default: every name in NAMES)."""
        if expired:
            now = datetime.datetime.now(datetime.timezone.utc)
            return self.intermediate.issue_cert(
                *(names or NAMES),
                not_before=now - datetime.timedelta(days=30),
                not_after=now - datetime.timedelta(days=1),
            )
        return self.intermediate.issue_cert(*(names or NAMES))

    def context(
        self,
        leaf: trustme.LeafCert | None = None,
        *,
        chain: bool = True,
        tls11_only: bool = False,
    ) -> ssl.SSLContext:
        """A server context for ``leaf``: with its intermediate (``chain``) or the leaf alone."""
        leaf = leaf or self.leaf()
        self._count += 1
        key_path = self.folder / f"leaf{self._count}.key"
        cert_path = self.folder / f"leaf{self._count}.pem"
        leaf.private_key_pem.write_to_path(str(key_path))
        pems = leaf.cert_chain_pems if chain else leaf.cert_chain_pems[:1]
        cert_path.write_bytes(b"".join(p.bytes() for p in pems))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if tls11_only:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_1
                ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.load_cert_chain(str(cert_path), str(key_path))
        return ctx


def tls11_unavailable(pki: Pki) -> str | None:
    """None when a TLS 1.1-only server works here (checked with Python's own client),
    else the reason to skip."""
    try:
        server_ctx = pki.context(tls11_only=True)
    except (ssl.SSLError, ValueError) as exc:
        return f"the local OpenSSL refuses to configure a TLS 1.1-only server: {exc}"
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    pki.ca.configure_trust(client)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client.minimum_version = ssl.TLSVersion.TLSv1_1
        client.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ssl.SSLError, ValueError) as exc:
        return f"the local OpenSSL cannot make a TLS 1.1 client: {exc}"
    with TLSServer(server_ctx, lambda req, srv: Reply(body=b"ok")) as srv:
        try:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
                with client.wrap_socket(raw, server_hostname=NAMES[0]) as tls:
                    version = tls.version()
        except (OSError, ssl.SSLError) as exc:
            return f"no TLS 1.1 handshake with the local OpenSSL: {exc}"
    if version != "TLSv1.1":
        return f"the TLS 1.1-only server negotiated {version}"
    return None


# ----------------------------------------------------------------------------- the server


@dataclass
class Received:
    """One request as the server read it (header names lower-cased)."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    """A response. ``body`` bytes get a Content-Length (unless ``headers`` has one); an
    iterable body is sent chunked, or close-delimited with ``chunked=False``."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | Iterable[bytes] = b""
    chunked: bool = True


Route = Callable[[Received, "TLSServer"], Reply]

_REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 307: "Temporary Redirect"}


class TLSServer:
    """HTTPS/1.1 on ``127.0.0.1:<free port>``, one thread per connection.

    ``.connections`` counts TCP connections accepted, ``.requests`` the requests read,
    ``.handshake_errors`` TLS handshakes that failed, ``.versions`` the TLS
    versions negotiated, ``.active``/``.max_active`` requests
    being answered at once. ``.stopping`` is set by :meth:`stop`; long routes wait on it.
    Exceptions raised by a route (other than a vanished client) land in ``.errors``.
    """

    def __init__(
        self, context: ssl.SSLContext, handler: Route | None = None, *, io_timeout: float = 10
    ) -> None:
        self.context = context
        self.handler: Route = handler or (lambda req, srv: Reply(body=b"ok"))
        self.io_timeout = io_timeout
        self.port = 0
        self.connections = 0
        self.requests: list[Received] = []
        self.handshake_errors: list[str] = []
        self.versions: list[str] = []  # TLS version of each handshake that succeeded
        self.errors: list[BaseException] = []
        self.active = 0
        self.max_active = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the value for ``Runtime(resolve={name: ...})``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> TLSServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.settimeout(0.1)
        self._sock = sock
        self.port = sock.getsockname()[1]
        thread = threading.Thread(target=self._accept_loop, name=f"tls-{self.port}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5) -> None:
        self.stopping.set()
        for thread in list(self._threads):
            thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> TLSServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- threads ---------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self.stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(self.io_timeout)
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            with self._lock:
                self.handshake_errors.append(str(exc))
            raw.close()
            return
        with self._lock:
            self.versions.append(tls.version() or "")
        try:
            request = self._read_request(tls)
            if request is None:
                return
            with self._lock:
                self.requests.append(request)
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            try:
                self._respond(tls, self.handler(request, self))
            finally:
                with self._lock:
                    self.active -= 1
        except (OSError, ssl.SSLError):
            pass  # the client went away (e.g. it refused the response): not a server error
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            tls.close()

    @staticmethod
    def _read_request(tls: ssl.SSLSocket) -> Received | None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = tls.recv(65536)
            if not chunk:
                return None
            buf += chunk
            if len(buf) > _HEAD_LIMIT:
                raise ValueError("request head too large")
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target = [*lines[0].split(" "), "", ""][:2]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(body) < length:
            chunk = tls.recv(min(65536, length - len(body)))
            if not chunk:
                break
            body += chunk
        return Received(method, target, headers, body)

    @staticmethod
    def _respond(tls: ssl.SSLSocket, reply: Reply) -> None:
        headers = list(reply.headers)
        names = {k.lower() for k, _ in headers}
        body = reply.body
        if isinstance(body, bytes):
            if "content-length" not in names:
                headers.append(("Content-Length", str(len(body))))
        elif reply.chunked and "content-length" not in names:
            headers.append(("Transfer-Encoding", "chunked"))
        headers.append(("Connection", "close"))
        reason = _REASONS.get(reply.status, "Status")
        head = f"HTTP/1.1 {reply.status} {reason}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        tls.sendall(head.encode("latin-1"))
        if isinstance(body, bytes):
            tls.sendall(body)
            return
        chunked = reply.chunked and "content-length" not in names
        for piece in body:
            if not piece:
                continue
            tls.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            tls.sendall(b"0\r\n\r\n")
        else:  # close-delimited: end with close_notify, so the client sees a clean end
            tls.settimeout(1)
            try:
                tls.unwrap()
            except (OSError, ssl.SSLError):
                pass
