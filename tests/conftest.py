"""Shared fixtures: local test servers, all on 127.0.0.1.

- ``server``       (session)  aiohttp app of :mod:`tests.servers.app`; ``server.url``.
- ``https_server`` (session)  the same app over TLS (trustme CA); ``.url``, ``.ca_file``.
- ``httpbin_url``  (session)  base URL of httpbin under gunicorn.
- ``raw_server``   (function) factory ``raw_server(handler) -> RawServer`` (started).
- ``small_tmpfs``  (function) a 2 MB tmpfs mounted under ``tmp_path`` (skips where
                   mounting is not allowed), for a full disk.
- ``free_port()``  helper (``from tests.servers import free_port``).
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import free_port
from tests.servers.app import make_app
from tests.servers.httpbin import HttpbinProcess
from tests.servers.rawsock import Handler, RawServer
from tests.servers.threaded import ServerThread

__all__ = ["free_port"]


class HTTPSServer(ServerThread):
    ca_file: str = ""


@pytest.fixture(scope="session")
def server() -> Iterator[ServerThread]:
    """The deterministic aiohttp app (see tests/servers/app.py) on http://127.0.0.1:PORT."""
    srv = ServerThread(make_app()).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HTTPSServer]:
    """The same app over TLS with a throw-away CA; ``.ca_file`` is the CA bundle (PEM)."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file: Path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    srv = HTTPSServer(make_app(), ssl_context=ctx)
    srv.ca_file = str(ca_file)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def httpbin_url() -> Iterator[str]:
    """Base URL (no trailing slash) of httpbin served by gunicorn on 127.0.0.1."""
    proc = HttpbinProcess().start()
    try:
        yield proc.url
    finally:
        proc.stop()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Handler], RawServer]]:
    """Factory: ``srv = raw_server(respond(b"HTTP/1.1 200 OK\\r\\n..."))``, already started.

    All servers are stopped at teardown; a handler that raised (other than ``OSError``)
    fails the test.
    """
    servers: list[RawServer] = []

    def factory(handler: Handler) -> RawServer:
        srv = RawServer(handler).start()
        servers.append(srv)
        return srv

    yield factory
    for srv in servers:
        srv.stop()
    errors = [err for srv in servers for err in srv.errors]
    if errors:
        raise errors[0]


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs under ``tmp_path``: a disk that fills up for real."""
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a 2 MB tmpfs here ({exc}); a full disk needs one")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10)
