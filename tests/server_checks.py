"""Helpers for the developer server's tests: its access log and troubles in ``caplog``,
a connection reset, and a bounded wait."""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest

ACCESS = "wxtransfer.server.access"


def rst_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """``predicate()``'s first true value, polled; the test fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in list(caplog.records) if r.name == ACCESS]


def troubles(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Warnings, errors and tracebacks logged by anyone (aiohttp.server included)."""
    bad = [r for r in list(caplog.records) if r.levelno >= logging.WARNING or r.exc_info]
    return [f"{r.name}: {r.getMessage()} {r.exc_info!r}" for r in bad]
