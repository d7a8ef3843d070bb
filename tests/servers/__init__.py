"""Local test servers (127.0.0.1 only) used by the test-suite.

- :mod:`tests.servers.app`: aiohttp application with deterministic routes.
- :mod:`tests.servers.threaded`: run an aiohttp app in a background thread.
- :mod:`tests.servers.rawsock`: raw-socket server for byte-exact faults.
- :mod:`tests.servers.httpbin`: httpbin under gunicorn, as a subprocess.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from typing import Any


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(proc: subprocess.Popen[Any], timeout: float, kill_wait: float = 5) -> None:
    """End ``proc`` by its PID: SIGTERM, then SIGKILL if it still runs after ``timeout`` s."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(kill_wait)


__all__ = ["free_port", "stop_process"]
