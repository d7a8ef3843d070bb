"""Many downloads in one command, through the real CLI (``python -m wxtransfer``) against
the local test servers: curl's pairing of ``-o``/``-O`` with the URLs, ``-i``, ``-P``,
``-j``, the bars, the summary, ``--json`` lines and curl's exit status for several
transfers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import cli_on_terminal
from tests.servers import free_port
from tests.servers.app import pattern

WAIT = 60


def cli(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, WXTRANSFER_HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, "-m", "wxtransfer", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=WAIT,
        input=stdin.encode() if stdin is not None else None,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        check=False,
    )


def test_outputs_pair_with_urls_in_order(tmp_path: Path, server: Any) -> None:
    """``-o`` and ``-O`` go with the URLs in the order given; URLs past them get their
    remote names; ``-P`` is the folder of both."""
    urls = [server.url + "/bytes/1000", server.url + "/file/report.pdf", server.url + "/bytes/3000"]
    out = cli(tmp_path, "download", *urls, "-O", "-o", "second.pdf", "-P", "out")
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "out"
    assert sorted(os.listdir(folder)) == ["1000", "3000", "second.pdf"]
    assert (folder / "1000").read_bytes() == pattern(1000)
    assert (folder / "second.pdf").read_bytes() == pattern(1000)
    assert (folder / "3000").read_bytes() == pattern(3000)
    assert sorted(out.stdout.decode().split()) == sorted(
        str(folder / name) for name in ("1000", "second.pdf", "3000")
    )
    summary = out.stderr.decode()
    for url in urls:
        assert url in summary
    assert "saved to / error" in summary


def test_more_outputs_than_urls_is_a_usage_error(tmp_path: Path, server: Any) -> None:
    out = cli(tmp_path, "download", server.url + "/bytes/1", "-o", "a", "-o", "b")
    assert out.returncode == 2
    assert b"not both" in out.stderr or b"one (at most)" in out.stderr
    out = cli(
        tmp_path, "download", server.url + "/bytes/1", server.url + "/bytes/2", "-O", "-O", "-O"
    )
    assert out.returncode == 2 and b"3 -o/-O options for 2 URLs" in out.stderr


def test_exit_status_is_the_last_failures(tmp_path: Path, server: Any) -> None:
    """curl's rule for several transfers: the code of the last one that failed (in the
    URLs' order); the others still complete, and the summary names each error."""
    refused = f"http://127.0.0.1:{free_port()}/x"
    ok = server.url + "/bytes/100"
    http_500 = server.url + "/status/500"
    out = cli(tmp_path, "download", ok, refused, http_500, "-o", "ok.bin", "-O", "-O", "--fail")
    assert out.returncode == 22, out.stderr
    assert (tmp_path / "ok.bin").read_bytes() == pattern(100)
    assert not (tmp_path / "500").exists() and not (tmp_path / "x").exists()
    summary = out.stderr.decode()
    assert "could not connect" in summary and "HTTP 500" in summary
    out = cli(tmp_path, "download", http_500, refused, "--fail", "-P", "again")
    assert out.returncode == 7, out.stderr  # curl's "could not connect", the last one


def test_input_file_and_stdin(tmp_path: Path, server: Any) -> None:
    listing = f"# a comment\n\n{server.url}/bytes/10\n  {server.url}/bytes/20  \n"
    (tmp_path / "urls.txt").write_text(listing)
    out = cli(tmp_path, "download", "-i", "urls.txt", "-P", "from-file")
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(tmp_path / "from-file")) == ["10", "20"]
    out = cli(tmp_path, "download", server.url + "/bytes/30", "-i", "-", "-P", "s", stdin=listing)
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(tmp_path / "s")) == ["10", "20", "30"]
    out = cli(tmp_path, "download", "-i", "missing.txt")
    assert out.returncode == 2 and b"cannot read missing.txt" in out.stderr
    out = cli(tmp_path, "download", "-i", "-", stdin="# nothing\n")
    assert out.returncode == 2 and b"Missing argument" in out.stderr


def test_parallel_limit(tmp_path: Path, server: Any) -> None:
    """``-j 2``: never more than two requests in flight at the server."""
    urllib.request.urlopen(
        urllib.request.Request(server.url + "/concurrent/reset", method="POST"), timeout=10
    ).close()
    urls = [f"{server.url}/concurrent?delay=0.3&n={i}" for i in range(5)]
    names = [arg for i in range(5) for arg in ("-o", f"c{i}")]
    started = time.monotonic()
    out = cli(tmp_path, "download", *urls, *names, "-j", "2")
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    with urllib.request.urlopen(server.url + "/concurrent/stats", timeout=10) as r:
        stats = json.loads(r.read())
    assert stats["max"] == 2 and stats["total"] == 5, stats
    assert took >= 0.9  # three rounds of 0.3 s
    out = cli(tmp_path, "download", server.url + "/bytes/1", "-j", "0")
    assert out.returncode == 2


def test_json_lines(tmp_path: Path, server: Any) -> None:
    refused = f"http://127.0.0.1:{free_port()}/x"
    out = cli(
        tmp_path, "download", server.url + "/bytes/10", refused, "-o", "a.bin", "--json", "-j", "1"
    )
    assert out.returncode == 7
    lines = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert [line["url"] for line in lines] == [server.url + "/bytes/10", refused]
    assert lines[0]["filePath"] == str(tmp_path / "a.bin") and lines[0]["dataLength"] == 10
    assert lines[0]["statusCode"] == 200 and lines[0]["errMsg"] == "downloadFile:ok"
    assert lines[1]["errno"] == 600001 and lines[1]["exitCode"] == 7
    assert lines[1]["errMsg"].startswith("downloadFile:fail could not connect")


def test_several_bodies_to_stdout(tmp_path: Path, server: Any) -> None:
    """``-o -`` for each URL: the bodies one after the other (``-j 1``: in the URLs' order)."""
    out = cli(
        tmp_path,
        "download",
        server.url + "/bytes/1000",
        server.url + "/bytes/70000",
        "-o",
        "-",
        "-o",
        "-",
        "-j",
        "1",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == pattern(1000) + pattern(70000)
    assert os.listdir(tmp_path) == []


def on_terminal(tmp_path: Path, *args: str) -> tuple[int, str, bytes]:
    """The CLI with stderr on a pty (so bars are drawn): its code, screen text and stdout."""
    return cli_on_terminal(tmp_path, *args, env={"TMPDIR": str(tmp_path)}, timeout=WAIT)


def test_bars_one_per_transfer_and_a_total(tmp_path: Path, server: Any) -> None:
    urls = [f"{server.url}/bytes/{n}?delay=0.02" for n in (1_500_000, 1_000_000, 700_000)]
    code, screen, out = on_terminal(tmp_path, "download", *urls, "-P", "bars")
    assert code == 0, screen
    assert re.search(r"total .* [0-3]/3 files", screen), screen[-2000:]
    assert "download 1500000" in screen and "download 700000" in screen
    assert "3/3 files" in screen
    assert "wxtransfer download" in screen  # the summary's title
    assert len(out.decode().split()) == 3
    # -o - with bars: the body alone on stdout, the bars on the terminal
    code, screen, out = on_terminal(tmp_path, "download", urls[2], "-o", "-")
    assert code == 0 and out == pattern(700_000)
    assert "683.6/683.6 KiB" in screen
