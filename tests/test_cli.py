"""The ``wxtransfer`` command line: in-process (click's CliRunner) and as subprocesses."""

from __future__ import annotations

import errno
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import wxtransfer
from tests.helpers import cli_on_terminal
from tests.servers import free_port
from tests.servers.app import pattern
from tests.servers.rawsock import RawServer, build_response, respond
from wxtransfer._files import move_into_place
from wxtransfer._server import DevServer
from wxtransfer.cli import cli
from wxtransfer.cli.names import content_disposition_filename, remote_file_name, safe_file_name
from wxtransfer.cli.options import parse_size

SUBPROCESS_TIMEOUT = 60


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder, nested so that escaping it would be visible."""
    folder = tmp_path / "outer" / "inner" / "work"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    return folder


def invoke(*args: str) -> Result:
    """Run the CLI in-process; stdout and stderr are kept apart."""
    result = CliRunner().invoke(cli, list(args), prog_name="wxtransfer")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def run(
    *args: str,
    cwd: Path,
    timeout: float = SUBPROCESS_TIMEOUT,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m wxtransfer ARGS`` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "wxtransfer", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def assert_nothing_escaped(tmp_path: Path, work: Path) -> None:
    """Only the working folder was written: nothing beside it or above it."""
    assert listing(tmp_path) == ["outer"]
    assert listing(tmp_path / "outer") == ["inner"]
    assert listing(tmp_path / "outer" / "inner") == ["work"]


def no_traceback(result: Result | subprocess.CompletedProcess[str]) -> None:
    text = result.output if isinstance(result, Result) else result.stdout + result.stderr
    assert "Traceback" not in text


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevServer]:
    with DevServer(tmp_path / "devroot") as srv:
        yield srv


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample file.bin"
    path.write_bytes(pattern(300_000))
    return path


def raw(body: bytes = b"hello", headers: dict[str, str] | None = None) -> RawServer:
    """A one-response-per-connection server answering every path the same way."""
    return RawServer(respond(build_response(200, body, headers or {}))).start()


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("0", 0),
        ("256MiB", 256 * 1024**2),
        ("256mib", 256 * 1024**2),
        ("10MB", 10 * 1000**2),
        ("10 MB", 10 * 1000**2),
        ("4k", 4096),
        ("4KiB", 4096),
        ("2M", 2 * 1024**2),
        ("1.5KiB", 1536),
        ("1GiB", 1024**3),
        ("1kB", 1000),
        ("100B", 100),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "10XB", "-5", "1.5", "MiB", "5iB", "1e6"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("/etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("..", None),
        (".", None),
        ("...", None),
        ("/", None),
        ("", None),
        (None, None),
        (".bashrc", "bashrc"),
        ("a\x00b.txt", "ab.txt"),
        ("\x00", None),
        ("evil\r\nSet-Cookie: x.txt", "evilSet-Cookie: x.txt"),
        ("\x1b[31mred.txt", "[31mred.txt"),
        ("gpj.\u202eexe", "gpj.exe"),  # bidi override dropped
        ("../\x00../x", "x"),
        ("foo/\x00/..", None),
        ("  spaced.txt  ", "spaced.txt"),
        ("照片.jpg", "照片.jpg"),
    ],
)
def test_safe_file_name(raw: str | None, safe: str | None) -> None:
    assert safe_file_name(raw) == safe


def test_safe_file_name_truncates_keeping_the_extension() -> None:
    name = safe_file_name("é" * 300 + ".tar")
    assert name is not None
    assert len(name.encode("utf-8")) <= 255
    assert name.endswith(".tar")


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ('attachment; filename="a.txt"', "a.txt"),
        ("attachment; filename=a.txt", "a.txt"),
        ('attachment; filename="a \\"q\\".txt"', 'a "q".txt'),
        ("attachment; filename*=UTF-8''%E7%85%A7%E7%89%87.jpg", "照片.jpg"),
        ("attachment; filename=\"fallback.jpg\"; filename*=UTF-8''%E7%85%A7.jpg", "照.jpg"),
        ('attachment; FILENAME="UP.txt"', "UP.txt"),
        ('attachment; filename="\xe7\x85\xa7.jpg"', "照.jpg"),  # raw UTF-8 read as latin-1
        ("attachment", None),
        ("inline; name=x", None),
    ],
)
def test_content_disposition_filename(value: str, name: str | None) -> None:
    assert content_disposition_filename(value) == name


def test_remote_file_name_prefers_content_disposition() -> None:
    cd = {"content-disposition": 'attachment; filename="../x.txt"'}
    assert remote_file_name("http://h/a/b.bin", cd) == "x.txt"
    assert remote_file_name("http://h/a/b.bin?q=1#f", {}) == "b.bin"
    assert remote_file_name("http://h/a/%2E%2E", {}) == "download"
    assert remote_file_name("http://h/", {}) == "download"
    assert remote_file_name("http://h/x.bin", {"Content-Disposition": "attachment"}) == "x.bin"


def test_move_into_place_never_overwrites(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.write_bytes(b"new")
    dest.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        move_into_place(str(src), str(dest), replace=False)
    assert dest.read_bytes() == b"old" and src.exists()
    move_into_place(str(src), str(dest), replace=True)
    assert dest.read_bytes() == b"new" and not src.exists()


@pytest.mark.parametrize("force", [False, True])
def test_move_into_place_across_file_systems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, force: bool
) -> None:
    real_link, real_replace = os.link, os.replace
    src, dest = tmp_path / "a" / "src", tmp_path / "b" / "dest"
    src.parent.mkdir()
    dest.parent.mkdir()
    src.write_bytes(b"payload")

    def fake_link(a: Any, b: Any, **kw: Any) -> None:
        if Path(a).parent != Path(b).parent:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_link(a, b)

    def fake_replace(a: Any, b: Any) -> None:
        if Path(a).parent != Path(b).parent:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(a, b)

    monkeypatch.setattr(os, "link", fake_link)
    monkeypatch.setattr(os, "replace", fake_replace)
    move_into_place(str(src), str(dest), replace=force)
    assert dest.read_bytes() == b"payload"
    assert not src.exists()
    assert listing(dest.parent) == ["dest"]  # no .wxpart left over


# --------------------------------------------------------------------------- basics


def test_help_and_version() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("upload", "download", "serve", "demo"):
        assert command in result.stdout
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"wxtransfer, version {wxtransfer.__version__}\n"


def test_python_dash_m(tmp_path: Path) -> None:
    proc = run("--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "wxtransfer" in proc.stdout
    proc = run("download", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Missing argument" in proc.stderr
    no_traceback(proc)


# --------------------------------------------------------------------------- upload


def test_upload_prints_the_response(server: Any, sample: Path, work: Path) -> None:
    result = invoke(
        "upload",
        server.url + "/upload",
        str(sample),
        "--name",
        "photo",
        "-F",
        "user=test",
        "-F",
        "eq=a=b",
        "-H",
        "X-Token: abc:def",
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["fields"] == {"user": "test", "eq": "a=b"}
    assert body["files"][0]["field"] == "photo"
    assert body["files"][0]["filename"] == "sample file.bin"
    assert body["files"][0]["size"] == 300_000
    assert body["headers"]["x-token"] == "abc:def"
    assert result.stderr == ""  # no progress when stderr is not a terminal


def test_upload_json(server: Any, sample: Path, work: Path) -> None:
    result = invoke("upload", server.url + "/upload", str(sample), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["statusCode"] == 200
    assert out["errMsg"] == "uploadFile:ok"
    assert isinstance(out["header"], dict)
    assert json.loads(out["data"])["files"][0]["size"] == 300_000
    assert "sendBytesCount" in out["profile"]


def test_upload_http_error_without_and_with_fail(server: Any, sample: Path, work: Path) -> None:
    result = invoke("upload", server.url + "/status/503", str(sample))
    assert result.exit_code == 0
    assert result.stdout.strip() == "status 503"
    result = invoke("upload", server.url + "/status/503", str(sample), "--fail")
    assert result.exit_code == 22
    assert result.stdout == ""
    assert "503" in result.stderr
    result = invoke("upload", server.url + "/status/404", str(sample), "-f", "--json")
    assert result.exit_code == 22
    err = json.loads(result.stderr)
    assert err["statusCode"] == 404 and "404" in err["errMsg"] and "errno" in err


def test_upload_missing_file_exits_1(server: Any, work: Path) -> None:
    result = invoke("upload", server.url + "/upload", "no-such-file.bin")
    assert result.exit_code == 1
    assert "uploadFile:fail" in result.stderr and "no-such-file.bin" in result.stderr
    no_traceback(result)
    result = invoke("upload", server.url + "/upload", "no-such-file.bin", "--json")
    assert result.exit_code == 1
    err = json.loads(result.stderr)
    assert err["errMsg"].startswith("uploadFile:fail") and err["errno"] == 600005
    assert result.stdout == ""


def test_upload_timeout_exits_28(server: Any, sample: Path, work: Path) -> None:
    result = invoke(
        "upload", server.url + "/slow-upload?rate=20000", str(sample), "--timeout", "300"
    )
    assert result.exit_code == 28, result.output
    assert "uploadFile:fail timeout" in result.stderr


def test_upload_to_dev_server_and_download_back(dev: DevServer, sample: Path, work: Path) -> None:
    result = invoke("upload", dev.url + "/upload", str(sample), "-F", "k=v", "--json")
    assert result.exit_code == 0, result.output
    reply = json.loads(json.loads(result.stdout)["data"])
    assert reply["form"] == {"k": "v"}
    stored = reply["files"][0]
    assert stored["size"] == 300_000
    result = invoke("download", dev.url + stored["url"], "-O", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    # named after the dev server's Content-Disposition: the original file name
    assert out["filePath"] == str(work / "sample file.bin")
    assert (work / "sample file.bin").read_bytes() == pattern(300_000)


# --------------------------------------------------------------------------- download


def test_download_default_is_remote_name(server: Any, work: Path) -> None:
    result = invoke("download", server.url + "/bytes/100000")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(work / "100000")
    assert (work / "100000").read_bytes() == pattern(100_000)
    assert listing(work) == ["100000"]


def test_download_json(server: Any, work: Path) -> None:
    result = invoke("download", server.url + "/file/report.pdf", "-O", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["filePath"] == str(work / "report.pdf")
    assert "tempFilePath" not in out
    assert out["statusCode"] == 200
    assert out["dataLength"] == 1000
    assert out["errMsg"] == "downloadFile:ok"
    assert out["header"]["Content-Disposition"].startswith("attachment")
    assert "fetchStart" in out["profile"]
    assert (work / "report.pdf").read_bytes() == pattern(1000)


def test_download_output_path(server: Any, work: Path) -> None:
    result = invoke("download", server.url + "/bytes/5000", "-o", "sub.bin", "-H", "X-A: 1")
    assert result.exit_code == 0, result.output
    assert (work / "sub.bin").read_bytes() == pattern(5000)
    (work / "dir").mkdir()
    result = invoke("download", server.url + "/file/in-dir.txt", "-o", "dir")
    assert result.exit_code == 0, result.output
    assert (work / "dir" / "in-dir.txt").read_bytes() == pattern(1000)
    result = invoke("download", server.url + "/bytes/5000", "-o", "missing/x.bin")
    assert result.exit_code == 23  # curl's write error
    assert "no such folder" in result.stderr
    assert listing(work) == ["dir", "sub.bin"]


def test_download_never_overwrites_without_force(server: Any, work: Path) -> None:
    (work / "keep.bin").write_bytes(b"precious")
    result = invoke("download", server.url + "/bytes/5000", "-o", "keep.bin")
    assert result.exit_code == 1
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert (work / "keep.bin").read_bytes() == b"precious"

    (work / "report.pdf").write_bytes(b"mine")
    result = invoke("download", server.url + "/file/report.pdf", "-O", "--json")
    assert result.exit_code == 1
    err = json.loads(result.stderr)
    assert "already exists" in err["errMsg"] and err["errno"] == 1300000 + errno.EEXIST
    assert (work / "report.pdf").read_bytes() == b"mine"

    # a symlink counts as existing: never followed, never replaced
    (work / "5000").symlink_to(work / "keep.bin")
    result = invoke("download", server.url + "/bytes/5000")
    assert result.exit_code == 1
    assert (work / "keep.bin").read_bytes() == b"precious"
    assert listing(work) == ["5000", "keep.bin", "report.pdf"]

    for args in (["-o", "keep.bin"], ["-O"]):
        url = server.url + ("/bytes/5000" if args[0] == "-o" else "/file/report.pdf")
        result = invoke("download", url, *args, "--force")
        assert result.exit_code == 0, result.output
    assert (work / "keep.bin").read_bytes() == pattern(5000)
    assert (work / "report.pdf").read_bytes() == pattern(1000)
    result = invoke("download", server.url + "/bytes/5000", "--force")
    assert result.exit_code == 0
    assert not (work / "5000").is_symlink()
    assert (work / "keep.bin").read_bytes() == pattern(5000)


def test_download_http_error_without_and_with_fail(server: Any, work: Path) -> None:
    result = invoke("download", server.url + "/status/404")
    assert result.exit_code == 0  # a complete response is a success, as on the platform
    assert (work / "404").read_bytes() == b"status 404"
    result = invoke("download", server.url + "/status/500", "--fail")
    assert result.exit_code == 22
    assert "500" in result.stderr
    result = invoke("download", server.url + "/status/410", "-o", "x.bin", "--fail", "--json")
    assert result.exit_code == 22
    assert json.loads(result.stderr)["statusCode"] == 410
    assert listing(work) == ["404"]  # the failed downloads left nothing


@pytest.mark.parametrize("path", ["/hang", "/hang-before-headers", "/slow/100000?delay=0.2"])
def test_download_timeout_exits_28(server: Any, work: Path, path: str) -> None:
    started = time.monotonic()
    result = invoke("download", server.url + path, "--timeout", "400")
    assert result.exit_code == 28, result.output
    assert time.monotonic() - started < 10
    assert "downloadFile:fail timeout" in result.stderr
    assert listing(work) == []
    result = invoke("download", server.url + path, "--timeout", "300", "--json")
    assert result.exit_code == 28
    assert json.loads(result.stderr) == {"errMsg": "downloadFile:fail timeout", "errno": 5}


def test_download_network_failures_exit_with_curls_code(server: Any, work: Path) -> None:
    port = free_port()
    result = invoke("download", f"http://127.0.0.1:{port}/x")
    assert result.exit_code == 7  # curl's "could not connect"
    assert result.stderr.startswith("Error: downloadFile:fail")
    result = invoke("download", server.url + "/truncated/100000", "--json")
    assert result.exit_code == 18  # curl's "partial file"
    assert json.loads(result.stderr)["errno"] in (600001, 600003)
    assert listing(work) == []
    no_traceback(result)


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["download", "ftp://example.com/x"], "invalid URL"),
        (["download", "not a url"], "downloadFile:fail"),
        (["download", "{url}/bytes/1", "-H", "Referer: https://x"], "Referer"),
        (["download", "{url}/bytes/1", "-H", "no colon"], "Name: value"),
        (["download", "{url}/bytes/1", "-o", "a", "-O"], "not both"),
        (["download", "{url}/bytes/1", "--timeout", "-1"], "--timeout"),
        (["download", "{url}/bytes/1", "--timeout", "soon"], "--timeout"),
        (["download", "{url}/bytes/1", "--bogus"], "--bogus"),
        (["download"], "Missing argument"),
        (["upload", "{url}/upload"], "nothing to upload: give FILE, or -F NAME=@FILE"),
        (["upload", "{url}/upload", "{file}", "-F", "novalue"], "key=value"),
        (["upload", "{url}/upload", "{file}", "--name", ""], "uploadFile:fail"),
        (["upload", "gopher://h/upload", "{file}"], "invalid URL"),
        (["demo", "--size", "lots"], "not a size"),
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--max-size", "big"], "not a size"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_usage_errors_exit_2(
    server: Any, sample: Path, work: Path, args: list[str], message: str
) -> None:
    argv = [a.format(url=server.url, file=sample) for a in args]
    result = invoke(*argv)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Error" in result.stderr
    no_traceback(result)
    assert listing(work) == []


def test_invalid_argument_json(work: Path) -> None:
    result = invoke("download", "ftp://example.com/x", "--json")
    assert result.exit_code == 2
    err = json.loads(result.stderr)
    assert err["errMsg"].startswith("downloadFile:fail invalid URL")
    assert err["errno"] == 600009


# --------------------------------------------------------------------------- -O safety


HOSTILE_DISPOSITIONS = [
    ('attachment; filename="../../etc/passwd"', "passwd"),
    ('attachment; filename="/etc/passwd"', "passwd"),
    ('attachment; filename="/tmp/../../x.sh"', "x.sh"),
    ('attachment; filename="..\\\\..\\\\boot.ini"', "boot.ini"),
    ("attachment; filename*=UTF-8''..%2F..%2Fevil.txt", "evil.txt"),
    ("attachment; filename*=UTF-8''%2Fetc%2Fshadow", "shadow"),
    ("attachment; filename*=UTF-8''%00nul%0D%0A.txt", "nul.txt"),
    ('attachment; filename="ctl\x01\x1b[2J\x7f.txt"', "ctl[2J.txt"),
    ('attachment; filename=".."', "served.bin"),
    ('attachment; filename="."', "served.bin"),
    ('attachment; filename="../"', "served.bin"),
    ('attachment; filename=".hidden"', "hidden"),
]


@pytest.mark.parametrize(("disposition", "expected"), HOSTILE_DISPOSITIONS)
def test_remote_name_from_hostile_content_disposition(
    tmp_path: Path, work: Path, disposition: str, expected: str
) -> None:
    srv = raw(b"payload", {"Content-Disposition": disposition})
    try:
        result = invoke("download", srv.url + "/files/served.bin", "-O")
    finally:
        srv.stop()
    assert result.exit_code == 0, result.output
    assert listing(work) == [expected]
    assert (work / expected).read_bytes() == b"payload"
    assert result.stdout.strip() == str(work / expected)
    assert_nothing_escaped(tmp_path, work)


def test_remote_name_with_a_raw_nul_in_content_disposition(tmp_path: Path, work: Path) -> None:
    srv = raw(b"payload", {"Content-Disposition": 'attachment; filename="a\x00/../../b.txt"'})
    try:
        result = invoke("download", srv.url + "/x.bin", "-O")
    finally:
        srv.stop()
    # libcurl may refuse a header with a NUL byte (a failure, nothing saved) or pass it on
    # (the name is cleaned); either way nothing lands outside the current folder.
    if result.exit_code == 0:
        assert listing(work) == ["b.txt"]
    else:
        assert result.exit_code == 8, result.output  # curl's "weird server reply"
        assert listing(work) == []
    assert_nothing_escaped(tmp_path, work)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/..%2F..%2Fetc%2Fpasswd", "passwd"),
        ("/a/%2Fetc%2Fpasswd", "passwd"),
        ("/a/..%5C..%5Cboot.ini", "boot.ini"),
        ("/a/%00evil%0D%0A.txt", "evil.txt"),
        ("/a/%1B%5B2Jx.txt", "[2Jx.txt"),
        ("/a/%2E%2E", "download"),
        ("/a/%2E", "download"),
        ("/", "download"),
        ("/dir/", "download"),
        ("/a/report.pdf?name=../../x", "report.pdf"),
        ("/a/%E7%85%A7%E7%89%87.jpg", "照片.jpg"),
    ],
)
def test_remote_name_from_hostile_url_path(
    tmp_path: Path, work: Path, path: str, expected: str
) -> None:
    srv = raw(b"payload")
    try:
        result = invoke("download", srv.url + path)
    finally:
        srv.stop()
    assert result.exit_code == 0, result.output
    assert listing(work) == [expected]
    assert_nothing_escaped(tmp_path, work)


def test_remote_name_from_test_server_file_route(server: Any, tmp_path: Path, work: Path) -> None:
    # /file/{name} echoes the (decoded) name in Content-Disposition
    for name, expected in [
        ("..%2F..%2Fescape.txt", "escape.txt"),
        ("%2Fetc%2Fhosts", "hosts"),
        ("%E6%96%87%E4%BB%B6.txt", "文件.txt"),
    ]:
        result = invoke("download", f"{server.url}/file/{name}", "-O")
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == str(work / expected)
    assert listing(work) == ["escape.txt", "hosts", "文件.txt"]
    assert_nothing_escaped(tmp_path, work)


# --------------------------------------------------------------------------- Ctrl-C


def _wait_for(master: int, pattern_: str, deadline: float) -> str:
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        buf += chunk
        if re.search(pattern_, buf.decode("utf-8", "replace")):
            return buf.decode("utf-8", "replace")
    raise AssertionError(f"no {pattern_!r} in the terminal output: {buf[-2000:]!r}")


@pytest.mark.timeout(60)
def test_sigint_mid_download_aborts_and_leaves_nothing(server: Any, tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    tmpdir = tmp_path / "tmpdir"
    cwd.mkdir()
    tmpdir.mkdir()
    master, slave = pty.openpty()
    env = {**os.environ, "TMPDIR": str(tmpdir), "TERM": "xterm", "COLUMNS": "120"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wxtransfer", "download", server.url + "/slow/1000000?delay=0.02"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    try:
        # the live bar shows the total once the headers are in and bytes are moving
        _wait_for(master, r"[1-9][0-9.]*/976\.6 KiB", time.monotonic() + 30)
        assert listing(tmpdir) != []  # the partial file exists, in the runtime's temp folder
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=15)
        out = proc.stdout.read().decode() if proc.stdout else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        os.close(master)
    assert code == 130
    assert out == ""
    assert listing(cwd) == []
    assert listing(tmpdir) == []


@pytest.mark.timeout(60)
def test_sigint_mid_upload_json(server: Any, tmp_path: Path, sample: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wxtransfer",
            "upload",
            server.url + "/slow-upload?rate=20000",
            str(sample),
            "--json",
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert out == ""
    assert json.loads(err) == {"errMsg": "uploadFile:fail abort", "errno": 600003}


# --------------------------------------------------------------------------- progress


@pytest.mark.timeout(60)
def test_progress_bar_on_a_terminal_and_quiet(server: Any, tmp_path: Path) -> None:
    def on_tty(*args: str) -> tuple[int, str]:
        code, text, _ = cli_on_terminal(tmp_path, *args, env={"COLUMNS": "120"}, timeout=30)
        return code, text

    code, text = on_tty("download", server.url + "/bytes/3000000?delay=0.01", "-o", "a.bin")
    assert code == 0
    assert "2.9/2.9 MiB" in text and "100%" in text
    code, text = on_tty("download", server.url + "/chunked/300000?delay=0.01", "-o", "b.bin")
    assert code == 0  # unknown total: a pulsing bar, then the final size
    assert "/?" in text
    code, text = on_tty("download", server.url + "/bytes/300000", "-o", "c.bin", "--quiet")
    assert code == 0
    assert "%" not in text


# --------------------------------------------------------------------------- serve, demo


@pytest.mark.timeout(90)
def test_serve_round_trip(tmp_path: Path, sample: Path) -> None:
    port = free_port()
    root = tmp_path / "served"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wxtransfer", "serve", "--port", str(port), "--root", str(root)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        up = run("upload", f"http://127.0.0.1:{port}/upload", str(sample), cwd=tmp_path)
        assert up.returncode == 0, up.stderr
        stored = json.loads(up.stdout)["files"][0]
        assert (root / stored["name"]).read_bytes() == pattern(300_000)
        (tmp_path / "dl").mkdir()
        down = run("download", f"http://127.0.0.1:{port}{stored['url']}", cwd=tmp_path / "dl")
        assert down.returncode == 0, down.stderr
        assert (tmp_path / "dl" / "sample file.bin").read_bytes() == pattern(300_000)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert f"http://127.0.0.1:{port}" in out


def test_serve_port_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = run("serve", "--port", str(port), "--root", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "cannot serve" in proc.stderr
    no_traceback(proc)


@pytest.mark.timeout(90)
def test_demo_round_trip(tmp_path: Path) -> None:
    proc = run("demo", "--size", "2MiB", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hashes = re.findall(r"sha256 (sent|server|received|resumed):\s+([0-9a-f]{64})", proc.stdout)
    assert [kind for kind, _ in hashes] == ["sent", "server", "received", "resumed"]
    assert len({h for _, h in hashes}) == 1
    assert "OK" in proc.stdout
    assert "2.0 MiB" in proc.stdout
    # no terminal: one plain line per 10 %, both ways
    assert "upload: 100%" in proc.stderr and "download: 100%" in proc.stderr
    assert "download:  50%" in proc.stderr
    # the resumable leg: paused at about half, continued from where the server stood
    assert "resumable upload, paused at ~50 %:  50%" in proc.stderr
    assert "resumable upload, continued: 100%" in proc.stderr
    assert "resumable (paused, continued)" in proc.stdout
    assert listing(tmp_path) == []


def test_demo_in_process(work: Path) -> None:
    result = invoke("demo", "--size", "1000")
    assert result.exit_code == 0, result.output
    assert "OK" in result.stdout
    assert listing(work) == []
