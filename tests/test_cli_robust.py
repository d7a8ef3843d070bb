"""The CLI's options for bad networks, through the real command (a child process):
--retry, --retry-delay, -C/--continue, --checksum, --limit-rate, --stall-timeout,
--max-time; curl's defaults (no overall deadline, a 30 s stall)."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import cli_on_terminal
from tests.servers.faults import Faulty
from tests.servers.rawsock import RawServer, hang

RawFactory = Callable[..., RawServer]
BODY = os.urandom(300_000)


def cli(tmp_path: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WXTRANSFER_HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, "-m", "wxtransfer", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_retry_continues_a_cut_download(tmp_path: Path, raw_server: RawFactory) -> None:
    faulty = Faulty(BODY, cut_after=100_000, cuts=2)
    srv = raw_server(faulty)
    out = cli(
        tmp_path, "download", srv.url + "/f", "-o", "f.bin", "--retry", "3", "--retry-delay", "0"
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert [r.get("range") for r in faulty.requests] == [None, "bytes=100000-", "bytes=200000-"]


def test_without_retry_a_cut_fails(tmp_path: Path, raw_server: RawFactory) -> None:
    srv = raw_server(Faulty(BODY, cut_after=100_000, cuts=1))
    out = cli(tmp_path, "download", srv.url + "/f", "-o", "f.bin")
    assert out.returncode == 18  # curl's "partial file"
    assert not (tmp_path / "f.bin").exists()


def test_continue_keeps_the_bytes_and_the_same_command_continues(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    faulty = Faulty(BODY, cut_after=100_000, cuts=1)
    srv = raw_server(faulty)
    first = cli(tmp_path, "download", srv.url + "/f", "-C", "-o", "f.bin")
    assert first.returncode == 18
    assert "wait in" in first.stderr and "f.bin.wxpart" in first.stderr
    assert "run the same command again" in first.stderr
    assert (tmp_path / "f.bin.wxpart").stat().st_size == 100_000
    second = cli(tmp_path, "download", srv.url + "/f", "-C", "-o", "f.bin")
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert not (tmp_path / "f.bin.wxpart").exists()
    assert faulty.requests[1]["range"] == "bytes=100000-"
    assert second.stdout.strip() == str(tmp_path / "f.bin")


def test_continue_without_o_uses_the_urls_name(tmp_path: Path, raw_server: RawFactory) -> None:
    srv = raw_server(Faulty(BODY, cut_after=100_000, cuts=1))
    assert cli(tmp_path, "download", srv.url + "/data.bin", "-C").returncode == 18
    assert (tmp_path / "data.bin.wxpart").exists()
    assert cli(tmp_path, "download", srv.url + "/data.bin", "-C").returncode == 0
    assert (tmp_path / "data.bin").read_bytes() == BODY


def test_ctrl_c_with_continue_keeps_the_part_and_says_how_to_go_on(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    faulty = Faulty(os.urandom(3 << 20), drip=0.01)
    srv = raw_server(faulty)
    env = dict(os.environ, WXTRANSFER_HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "wxtransfer", "download", srv.url + "/f", "-C", "-o", "f.bin"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and faulty.sent < 1 << 20:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, err
    assert "run the same command again" in err
    assert (tmp_path / "f.bin.wxpart").exists() and not (tmp_path / "f.bin").exists()


def test_a_wrong_checksum_fails_and_leaves_nothing(tmp_path: Path, raw_server: RawFactory) -> None:
    srv = raw_server(Faulty(BODY))
    right = hashlib.sha256(BODY).hexdigest()
    ok = cli(tmp_path, "download", srv.url + "/f", "-o", "ok.bin", "--checksum", f"sha256:{right}")
    assert ok.returncode == 0, ok.stderr
    bad = cli(
        tmp_path, "download", srv.url + "/f", "-o", "bad.bin", "--checksum", "sha256:" + "0" * 64
    )
    assert bad.returncode == 1
    assert "checksum mismatch" in bad.stderr
    assert not (tmp_path / "bad.bin").exists()


def test_limit_rate_takes_curls_suffixes(tmp_path: Path, raw_server: RawFactory) -> None:
    srv = raw_server(Faulty(BODY))
    started = time.monotonic()
    out = cli(tmp_path, "download", srv.url + "/f", "-o", "f.bin", "--limit-rate", "300K")
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started >= 0.7  # 300 kB at 300 KiB/s: about a second


def test_a_stall_ends_the_transfer(tmp_path: Path, raw_server: RawFactory) -> None:
    srv = raw_server(hang())
    out = cli(tmp_path, "download", srv.url + "/f", "-o", "f.bin", "--stall-timeout", "0.3")
    assert out.returncode == 28
    assert "stalled" in out.stderr


def test_max_time_and_timeout(tmp_path: Path, raw_server: RawFactory) -> None:
    srv = raw_server(hang())
    out = cli(tmp_path, "download", srv.url + "/f", "-o", "f.bin", "--max-time", "0.3")
    assert out.returncode == 28
    assert "downloadFile:fail timeout" in out.stderr and "stalled" not in out.stderr
    both = cli(tmp_path, "download", srv.url + "/f", "--max-time", "1", "--timeout", "1000")
    assert both.returncode == 2 and "not both" in both.stderr


def test_upload_takes_them_too(tmp_path: Path, server: Any) -> None:
    (tmp_path / "u.bin").write_bytes(BODY)
    out = cli(
        tmp_path, "upload", server.url + "/upload", "u.bin", "--retry", "2", "--limit-rate", "1M"
    )
    assert out.returncode == 0, out.stderr


def test_the_default_is_curls_a_30_s_stall_and_no_deadline() -> None:
    from wxtransfer.cli import options
    from wxtransfer.cli.commands import upload

    params = {p.name: p for p in upload.params}
    assert params["timeout"].default is None and params["stall_timeout"].default is None
    assert options._DEFAULT_STALL_S == 30.0


def test_connect_timeout_and_retry_max_time(tmp_path: Path) -> None:
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = [socket.socket() for _ in range(4)]
    try:
        for s in fillers:
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
        time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/x"
        started = time.monotonic()
        out = cli(
            tmp_path,
            "download",
            url,
            "--connect-timeout",
            "0.2",
            "--retry",
            "50",
            "--retry-delay",
            "0.1",
            "--retry-max-time",
            "1",
        )
        took = time.monotonic() - started
    finally:
        for s in fillers:
            s.close()
        server.close()
    assert out.returncode == 28  # curl's code for a connect timeout too
    assert "could not connect: no connection within 200 ms" in out.stderr
    assert took < 10  # --retry-max-time, not 50 retries


# --------------------------------------------------------------------------- the bar


def on_terminal(tmp_path: Path, *args: str) -> tuple[int, str]:
    """Run the CLI with stderr on a pty (so the live bar is drawn); its code and screen text."""
    env = {"WXTRANSFER_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path)}
    code, screen, _ = cli_on_terminal(tmp_path, *args, env=env, timeout=30)
    return code, screen


def test_the_bar_shows_each_retry_as_it_happens(tmp_path: Path, raw_server: RawFactory) -> None:
    faulty = Faulty(BODY, statuses=[503, 503], retry_after="1")
    srv = raw_server(faulty)
    code, screen = on_terminal(tmp_path, "download", srv.url + "/f", "-o", "f.bin", "--retry", "5")
    assert code == 0, screen
    shown = sorted(set(re.findall(r"download f\.bin · retry [^━]*", screen)))
    assert "download f.bin · retry 1/5 in 1.0 s: HTTP 503 " in shown, shown
    assert "download f.bin · retry 2/5 in 1.0 s: HTTP 503 " in shown, shown
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_the_bar_names_the_error_of_a_retried_cut(tmp_path: Path, raw_server: RawFactory) -> None:
    srv = raw_server(Faulty(BODY, cut_after=100_000, cuts=1))
    code, screen = on_terminal(
        tmp_path, "download", srv.url + "/f", "-o", "f.bin", "--retry", "2", "--retry-delay", "1"
    )
    assert code == 0, screen
    # a jittered wait of up to --retry-delay; the error's headline, not its whole text
    shown = set(re.findall(r"retry 1/2 in [01]\.[0-9] s: [^━]*", screen))
    assert {s.split(": ", 1)[1].strip() for s in shown} == {
        "body shorter than its Content-Length"
    }, shown
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_a_continued_download_starts_its_bar_at_the_bytes_held(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    faulty = Faulty(BODY, cut_after=200_000, cuts=1, drip=0.05)
    srv = raw_server(faulty)
    first = cli(tmp_path, "download", srv.url + "/f", "-C", "-o", "f.bin")
    assert first.returncode == 18
    assert (tmp_path / "f.bin.wxpart").stat().st_size == 200_000
    code, screen = on_terminal(tmp_path, "download", srv.url + "/f", "-C", "-o", "f.bin")
    assert code == 0, screen
    assert faulty.requests[1]["range"] == "bytes=200000-"
    # rich's DownloadColumn: "<done>/<total> KiB"; every frame with the total is past the part
    shown = [float(done) for done in re.findall(r"([0-9.]+)/293\.0 KiB", screen)]
    assert shown, screen
    assert min(shown) >= 195.3, shown
