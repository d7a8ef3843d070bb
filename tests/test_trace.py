"""DEBUG traces on the ``wxtransfer`` logger (SPEC §8): each phase, no secret.

Every phase of a transfer gets a line with its API and number; URLs appear without
userinfo or query, and no header value is written.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.helpers import runtime
from wxtransfer._trace import safe_url

SECRETS = ["hunter2", "s3cr3t-token", "cookie-value", "sig=abc123"]


def traces(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "wxtransfer"]


def test_each_phase_is_traced_without_secrets(
    tmp_path: Path, server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wxtransfer")
    host = server.url.split("//", 1)[1]
    url = f"http://user:hunter2@{host}/redirect/1?sig=abc123"
    with runtime(tmp_path) as rt:
        res = rt.download_file(
            url, header={"Authorization": "Bearer s3cr3t-token", "Cookie": "c=cookie-value"}
        ).result(20)
    assert res.status_code == 200
    lines = traces(caplog)
    number = re.match(r"downloadFile #(\d+) queued", lines[0])
    assert number, lines
    n = number.group(1)
    phases = [line.split(" ", 2)[2] for line in lines if line.startswith(f"downloadFile #{n} ")]
    assert phases[0] == f"queued http://{host}/redirect/1"
    assert phases[1] == "start"
    assert re.fullmatch(r"connected 127\.0\.0\.1:\d+", phases[2])
    assert phases[3].startswith("headers 302, Content-Length ")
    assert phases[4] == f"redirect 302 to http://{host}/redirect/0"
    assert re.fullmatch(r"connected 127\.0\.0\.1:\d+", phases[5])  # each exchange
    assert phases[6].startswith("headers 200")
    assert phases[7:] == ["done 200 after 2 exchange(s)"]
    text = "\n".join(lines)
    for secret in SECRETS:
        assert secret not in text


def test_a_failure_is_traced_without_the_query(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.servers import free_port

    caplog.set_level(logging.DEBUG, logger="wxtransfer")
    with runtime(tmp_path) as rt:
        err = rt.download_file(f"http://127.0.0.1:{free_port()}/x?sig=abc123").exception(10)
    assert isinstance(err, wxtransfer.NetworkError)
    failed = [line for line in traces(caplog) if " failed: " in line]
    assert len(failed) == 1 and "could not connect" in failed[0]
    assert "sig=abc123" not in "\n".join(traces(caplog))


def test_nothing_is_traced_unless_debug_is_on(
    tmp_path: Path, server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wxtransfer")
    with runtime(tmp_path) as rt:
        rt.download_file(server.url + "/bytes/10").result(10)
    assert traces(caplog) == []


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://u:p@Example.com:8443/a/b?q=1#f", "https://example.com:8443/a/b"),
        ("http://[::1]:8080/x?y", "http://[::1]:8080/x"),
        ("http://h/", "http://h/"),
        ("http://h:99999/", "<unparsable URL>"),
    ],
)
def test_safe_url(url: str, safe: str) -> None:
    assert safe_url(url) == safe
