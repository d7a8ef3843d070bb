"""DEBUG traces of each transfer's phases on the ``wxtransfer`` logger.

A line names the API, the transfer's number and the phase: ``downloadFile #7 start
https://cdn.example.com/a.png``. URLs lose their userinfo, query and fragment, and no
header value is ever written, so no credential (``Authorization``, ``Cookie``, a signed
query) reaches a log. Whether DEBUG is on is read once per transfer: tracing costs one
test per phase when it is off.
"""

from __future__ import annotations

import itertools
import logging
import urllib.parse

__all__ = ["logger", "next_number", "safe_url", "tracing"]

logger = logging.getLogger("wxtransfer")
_numbers = itertools.count(1)


def next_number() -> int:
    """A number for a new transfer, unique in the process."""
    return next(_numbers)


def tracing() -> bool:
    """Whether phases are traced now (DEBUG on the ``wxtransfer`` logger)."""
    return logger.isEnabledFor(logging.DEBUG)


def safe_url(url: str) -> str:
    """``url`` without userinfo, query or fragment: what a log may show of it."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"
