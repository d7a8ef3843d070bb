"""Retry: when a failed attempt is tried again, and how long to wait first (SPEC §8).

Pure: a frozen value object and functions of it, with the random draw and the clock
passed in, as urllib3's ``Retry`` (its ``get_backoff_time`` is pure; its blocking
``sleep`` is not ours: the engine schedules a timer).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import TimeoutError, TransferError

__all__ = [
    "RETRIED_CURL_CODES",
    "Retry",
    "as_retry",
    "backoff_delay",
    "cannot_connect",
    "parse_retry_after",
    "retryable",
    "status_wait",
]

# libcurl codes worth another attempt: cannot connect (DNS, refused, a TLS handshake cut
# short), reset, an empty reply, an HTTP/2 or HTTP/3 stream error, a body shorter than
# announced. Certificate failures (51, 58, 60, 77, 83, 90, 91) are not: they will fail
# again. 28 is the deadline itself, which a retry never extends.
_CANNOT_CONNECT = frozenset({5, 6, 7, 35})
RETRIED_CURL_CODES = _CANNOT_CONNECT | frozenset({18, 52, 55, 56, 92, 95})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
STALLED = "(stalled"  # in the errMsg of a stall: "timeout (stalled: ...)"


@dataclass(frozen=True, slots=True)
class Retry:
    """How a transfer is tried again. Immutable; ``retry=3`` means ``Retry(total=3)``.

    ``total`` more attempts at most; before attempt n (n >= 2) a wait of
    ``backoff * 2 ** (n - 2)`` seconds, capped at ``max_backoff``, with full jitter (a
    uniform draw between 0 and that); with ``retry_after``, a ``Retry-After`` on a 429 or
    503 sets the wait exactly. ``statuses`` are the response codes tried again.
    Uploads are tried again only when no byte of the body left (cannot connect), unless
    ``resend_uploads`` (a POST is not idempotent). With ``max_time`` (seconds, as curl's
    ``--retry-max-time``) no attempt starts later than that after the first.
    """

    total: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
    retry_after: bool = True
    resend_uploads: bool = False
    max_time: float | None = None  # no attempt starts later than this after the first

    def __post_init__(self) -> None:
        if isinstance(self.total, bool) or not isinstance(self.total, int) or self.total < 0:
            raise ValueError(f"Retry total should be an int >= 0, not {self.total!r}")
        if self.max_time is not None and (
            isinstance(self.max_time, bool)
            or not isinstance(self.max_time, int | float)
            or not self.max_time >= 0
        ):
            raise ValueError(f"Retry max_time should be seconds >= 0, not {self.max_time!r}")
        for what, value in (("backoff", self.backoff), ("max_backoff", self.max_backoff)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"Retry {what} should be seconds >= 0, not {value!r}")
        statuses = self.statuses
        if not isinstance(statuses, frozenset):
            try:
                statuses = frozenset(statuses)
            except TypeError:
                raise ValueError(
                    f"Retry statuses should be status codes, not {statuses!r}"
                ) from None
            object.__setattr__(self, "statuses", statuses)
        for status in statuses:
            if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
                raise ValueError(f"Retry statuses should be status codes, not {status!r}")


def as_retry(value: object) -> Retry | None:
    """``retry=`` as given: None (the runtime's default), 0 (no retry), an int n
    (``Retry(total=n)``) or a ``Retry``. Raises ValueError for anything else."""
    if value is None or isinstance(value, Retry):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"retry should be an int >= 0 or a wxtransfer.Retry, not {value!r}")
    return Retry(total=value)


def backoff_delay(retry: Retry, attempt: int, draw: Callable[[], float]) -> float:
    """The wait before ``attempt`` (2 for the first retry): full jitter over the capped
    exponential backoff. ``draw`` gives a uniform number in [0, 1)."""
    ceiling = min(float(retry.max_backoff), retry.backoff * 2.0 ** (attempt - 2))
    return draw() * ceiling


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP date) at
    ``now`` (seconds since the epoch); None when there is none or it cannot be read."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    import email.utils  # rare, and a tenth of wxtransfer's import time: only when needed

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT
        return None
    return max(0.0, when.timestamp() - now)


def status_wait(
    retry: Retry,
    status: int,
    retry_after: str | None,
    now: float,
    attempt: int,
    draw: Callable[[], float],
) -> float:
    """The wait before ``attempt`` after a ``status`` worth another: what ``Retry-After``
    sets (on 429 and 503, uncapped), else the backoff."""
    if retry.retry_after and status in _RETRY_AFTER_STATUSES:
        wait = parse_retry_after(retry_after, now)
        if wait is not None:
            return wait
    return backoff_delay(retry, attempt, draw)


def cannot_connect(error: TransferError) -> bool:
    """The request never reached the server: no byte of a body left. A libcurl timeout
    (28) that is not the deadline's (a ``TimeoutError``) is an attempt's connect timeout."""
    code = error.curl_code
    return code in _CANNOT_CONNECT or (code == 28 and not isinstance(error, TimeoutError))


def retryable(error: TransferError) -> bool:
    """Whether another attempt may fare better (a stall, a cut, cannot connect ...)."""
    if isinstance(error, TimeoutError):
        return STALLED in error.err_msg
    return error.curl_code in RETRIED_CURL_CODES or cannot_connect(error)
