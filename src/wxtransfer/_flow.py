"""Flows: the logic that spans several requests of one transfer. They decide, never do I/O.

A flow is a generator in the shape of httpx's ``auth_flow``: it yields the next
``Exchange`` (one request on one easy handle) and is sent back the ``Answer`` of how that
exchange ended; when it returns, the last answer is the final one; when it raises a
``TransferError``, that is the transfer's failure. The engine runs it, one exchange at a
time, and the flow can be tested with no server at all.

Redirects (SPEC §5): downloads follow 301/302/303/307/308, uploads only 307/308 (their
body is sent again), at most 10; ``Authorization`` and ``Cookie`` are not carried to
another host, and platform rules may refuse a hop before it is contacted. Retries
(SPEC §8): a failure or a status worth another attempt is tried again after a wait the
engine keeps as a timer, within the transfer's deadline; a download continues where it
stopped when the server allows it, and never joins bytes of two versions.
"""

from __future__ import annotations

import random
import time
import urllib.parse
from collections.abc import Callable, Generator, Mapping
from typing import NamedTuple, Protocol

from ._errors import Errno, InvalidArgumentError, NetworkError, TransferError
from ._options import Api, Request
from ._results import RetryEvent
from ._retry import Retry, backoff_delay, cannot_connect, retryable, status_wait
from ._rules import WeChatRules

__all__ = [
    "DOWNLOAD_REDIRECTS",
    "UPLOAD_REDIRECTS",
    "Answer",
    "Budget",
    "Exchange",
    "Flow",
    "FlowRunner",
    "LazyFlow",
    "Resume",
    "advance",
    "follow_redirects",
    "same_origin",
    "transfer_flow",
]

DOWNLOAD_REDIRECTS = frozenset({301, 302, 303, 307, 308})
UPLOAD_REDIRECTS = frozenset({307, 308})
_PRIVATE_HEADERS = frozenset({"authorization", "cookie"})


class Resume(NamedTuple):
    """Continue a download: ask for the bytes from ``offset`` with ``If-Range:
    validator``, and take only a 206 that starts there and whose complete length is
    ``total``."""

    offset: int
    validator: str
    total: int


class Exchange(NamedTuple):
    """One request to make: where, with which headers, which statuses the flow may
    follow (a response with one of them and a ``Location`` is not the final one), and
    for an attempt after the first: the wait before it, the event to report, whether to
    continue a download, and ``judge``, which says of a response status whether it will
    be tried again (the wait) or is final (None) while its body can still be kept.

    A resumable upload's exchanges (see _tus.py) also name their ``method`` (else the
    transfer's own request is made), the ``(offset, length)`` of the file they send, and
    ``keep``: an upload URL to checkpoint before the request goes out."""

    url: str
    headers: list[tuple[str, str]]
    follow: frozenset[int]
    delay: float = 0.0
    event: RetryEvent | None = None
    resume: Resume | None = None
    judge: Callable[[int, Mapping[str, str]], float | None] | None = None
    method: str = ""
    send: tuple[int, int] | None = None
    keep: str | None = None


class Answer(NamedTuple):
    """How an exchange ended: a response (``status``, its ``Location`` when it is one to
    follow, ``retry_wait`` when ``judge`` chose to try it again) or an ``error``; and
    what a download holds: its bytes, the validator and complete length of the response
    they belong to, and ``restart`` when a range answer did not fit them. A resumable
    upload's flow reads the response's ``head``."""

    status: int = 0
    location: str | None = None
    error: TransferError | None = None
    retry_wait: float | None = None
    held: int = 0
    validator: str | None = None
    total: int = 0
    restart: bool = False
    head: Mapping[str, str] | None = None


Flow = Generator[Exchange, Answer, None]


class FlowRunner(Protocol):
    """What the engine runs: the first exchange, then each next one after an answer."""

    first: Exchange

    def send(self, answer: Answer) -> Exchange | None: ...


class Budget:
    """Whether a wait before another attempt fits the transfer's deadline (on ``clock``)
    and the policy's ``max_time`` since the first attempt began."""

    __slots__ = ("_clock", "_deadline", "_max_time", "_started")

    def __init__(
        self,
        policy: Retry | None,
        deadline: Callable[[], float | None],
        clock: Callable[[], float],
    ) -> None:
        self._clock = clock
        self._deadline = deadline
        self._max_time = policy.max_time if policy is not None else None
        self._started = clock() if self._max_time is not None else 0.0

    def fits(self, wait: float) -> bool:
        now = self._clock()
        if self._max_time is not None and now + wait - self._started > self._max_time:
            return False
        end = self._deadline()
        return end is None or now + wait < end


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
    return transfer_flow(request, rules)


def transfer_flow(
    request: Request,
    rules: WeChatRules | None = None,
    retry: Retry | None = None,
    *,
    deadline: Callable[[], float | None] = lambda: None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    draw: Callable[[], float] = random.random,
) -> Flow:
    """A transfer's requests: the first, the redirects it follows, and with ``retry`` the
    attempts after a failure or a status to try again, each after its wait.

    ``deadline`` (on ``clock``) is the transfer's: a wait that would pass it is not taken.
    A download tried again continues where it stopped when the response it holds has a
    validator and a known length (Range + If-Range), else starts over.
    """
    api: Api = request.api
    follow = DOWNLOAD_REDIRECTS if api == "downloadFile" else UPLOAD_REDIRECTS
    url, headers = request.url, request.headers
    may_continue = (
        api == "downloadFile"
        and not request.compressed  # its bytes on disk are decoded: no range fits them
        and not any(k.lower() == "range" for k, _ in headers)
    )
    policy = retry if retry is not None and retry.total else None
    retries_left = policy.total if policy is not None else 0
    attempt = 1
    redirects = 0
    delay = 0.0
    event: RetryEvent | None = None
    resume: Resume | None = None
    if may_continue and request.resume_from is not None:  # a part kept by an earlier call
        resume = Resume(*request.resume_from)

    fits = Budget(policy, deadline, clock).fits

    def judge(status: int, head: Mapping[str, str]) -> float | None:
        assert policy is not None
        if not retries_left or status not in policy.statuses:
            return None
        if api == "uploadFile" and not policy.resend_uploads:
            return None  # the body was sent: a POST is not tried twice
        wait = status_wait(policy, status, head.get("retry-after"), wall_clock(), attempt + 1, draw)
        return wait if fits(wait) else None

    while True:
        sent = headers
        if resume is not None:
            sent = [*headers, ("Range", f"bytes={resume.offset}-"), ("If-Range", resume.validator)]
        answer = yield Exchange(
            url, sent, follow, delay, event, resume, judge if retries_left else None
        )
        error = answer.error
        if error is not None:
            if policy is None or not retries_left or not (answer.restart or retryable(error)):
                raise error
            if api == "uploadFile" and not (cannot_connect(error) or policy.resend_uploads):
                raise error
            wait = backoff_delay(policy, attempt + 1, draw)
            if not fits(wait):
                raise error
        elif answer.retry_wait is not None:
            wait = answer.retry_wait
        else:
            target = answer.location
            if answer.status not in follow or not target:
                return
            if redirects >= request.max_redirects:
                raise NetworkError(f"{api}:fail too many redirects", Errno.TOO_MANY_REDIRECTS)
            if urllib.parse.urlsplit(target).scheme.lower() not in ("http", "https"):
                raise InvalidArgumentError(
                    f"{api}:fail invalid URL: redirect to unsupported {target!r}",
                    Errno.INVALID_URL,
                )
            if rules is not None:  # before the next host is contacted
                rules.check_redirect(api, url, target)
            if not same_origin(url, target):
                headers = [(k, v) for k, v in headers if k.lower() not in _PRIVATE_HEADERS]
            redirects += 1
            url = target
            delay, event = 0.0, None
            continue
        # try again, after ``wait``
        attempt += 1
        retries_left -= 1
        delay = wait
        event = RetryEvent(attempt, wait, error, 0 if error is not None else answer.status)
        resume = None
        if may_continue and not answer.restart and answer.held and answer.validator:
            if answer.total > answer.held:
                resume = Resume(answer.held, answer.validator, answer.total)


class LazyFlow:
    """A transfer's flow, started only when an answer needs it.

    A transfer with no retry and nothing to resume asks for its request as it is, and its
    first answer, when final, ends it: most transfers never pay for the generator (a few
    µs each, in the thousands per second of small transfers). Decides exactly as
    ``transfer_flow``, which it starts for a redirect.
    """

    __slots__ = ("_args", "_flow", "first")

    def __init__(
        self,
        request: Request,
        rules: WeChatRules | None,
        retry: Retry | None,
        deadline: Callable[[], float | None],
    ) -> None:
        self._args = (request, rules, retry, deadline)
        self._flow: Flow | None = None
        if (retry is None or not retry.total) and request.resume_from is None:
            follow = DOWNLOAD_REDIRECTS if request.api == "downloadFile" else UPLOAD_REDIRECTS
            self.first = Exchange(request.url, request.headers, follow)
        else:
            self._flow = self._start()
            self.first = next(self._flow)

    def _start(self) -> Flow:
        request, rules, retry, deadline = self._args
        return transfer_flow(request, rules, retry, deadline=deadline)

    def send(self, answer: Answer) -> Exchange | None:
        """The next exchange after ``answer``, or None when it is the final one."""
        flow = self._flow
        if flow is None:
            if answer.error is not None:  # nothing is tried again without a retry
                raise answer.error
            if answer.status not in self.first.follow or not answer.location:
                return None
            flow = self._flow = self._start()
            next(flow)  # the first exchange, as sent
        return advance(flow, answer)
