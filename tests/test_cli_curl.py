"""curl's habits on ``wxtransfer download``, through the real CLI (``python -m wxtransfer``)
against the local test servers: ``-o -``, ``-s``/``-S``, ``-v``, ``-L``/``--max-redirs``,
``-r``, ``-z``, ``-u``, ``-A``, ``--compressed``, ``-w`` and curl's exit codes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port
from tests.servers.app import pattern
from wxtransfer._server import DevServer
from wxtransfer.cli import ExitStatus

WAIT = 60


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, WXTRANSFER_HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, "-m", "wxtransfer", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevServer]:
    """The dev server, with ``page.html`` (mtime: 2020-01-01) in its root."""
    root = tmp_path / "devroot"
    root.mkdir()
    page = root / "page.html"
    page.write_bytes(pattern(5000))
    stamp = time.mktime((2020, 1, 1, 0, 0, 0, 0, 0, 0))
    os.utime(page, (stamp, stamp))
    with DevServer(root) as srv:
        yield srv


def test_exit_status_is_an_int_enum() -> None:
    assert ExitStatus.COULDNT_CONNECT == 7 and ExitStatus.HTTP_ERROR == 22
    assert ExitStatus.OPERATION_TIMEDOUT == 28 and ExitStatus.TOO_MANY_REDIRECTS == 47
    assert ExitStatus.INTERRUPTED == 130 and ExitStatus.TERMINATED == 143


def test_dash_o_dash_writes_the_body_to_stdout(work: Path, server: Any) -> None:
    out = cli(work, "download", server.url + "/bytes/200000", "-o", "-")
    assert out.returncode == 0, out.stderr
    assert out.stdout == pattern(200_000)
    assert out.stderr == b""
    assert os.listdir(work) == []  # no file named "-", no temp left
    both = cli(work, "download", server.url + "/bytes/1", "-o", "-", "-C")
    assert both.returncode == 2 and b"not with -o -" in both.stderr


def test_silent_and_show_error(work: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    silent = cli(work, "download", url, "-s")
    assert silent.returncode == 7
    assert silent.stderr == b"" and silent.stdout == b""
    shown = cli(work, "download", url, "-s", "-S")
    assert shown.returncode == 7
    assert shown.stderr.decode().startswith("Error: downloadFile:fail could not connect")


def test_verbose_shows_heads_and_trace_but_no_credentials(work: Path, server: Any) -> None:
    out = cli(
        work,
        "download",
        server.url + "/headers",
        "-o",
        "h.json",
        "-v",
        "-u",
        "alice:s3cret-pw",
        "-H",
        "Cookie: session=t0p-secret",
        "-A",
        "agent/9",
    )
    assert out.returncode == 0, out.stderr
    err = out.stderr.decode()
    assert "> GET /headers" in err and "> User-Agent: agent/9" in err
    assert "> Authorization: [redacted]" in err and "> Cookie: [redacted]" in err
    assert "< HTTP 200" in err and "< Content-Type: application/json" in err
    assert "* downloadFile #" in err and " queued " in err and " done 200" in err
    secret_b64 = base64.b64encode(b"alice:s3cret-pw").decode()
    for secret in ("s3cret-pw", secret_b64, "t0p-secret"):
        assert secret not in err
    sent = json.loads((work / "h.json").read_text())["headers"]
    assert sent["authorization"] == f"Basic {secret_b64}"
    assert sent["cookie"] == "session=t0p-secret" and sent["user-agent"] == "agent/9"


def test_location_and_max_redirs(work: Path, server: Any) -> None:
    followed = cli(
        work,
        "download",
        server.url + "/redirect/3",
        "-L",
        "-o",
        "-",
        "-w",
        "\\n%{http_code} %{num_redirects} %{url_effective}",
    )
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.decode() == f"done\n200 3 {server.url}/redirect/0"
    too_many = cli(work, "download", server.url + "/redirect/3", "--max-redirs", "2", "-o", "x")
    assert too_many.returncode == ExitStatus.TOO_MANY_REDIRECTS, too_many.stderr
    assert b"redirect" in too_many.stderr
    assert os.listdir(work) == []


def test_url_effective_keeps_the_query_of_the_last_hop(work: Path, server: Any) -> None:
    target = urllib.parse.quote(server.url + "/redirect/0?page=2&q=a%20b", safe="")
    out = cli(
        work, "download", f"{server.url}/redirect-to?url={target}", "-o", "-",
        "-w", "\\n%{num_redirects} %{url_effective}",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == f"done\n1 {server.url}/redirect/0?page=2&q=a%20b"


def test_range(work: Path, dev: DevServer) -> None:
    out = cli(
        work, "download", dev.url + "/files/page.html", "-r", "100-199", "-o", "part",
        "-w", "%{http_code} %{size_download}",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == [str(work / "part"), "206 100"]
    assert (work / "part").read_bytes() == pattern(5000)[100:200]
    tail = cli(work, "download", dev.url + "/files/page.html", "-r", "-10", "-o", "-")
    assert tail.stdout == pattern(5000)[-10:]
    for bad in ("10", "a-b", "20-10", ""):
        usage = cli(work, "download", dev.url + "/files/page.html", "-r", bad)
        assert usage.returncode == 2, bad
    with_c = cli(work, "download", dev.url + "/files/page.html", "-r", "0-1", "-C")
    assert with_c.returncode == 2


def test_time_cond(work: Path, dev: DevServer) -> None:
    url = dev.url + "/files/page.html"
    # not modified since: a 304, nothing saved, exit 0
    newer = cli(work, "download", url, "-z", "2024-05-01", "-o", "p.html", "-w", "%{http_code}")
    assert newer.returncode == 0, newer.stderr
    assert newer.stdout == b"304" and os.listdir(work) == []
    # modified since: saved
    older = cli(work, "download", url, "-z", "Sat, 01 Jan 2000 00:00:00 GMT", "-o", "p.html")
    assert older.returncode == 0, older.stderr
    assert (work / "p.html").read_bytes() == pattern(5000)
    # -z FILE -o FILE: replaced only when the server's copy is newer (curl's idiom)
    stamp = time.mktime((2019, 1, 1, 0, 0, 0, 0, 0, 0))
    (work / "p.html").write_bytes(b"old copy")
    os.utime(work / "p.html", (stamp, stamp))
    updated = cli(work, "download", url, "-z", "p.html", "-o", "p.html")
    assert updated.returncode == 0, updated.stderr
    assert (work / "p.html").read_bytes() == pattern(5000)
    same = cli(work, "download", url, "-z", "p.html", "-o", "p.html", "-w", "%{http_code}")
    assert same.returncode == 0 and same.stdout == b"304"
    bad = cli(work, "download", url, "-z", "next tuesday")
    assert bad.returncode == 2 and b"neither a file nor a date" in bad.stderr


def test_user_basic_auth(work: Path, httpbin_url: str) -> None:
    url = httpbin_url + "/basic-auth/alice/pw"
    ok = cli(work, "download", url, "-u", "alice:pw", "-o", "-")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"authenticated": True, "user": "alice"}
    wrong = cli(work, "download", url, "-u", "alice:nope", "-o", "-", "-f")
    assert wrong.returncode == 22 and b"HTTP 401" in wrong.stderr
    no_colon = cli(work, "download", url, "-u", "alice")
    assert no_colon.returncode == 2 and b"user:password" in no_colon.stderr


def test_user_agent(work: Path, httpbin_url: str) -> None:
    out = cli(work, "download", httpbin_url + "/user-agent", "-A", "curl/8.0 (pretend)", "-o", "-")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"user-agent": "curl/8.0 (pretend)"}
    default = cli(work, "download", httpbin_url + "/user-agent", "-o", "-")
    assert json.loads(default.stdout)["user-agent"].startswith("wxtransfer/")


@pytest.mark.parametrize("route", ["gzip", "deflate", "brotli"])
def test_compressed(work: Path, httpbin_url: str, route: str) -> None:
    out = cli(work, "download", f"{httpbin_url}/{route}", "--compressed", "-o", "-")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)  # decoded on the way
    assert body[{"gzip": "gzipped", "deflate": "deflated", "brotli": "brotli"}[route]] is True
    assert route.replace("brotli", "br") in body["headers"]["Accept-Encoding"]
    plain = cli(work, "download", f"{httpbin_url}/gzip", "-o", "-")
    assert plain.stdout[:2] == b"\x1f\x8b"  # not asked for: the gzip bytes as sent


def test_write_out(work: Path, server: Any) -> None:
    fmt = "%{http_code}|%{size_download}|%{time_total}|%{url_effective}|%{exitcode}|%%|\\t|"
    out = cli(work, "download", server.url + "/bytes/1234", "-o", "b", "-w", fmt)
    assert out.returncode == 0, out.stderr
    path, line = out.stdout.decode().split("\n", 1)
    assert path == str(work / "b")
    code, size, seconds, effective, exit_code, percent, tab, _ = line.split("|")
    assert (code, size, effective, exit_code, percent, tab) == (
        "200", "1234", server.url + "/bytes/1234", "0", "%", "\t"
    )  # fmt: skip
    assert 0 < float(seconds) < 30
    (work / "fmt.txt").write_text("%{response_code} %{content_type}\\n")
    from_file = cli(work, "download", server.url + "/status/404", "-o", "-", "-w", "@fmt.txt")
    assert from_file.stdout.decode().endswith("404 text/plain; charset=utf-8\n")
    failed = cli(
        work, "download", f"http://127.0.0.1:{free_port()}/", "-s", "-w", "%{http_code} %{exitcode}"
    )
    assert failed.returncode == 7 and failed.stdout == b"000 7"


def test_curls_exit_codes(work: Path, server: Any) -> None:
    assert cli(work, "download", f"http://127.0.0.1:{free_port()}/").returncode == 7
    assert cli(work, "download", server.url + "/truncated/100000").returncode == 18
    assert cli(work, "download", server.url + "/status/404", "-f").returncode == 22
    assert cli(work, "download", server.url + "/bytes/1", "-o", "no/such/x").returncode == 23
    assert cli(work, "download", server.url + "/hang", "-m", "0.3").returncode == 28
    assert cli(work, "download", server.url + "/redirect-loop").returncode == 47
