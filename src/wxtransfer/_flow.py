"""Flows: the logic that spans several requests of one transfer. They decide, never do I/O.

A flow is a generator in the shape of httpx's ``auth_flow``: it yields the next
``Exchange`` (one request on one easy handle) and is sent back the ``Answer`` of how that
exchange ended; when it returns, the last answer is the final one; when it raises a
``TransferError``, that is the transfer's failure. The engine runs it, one exchange at a
time, and the flow can be tested with no server at all.

Redirects are the first flow (SPEC §5): downloads follow 301/302/303/307/308, uploads only
307/308 (their body is sent again), at most 10; ``Authorization`` and ``Cookie`` are not
carried to another host, and platform rules may refuse a hop before it is contacted.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Generator
from typing import NamedTuple

from ._errors import Errno, InvalidArgumentError, NetworkError
from ._options import Api, Request
from ._rules import WeChatRules

__all__ = [
    "DOWNLOAD_REDIRECTS",
    "MAX_REDIRECTS",
    "UPLOAD_REDIRECTS",
    "Answer",
    "Exchange",
    "Flow",
    "advance",
    "follow_redirects",
    "same_origin",
]

MAX_REDIRECTS = 10
DOWNLOAD_REDIRECTS = frozenset({301, 302, 303, 307, 308})
UPLOAD_REDIRECTS = frozenset({307, 308})
_PRIVATE_HEADERS = frozenset({"authorization", "cookie"})


class Exchange(NamedTuple):
    """One request to make: where, with which headers, and which statuses the flow may
    follow (a response with one of them and a ``Location`` is not the final one)."""

    url: str
    headers: list[tuple[str, str]]
    follow: frozenset[int]


class Answer(NamedTuple):
    """How an exchange ended, once its response came in full: the status, and where its
    ``Location`` points (absolute), when it was one the exchange was told to follow."""

    status: int
    location: str | None = None


Flow = Generator[Exchange, Answer, None]


def advance(flow: Flow, answer: Answer) -> Exchange | None:
    """The flow's next exchange after ``answer``, or None when ``answer`` is the final one.

    A ``TransferError`` the flow raises goes through.
    """
    try:
        return flow.send(answer)
    except StopIteration:
        return None


def same_origin(a: str, b: str) -> bool:
    """Same host and port (default ports filled in), as for carrying credentials."""
    pa, pb = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)

    def port(p: urllib.parse.SplitResult) -> int | None:
        return p.port or {"http": 80, "https": 443}.get(p.scheme.lower())

    return (pa.hostname or "").lower() == (pb.hostname or "").lower() and port(pa) == port(pb)


def follow_redirects(request: Request, rules: WeChatRules | None = None) -> Flow:
    """The request, then each redirect it may follow, until a response that is final."""
    api: Api = request.api
    follow = DOWNLOAD_REDIRECTS if api == "downloadFile" else UPLOAD_REDIRECTS
    url, headers = request.url, request.headers
    redirects = 0
    while True:
        answer = yield Exchange(url, headers, follow)
        target = answer.location
        if answer.status not in follow or not target:
            return
        if redirects >= MAX_REDIRECTS:
            raise NetworkError(f"{api}:fail too many redirects", Errno.TOO_MANY_REDIRECTS)
        if urllib.parse.urlsplit(target).scheme.lower() not in ("http", "https"):
            raise InvalidArgumentError(
                f"{api}:fail invalid URL: redirect to unsupported {target!r}", Errno.INVALID_URL
            )
        if rules is not None:  # before the next host is contacted
            rules.check_redirect(api, url, target)
        if not same_origin(url, target):
            headers = [(k, v) for k, v in headers if k.lower() not in _PRIVATE_HEADERS]
        redirects += 1
        url = target
