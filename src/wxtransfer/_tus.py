"""Resumable uploads: the tus 1.0 core protocol with the creation extension, as a flow.

The flow decides each request and does no I/O (see _flow.py): ``POST`` to the endpoint
creates the upload (its ``Location`` is the upload URL, checkpointed before the first byte
is sent), ``HEAD`` asks the server's offset, ``PATCH`` sends the file from that offset.
An upload URL kept by an earlier call is asked for its offset first. After a failure or a
status worth another attempt, the next attempt asks the offset again and continues from
there: a PATCH at the server's offset is safe to resend, so tus uploads are retried as
``retry`` allows, whatever ``resend_uploads`` says. ``retry.total`` counts the retries in
a row that moved nothing on: once the server's offset passes where it stood at the last
retry, the budget and the backoff start afresh (a long upload over a link that drops
every few minutes is never given up while it progresses). An upload the server no longer knows
(404, 410) is started anew, once. A response without ``Tus-Resumable`` is not tus: a
``NetworkError`` that says so.
"""

from __future__ import annotations

import random
import time
import urllib.parse
from collections.abc import Callable, Mapping

from ._errors import Errno, NetworkError, TransferError
from ._flow import Answer, Budget, Exchange, Flow, advance
from ._options import Request
from ._results import RetryEvent
from ._retry import Retry, backoff_delay, retryable, status_wait

__all__ = ["TUS_VERSION", "TusFlow", "tus_flow"]

TUS_VERSION = "1.0.0"
_GONE = frozenset({404, 410})
_NO_FOLLOW: frozenset[int] = frozenset()
_SYNCS = 3  # 409s (the client's offset is not the server's) answered by asking it


def _not_tus(method: str, status: int) -> NetworkError:
    return NetworkError(
        f"uploadFile:fail the server does not speak tus: its answer to {method} "
        f"(HTTP {status}) has no Tus-Resumable header",
        Errno.UNKNOWN_NETWORK,
    )


def _offset(head: Mapping[str, str], method: str, status: int) -> int:
    raw = head.get("upload-offset", "").strip()
    if not raw.isdigit():
        raise NetworkError(
            f"uploadFile:fail tus: the answer to {method} (HTTP {status}) has no valid "
            f"Upload-Offset ({raw or 'none'})",
            Errno.UNKNOWN_NETWORK,
        )
    return int(raw)


def tus_flow(
    request: Request,
    retry: Retry | None = None,
    *,
    deadline: Callable[[], float | None] = lambda: None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    draw: Callable[[], float] = random.random,
) -> Flow:
    """The requests of one resumable upload, until the server holds the whole file."""
    tus = request.tus
    assert tus is not None
    endpoint, size = request.url, tus.size
    base = [*request.headers, ("Tus-Resumable", TUS_VERSION)]
    policy = retry if retry is not None and retry.total else None
    retries_left = policy.total if policy is not None else 0
    fits = Budget(policy, deadline, clock).fits
    attempt = 1
    streak = 0  # retries since the server's offset last moved on
    mark = -1  # the offset the server was known to hold at the last retry
    upload_url = tus.known_url
    offset: int | None = None  # the server's, when known
    keep: str | None = None  # an upload URL to checkpoint with the next request
    started_anew = False
    syncs_left = _SYNCS
    delay, event = 0.0, None

    while True:
        if upload_url is None:
            created = [*base, ("Upload-Length", str(size))]
            if tus.metadata:
                created.append(("Upload-Metadata", tus.metadata))
            exchange = Exchange(endpoint, created, _NO_FOLLOW, delay, event, method="POST")
        elif offset is None:
            exchange = Exchange(upload_url, base, _NO_FOLLOW, delay, event, method="HEAD")
        else:
            left = size - offset
            length = min(tus.chunk_size, left) if tus.chunk_size else left
            patch = [
                *base,
                ("Upload-Offset", str(offset)),
                ("Content-Type", "application/offset+octet-stream"),
            ]
            exchange = Exchange(
                upload_url,
                patch,
                _NO_FOLLOW,
                delay,
                event,
                method="PATCH",
                send=(offset, length),
                keep=keep,
            )
            keep = None
        method = exchange.method
        delay, event = 0.0, None
        answer = yield exchange

        error: TransferError | None = answer.error
        status = answer.status
        if error is None:
            head = answer.head or {}
            worth_a_retry = policy is not None and retries_left and status in policy.statuses
            if "tus-resumable" not in head:
                if not worth_a_retry:  # (a proxy's 503 may not say tus: tried again)
                    raise _not_tus(method, status)
            elif method == "POST":
                location = head.get("location", "")
                if status == 201 and location:
                    upload_url = keep = urllib.parse.urljoin(endpoint, location)
                    offset = 0
                    if not size:  # nothing to send: created whole
                        return
                    continue
                if 200 <= status < 300:
                    raise NetworkError(
                        f"uploadFile:fail tus: the server created no upload (HTTP {status} "
                        "without Location)",
                        Errno.UNKNOWN_NETWORK,
                    )
            elif status in _GONE and not started_anew:  # the server forgot it: anew, once
                started_anew = True
                upload_url, offset = None, None
                continue
            elif method == "HEAD" and head.get("upload-length", str(size)).strip() != str(size):
                if started_anew:
                    raise NetworkError(
                        f"uploadFile:fail tus: the server's upload is "
                        f"{head.get('upload-length')} bytes long, the file {size}",
                        Errno.UNKNOWN_NETWORK,
                    )
                started_anew = True  # another file's upload: this one starts anew
                upload_url, offset = None, None
                continue
            elif 200 <= status < 300:
                got = _offset(head, method, status)
                if method == "PATCH" and offset is not None and got <= offset:
                    raise NetworkError(
                        f"uploadFile:fail tus: the server took none of the bytes sent (its "
                        f"offset stays {got})",
                        Errno.UNKNOWN_NETWORK,
                    )
                if got > size:
                    raise NetworkError(
                        f"uploadFile:fail tus: the server holds {got} bytes of a {size}-byte "
                        "file: not this file's upload",
                        Errno.UNKNOWN_NETWORK,
                    )
                offset = got
                if offset == size:
                    return
                if streak and got > mark and policy is not None:  # moving on: a fresh budget
                    streak, retries_left = 0, policy.total
                continue
            elif method == "PATCH" and status == 409 and syncs_left:  # offsets differ
                syncs_left -= 1
                offset = None  # ask the server where it stands, at once: no retry
                continue
            if not worth_a_retry:
                return  # a final response: its status is the result (the platform's rule)
            assert policy is not None
            wait = status_wait(
                policy, status, head.get("retry-after"), wall_clock(), streak + 2, draw
            )
        else:
            if policy is None or not retries_left or not retryable(error):
                raise error
            wait = backoff_delay(policy, streak + 2, draw)
        if not fits(wait):
            if error is not None:
                raise error
            return
        attempt += 1
        streak += 1
        retries_left -= 1
        delay = wait
        event = RetryEvent(attempt, wait, error, 0 if error is not None else status)
        mark = max(mark, offset if offset is not None else -1)
        offset = None  # ask the server where it stands


class TusFlow:
    """A resumable upload's flow, in the engine's shape: ``first``, then ``send``."""

    __slots__ = ("_flow", "first")

    def __init__(
        self, request: Request, retry: Retry | None, deadline: Callable[[], float | None]
    ) -> None:
        self._flow = tus_flow(request, retry, deadline=deadline)
        self.first = next(self._flow)

    def send(self, answer: Answer) -> Exchange | None:
        """The next exchange after ``answer``, or None when it is the final one."""
        return advance(self._flow, answer)
