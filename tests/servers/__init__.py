"""Local test servers (127.0.0.1 only) used by the test-suite.

- :mod:`tests.servers.app`: aiohttp application with deterministic routes.
- :mod:`tests.servers.threaded`: run an aiohttp app in a background thread.
- :mod:`tests.servers.rawsock`: raw-socket server for byte-exact faults.
- :mod:`tests.servers.httpbin`: httpbin under gunicorn, as a subprocess.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


__all__ = ["free_port"]
