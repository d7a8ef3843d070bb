"""The embedded dev server (``wxtransfer._server``) over real sockets.

Clients are curl subprocesses, :mod:`http.client` for hand-made bodies, and headless
Chromium through selenium for the HTML page. Nothing here uses the wxtransfer client core.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import wxtransfer._server
from tests.browser import start_chromium
from wxtransfer._server import DevServer, content_disposition, sanitise_filename

CURL = shutil.which("curl")
SRC_DIR = str(Path(wxtransfer._server.__file__).resolve().parents[1])

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)"),
]


# --------------------------------------------------------------------------- helpers


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(root: Path) -> dict[str, int | None]:
    """Every path under ``root`` with its size (None for directories)."""
    return {
        str(p.relative_to(root)): (None if p.is_dir() else p.stat().st_size)
        for p in sorted(root.rglob("*"))
    }


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
    """Run curl quietly (errors shown), bounded in time; never raises on HTTP errors."""
    assert CURL is not None
    cmd = [CURL, "-sS", "--noproxy", "*", "--max-time", str(timeout), *args]
    return subprocess.run(cmd, capture_output=True, timeout=timeout + 10, check=False)


def curl_status(*args: str) -> tuple[int, bytes]:
    """(HTTP status, body) of one curl transfer."""
    proc = curl("-o", "-", "-w", "\n%{http_code}", *args)
    assert proc.returncode == 0, proc.stderr.decode()
    body, _, code = proc.stdout.rpartition(b"\n")
    return int(code), body


def curl_headers(*args: str) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers of the final response, body)."""
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "headers"
        proc = curl("-D", str(dump), "-o", "-", *args)
        assert proc.returncode == 0, proc.stderr.decode()
        raw = dump.read_bytes().decode("latin-1")
    # Interim responses (100 Continue) come first; keep the final header block.
    block = [b for b in raw.split("\r\n\r\n") if b.strip()][-1]
    lines = block.split("\r\n")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, proc.stdout


def raw_request(
    url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly the given path, headers and body (stdlib http.client)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if body or method == "POST":
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def upload(url: str, *form: str, headers: tuple[str, ...] = ()) -> tuple[int, Any]:
    """curl -F each of ``form`` to /upload; (status, parsed JSON reply)."""
    args: list[str] = []
    for item in form:
        args += ["-F", item]
    for header in headers:
        args += ["-H", header]
    status, body = curl_status(*args, url + "/upload")
    return status, json.loads(body)


def list_files(url: str, *headers: str) -> list[dict[str, Any]]:
    args = ["-H", "Accept: application/json"]
    for header in headers:
        args += ["-H", header]
    status, body = curl_status(*args, url + "/")
    assert status == 200
    files: list[dict[str, Any]] = json.loads(body)["files"]
    return files


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def dev(root: Path) -> Iterator[DevServer]:
    with DevServer(root) as srv:
        yield srv


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Local files to upload, including a non-ASCII name and some binary."""
    src = tmp_path / "src"
    src.mkdir()
    out = {
        "hello": src / "hello.txt",
        "binary": src / "blob.bin",
        "unicode": src / "报告 ünïcode.txt",
    }
    out["hello"].write_bytes(b"hello, world\n")
    out["binary"].write_bytes(os.urandom(300_000))
    out["unicode"].write_bytes("内容 ✓\n".encode() * 100)
    return out


def upload_one(url: str, path: Path, *headers: str) -> dict[str, Any]:
    status, reply = upload(url, f"file=@{path}", headers=headers)
    assert status == 200, reply
    entry: dict[str, Any] = reply["files"][0]
    return entry


# --------------------------------------------------------------------------- uploads


def test_upload_files_and_fields(dev: DevServer, root: Path, files: dict[str, Path]) -> None:
    status, reply = upload(
        dev.url,
        f"first=@{files['hello']}",
        f"second=@{files['binary']};type=application/octet-stream",
        f"third=@{files['unicode']}",
        "title=Quarterly report",
        "note=héllo wörld ✓",
        "tag=a",
        "tag=b",
    )
    assert status == 200, reply
    assert reply["form"] == {
        "title": "Quarterly report",
        "note": "héllo wörld ✓",
        "tag": ["a", "b"],
    }
    got = reply["files"]
    assert [f["field"] for f in got] == ["first", "second", "third"]
    for entry, key in zip(got, ["hello", "binary", "unicode"], strict=True):
        data = files[key].read_bytes()
        assert entry["filename"] == files[key].name
        assert entry["size"] == len(data)
        assert entry["sha256"] == sha256(data)
        stored = root / entry["name"]
        assert stored.parent == root and stored.read_bytes() == data
        assert stored.name.endswith(files[key].name)
        assert entry["url"] == "/files/" + quote(entry["name"], safe="")
        # ... and the URL serves the very same bytes.
        code, body = curl_status(dev.url + entry["url"])
        assert (code, sha256(body)) == (200, entry["sha256"])
    assert got[2]["url"].isascii() and "%E6%8A%A5%E5%91%8A" in got[2]["url"]
    # Temporary files are gone once the request is complete.
    assert list((root / ".wxtransfer" / "tmp").iterdir()) == []
    listed = {f["name"]: f for f in list_files(dev.url)}
    assert set(listed) == {f["name"] for f in got}
    for entry in got:
        assert listed[entry["name"]]["filename"] == entry["filename"]
        assert listed[entry["name"]]["size"] == entry["size"]
        assert listed[entry["name"]]["url"] == entry["url"]


def test_same_name_never_overwrites(dev: DevServer, root: Path, files: dict[str, Path]) -> None:
    first = upload_one(dev.url, files["hello"])
    files["hello"].write_bytes(b"second version\n")
    second = upload_one(dev.url, files["hello"])
    assert first["name"] != second["name"]
    assert (root / first["name"]).read_bytes() == b"hello, world\n"
    assert (root / second["name"]).read_bytes() == b"second version\n"


def test_hostile_filenames_are_sanitised(
    dev: DevServer, root: Path, files: dict[str, Path]
) -> None:
    before = {p.name for p in root.parent.iterdir()}
    status, reply = upload(
        dev.url,
        f"a=@{files['hello']};filename=../../escape.txt",
        f"b=@{files['hello']};filename=..\\..\\win.txt",
        f"c=@{files['hello']};filename=.hidden",
        f"d=@{files['hello']};filename=<b>bold</b>.html",
    )
    assert status == 200, reply
    assert {p.name for p in root.parent.iterdir()} == before
    names = [f["name"] for f in reply["files"]]
    for name in names:
        assert (root / name).is_file() and "/" not in name and "\\" not in name
        assert not name.startswith(".")
    # The original name is kept as sent (curl keeps only the last path component).
    assert reply["files"][3]["filename"] == "<b>bold</b>.html"
    page = curl_status(dev.url + "/")[1].decode()
    assert "&lt;b&gt;bold&lt;/b&gt;.html" in page and "<b>bold</b>" not in page


def test_empty_file_input_and_empty_file(dev: DevServer, root: Path) -> None:
    body = (
        b'--zzz\r\nContent-Disposition: form-data; name="skipped"; filename=""\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\r\n"
        b'--zzz\r\nContent-Disposition: form-data; name="empty"; filename="empty.txt"\r\n\r\n\r\n'
        b'--zzz\r\nContent-Disposition: form-data; name="k"\r\n\r\nv\r\n'
        b"--zzz--\r\n"
    )
    status, _, reply = raw_request(
        dev.url, "POST", "/upload", body, {"Content-Type": "multipart/form-data; boundary=zzz"}
    )
    assert status == 200, reply
    data = json.loads(reply)
    assert data["form"] == {"k": "v"}
    assert [(f["field"], f["size"], f["sha256"]) for f in data["files"]] == [
        ("empty", 0, sha256(b""))
    ]
    assert (root / data["files"][0]["name"]).read_bytes() == b""


def test_sanitise_filename() -> None:
    assert sanitise_filename("report.pdf") == "report.pdf"
    assert sanitise_filename("../../etc/passwd") == "passwd"
    assert sanitise_filename("C:\\Users\\me\\a.txt") == "a.txt"
    assert sanitise_filename("..") == "file"
    assert sanitise_filename("") == "file"
    assert sanitise_filename(".bashrc") == "bashrc"
    assert sanitise_filename("a\x00b\r\nc\u202etxt.exe") == "a_b__c_txt.exe"
    assert sanitise_filename("报告.txt") == "报告.txt"
    long = sanitise_filename("é" * 300 + ".tar.gz")
    assert long.endswith(".gz") and len(long.encode()) <= 180


def test_content_disposition() -> None:
    assert content_disposition("a.txt") == 'attachment; filename="a.txt"'
    value = content_disposition("报告 é.txt")
    assert value == (
        "attachment; filename=\"__ e.txt\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%20%C3%A9.txt"
    )
    assert "\r" not in content_disposition("x\r\nSet-Cookie: y") and value.isascii()


# --------------------------------------------------------------------------- downloads


def test_range_requests(dev: DevServer, tmp_path: Path) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    src = tmp_path / "ranges.bin"
    src.write_bytes(data)
    url = dev.url + upload_one(dev.url, src)["url"]

    status, headers, body = curl_headers("-r", "100-199", url)
    assert status == 206 and body == data[100:200]
    assert headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert headers["accept-ranges"] == "bytes"

    status, _, body = curl_headers("-r", "10000-", url)
    assert status == 206 and body == data[10000:]

    status, _, body = curl_headers("-r", "-16", url)
    assert status == 206 and body == data[-16:]

    status, headers, body = curl_headers("-r", "20000-30000", url)
    assert status == 416
    assert headers["content-range"] == f"bytes */{len(data)}"

    # Resume a partial download with curl -C.
    partial = tmp_path / "partial.bin"
    partial.write_bytes(data[:4000])
    proc = curl("-C", "-", "-o", str(partial), url)
    assert proc.returncode == 0, proc.stderr
    assert partial.read_bytes() == data


def test_download_headers(dev: DevServer, files: dict[str, Path]) -> None:
    entry = upload_one(dev.url, files["unicode"])
    status, headers, body = curl_headers(dev.url + entry["url"])
    assert status == 200 and body == files["unicode"].read_bytes()
    disposition = headers["content-disposition"]
    assert disposition.startswith("attachment; filename=")
    assert "filename*=UTF-8''" + quote(files["unicode"].name, safe="") in disposition
    assert headers["content-type"].startswith("text/plain")
    assert headers["etag"] and headers["last-modified"]
    assert int(headers["content-length"]) == len(body)

    # HEAD: the same headers, no body.
    status, head_headers, body = raw_request(dev.url, "HEAD", entry["url"])
    assert status == 200 and body == b""
    assert head_headers["etag"] == headers["etag"]
    assert head_headers["content-length"] == headers["content-length"]

    # curl -J reads only the ASCII fallback ``filename=`` (browsers use ``filename*``).
    out = files["unicode"].parent.parent / "dl"
    out.mkdir()
    proc = curl("-O", "-J", "--output-dir", str(out), dev.url + entry["url"])
    assert proc.returncode == 0, proc.stderr
    assert (out / "__ unicode.txt").read_bytes() == files["unicode"].read_bytes()


def test_conditional_requests(dev: DevServer, tmp_path: Path, files: dict[str, Path]) -> None:
    url = dev.url + upload_one(dev.url, files["binary"])["url"]
    data = files["binary"].read_bytes()

    # curl -R keeps the server's Last-Modified; curl -z then revalidates with it.
    local = tmp_path / "copy.bin"
    proc = curl("-R", "-o", str(local), url)
    assert proc.returncode == 0 and local.read_bytes() == data
    status, body = curl_status("-z", str(local), url)
    assert (status, body) == (304, b"")
    status, body = curl_status("-z", "1 Jan 2000 00:00:00 GMT", url)
    assert status == 200 and body == data

    # ETag revalidation.
    _, headers, _ = curl_headers("-I", url)
    etag = headers["etag"]
    status, body = curl_status("-H", f"If-None-Match: {etag}", url)
    assert (status, body) == (304, b"")
    status, body = curl_status("-H", 'If-None-Match: "something-else"', url)
    assert status == 200 and body == data
    etag_file = tmp_path / "etag.txt"
    assert curl("--etag-save", str(etag_file), "-o", os.devnull, url).returncode == 0
    status, body = curl_status("--etag-compare", str(etag_file), url)
    assert (status, body) == (304, b"")


def test_missing_file_is_404(dev: DevServer) -> None:
    status, body = curl_status(dev.url + "/files/nope.txt")
    assert status == 404 and json.loads(body)["error"]


# --------------------------------------------------------------------------- listing


def test_listing_json_and_html(dev: DevServer, files: dict[str, Path]) -> None:
    assert list_files(dev.url) == []
    empty = curl_status(dev.url + "/")[1].decode()
    assert "No files yet" in empty
    first = upload_one(dev.url, files["hello"])
    second = upload_one(dev.url, files["unicode"])
    listed = list_files(dev.url)
    assert {f["name"] for f in listed} == {first["name"], second["name"]}
    for f in listed:
        assert set(f) == {"name", "filename", "size", "mtime", "url", "sha256"}
        assert isinstance(f["mtime"], float) and abs(f["mtime"] - time.time()) < 60

    status, headers, page = curl_headers("-H", "Accept: text/html", dev.url + "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    text = page.decode()
    assert text.startswith("<!doctype html>")
    for entry in (first, second):
        assert f'href="{entry["url"]}"' in text and entry["filename"] in text
    # A browser's Accept header prefers HTML.
    status, browser = curl_status(
        "-H", "Accept: text/html,application/xhtml+xml,application/json;q=0.9", dev.url + "/"
    )
    assert status == 200 and browser.startswith(b"<!doctype html>")


# --------------------------------------------------------------------------- bad input


def test_body_over_max_size(root: Path, tmp_path: Path, files: dict[str, Path]) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2_000_000))
    with DevServer(root, max_size=100_000) as dev:
        before = snapshot(root)
        attempts = {
            # Content-Length over the limit, body sent straight away.
            "content-length": ["-H", "Expect:", "-F", f"file=@{big}"],
            # curl waits for 100 Continue: the server refuses without reading the body.
            "expect": ["-H", "Expect: 100-continue", "-F", f"file=@{big}"],
            # No Content-Length: counted while streaming, the partial file is deleted.
            "chunked": ["-H", "Transfer-Encoding: chunked", "-F", f"file=@{big}"],
            # A small file first, then the big one: the small one is not kept either.
            "second-part": [
                "-H",
                "Transfer-Encoding: chunked",
                "-F",
                f"a=@{files['hello']}",
                "-F",
                f"b=@{big}",
            ],
            # A huge plain field.
            "field": ["-H", "Transfer-Encoding: chunked", "-F", f"text=<{big}"],
        }
        for label, args in attempts.items():
            status, body = curl_status(*args, dev.url + "/upload")
            assert status == 413, (label, body)
            assert "larger than" in json.loads(body)["error"]
            assert snapshot(root) == before, label
        # Under the limit still works.
        status, reply = upload(dev.url, f"file=@{files['hello']}")
        assert status == 200, reply


@pytest.mark.parametrize(
    ("label", "content_type", "body", "status"),
    [
        ("missing boundary", "multipart/form-data", b"--x\r\n\r\nabc\r\n--x--\r\n", 400),
        ("empty boundary", "multipart/form-data; boundary=", b"--\r\n\r\n", 400),
        ("no boundary line", "multipart/form-data; boundary=zzz", b"just some bytes", 400),
        (
            "truncated part",
            "multipart/form-data; boundary=zzz",
            b'--zzz\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n'
            + b"x" * 100_000,
            400,
        ),
        (
            "good part then truncated part",
            "multipart/form-data; boundary=zzz",
            b'--zzz\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n'
            b"complete\r\n"
            b'--zzz\r\nContent-Disposition: form-data; name="g"; filename="b.bin"\r\n\r\n'
            b"never finished",
            400,
        ),
        ("not multipart", "application/json", b'{"a": 1}', 415),
    ],
)
def test_malformed_multipart(
    dev: DevServer, root: Path, label: str, content_type: str, body: bytes, status: int
) -> None:
    before = snapshot(root)
    got, headers, reply = raw_request(
        dev.url, "POST", "/upload", body, {"Content-Type": content_type}
    )
    assert got == status, (label, reply)
    assert headers["content-type"].startswith("application/json")
    assert json.loads(reply)["error"]
    assert snapshot(root) == before


def test_missing_boundary_with_curl(dev: DevServer, root: Path) -> None:
    before = snapshot(root)
    status, body = curl_status(
        "-H", "Content-Type: multipart/form-data", "--data-binary", "abc", dev.url + "/upload"
    )
    assert status == 400 and "boundary" in json.loads(body)["error"]
    assert snapshot(root) == before


@pytest.mark.parametrize(
    "path",
    [
        "/files/..",
        "/files/../secret.txt",
        "/files/..%2Fsecret.txt",
        "/files/..%2fsecret.txt",
        "/files/%2E%2E%2Fsecret.txt",
        "/files/..%5Csecret.txt",
        "/files/sub%2F..%2F..%2Fsecret.txt",
        "/files/a%00b",
        "/files/.wxtransfer",
        "/files/outside-link",
        "/files/%2Fetc%2Fpasswd",
    ],
)
def test_path_traversal_rejected(dev: DevServer, root: Path, path: str) -> None:
    secret = root.parent / "secret.txt"
    secret.write_bytes(b"TOP SECRET")
    (root / "outside-link").symlink_to(secret)
    before = snapshot(root)
    status, _, body = raw_request(dev.url, "GET", path)
    assert status in (400, 404), (path, status)
    assert b"TOP SECRET" not in body and b"root:" not in body
    assert snapshot(root) == before


def test_token_required(root: Path, files: dict[str, Path], tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1_500_000))  # large enough for curl to send Expect
    with DevServer(root, token="s3cret-token") as dev:
        before = snapshot(root)
        for auth in ([], ["-H", "Authorization: Bearer wrong"], ["-u", "user:s3cret-token"]):
            for target in ("/", "/files/anything", "/upload"):
                args = [*auth, "-F", f"file=@{files['hello']}"] if target == "/upload" else auth
                status, headers, body = curl_headers(*args, dev.url + target)
                assert status == 401, (auth, target)
                assert headers["www-authenticate"].startswith("Bearer")
                assert json.loads(body)["error"]
            status, headers, _ = curl_headers(*auth, "-F", f"file=@{big}", dev.url + "/upload")
            assert status == 401
        assert snapshot(root) == before

        good = "Authorization: Bearer s3cret-token"
        entry = upload_one(dev.url, files["hello"], good)
        assert list_files(dev.url, good)[0]["name"] == entry["name"]
        status, body = curl_status("-H", good, dev.url + entry["url"])
        assert status == 200 and body == files["hello"].read_bytes()
        status, body = curl_status("-H", "authorization: bearer s3cret-token", dev.url + "/")
        assert status == 200


# --------------------------------------------------------------------------- lifecycle


def test_dev_server_lifecycle(root: Path) -> None:
    srv = DevServer(root)
    with pytest.raises(RuntimeError):
        _ = srv.url
    srv.start()
    try:
        assert srv.url == f"http://127.0.0.1:{srv.port}" and srv.port > 0
        with pytest.raises(RuntimeError):
            srv.start()
        # An idle keep-alive connection must not delay stop().
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("GET", "/", headers={"Accept": "application/json"})
        assert conn.getresponse().read() == b'{"files": []}'
        port = srv.port
    finally:
        started = time.monotonic()
        srv.stop()
        elapsed = time.monotonic() - started
        conn.close()
    assert elapsed < 3
    srv.stop()  # idempotent
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    # A stopped server can be started again.
    with srv:
        assert list_files(srv.url) == []


def test_creates_root(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    with DevServer(root) as dev:
        assert root.is_dir() and list_files(dev.url) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_foreground(root: Path, files: dict[str, Path], sig: signal.Signals) -> None:
    """``serve()`` (what ``wxtransfer serve`` runs) prints its URL and stops on a signal."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC_DIR, os.environ.get("PYTHONPATH", "")]))
    code = (
        "import pathlib, sys; from wxtransfer._server import serve; "
        "serve('127.0.0.1', 0, root=pathlib.Path(sys.argv[1]), token='tok')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:(\d+))/", first)
        assert match and int(match.group(2)) > 0, first
        entry = upload_one(match.group(1), files["hello"], "Authorization: Bearer tok")
        assert (root / entry["name"]).read_bytes() == files["hello"].read_bytes()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- browser


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """Headless Chromium (selenium) with downloads going to a fresh directory."""
    driver = start_chromium(tmp_path)
    try:
        yield driver, driver.downloads
    finally:
        driver.quit()


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.timeout(120)
def test_browser_lists_and_downloads(
    dev: DevServer, root: Path, tmp_path: Path, chrome: tuple[Any, Path]
) -> None:
    from selenium.webdriver.common.by import By

    driver, downloads = chrome
    payload = os.urandom(250_000)
    src = tmp_path / "données ü.bin"
    src.write_bytes(payload)
    entry = upload_one(dev.url, src)

    driver.get(dev.url + "/")
    assert driver.title == "wxtransfer dev server"
    links = driver.find_elements(By.CSS_SELECTOR, "a.file")
    assert [link.text for link in links] == [src.name]
    assert links[0].get_attribute("href") == dev.url + entry["url"]
    row = driver.find_element(By.CSS_SELECTOR, "#files tbody tr").text
    assert entry["name"] in row

    links[0].click()

    def finished() -> list[Path]:
        done = [p for p in downloads.iterdir() if not p.name.endswith(".crdownload")]
        return done if done and done[0].stat().st_size == len(payload) else []

    (saved,) = wait_for(finished, 30, "the browser download")
    assert saved.name == src.name  # from Content-Disposition filename*
    assert sha256(saved.read_bytes()) == sha256(payload) == entry["sha256"]

    # The page's own upload form stores a file too.
    other = tmp_path / "from-browser.txt"
    other.write_bytes(b"uploaded by chromium\n")
    driver.get(dev.url + "/")
    driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(other))
    # The page uploads a picked file at once (XHR) and lists it with its SHA-256.
    digest = sha256(other.read_bytes())
    wait_for(lambda: digest in driver.find_element(By.ID, "files").text, 20, "the listing")
    stored = [p for p in root.iterdir() if p.name.endswith("_from-browser.txt")]
    assert len(stored) == 1 and stored[0].read_bytes() == other.read_bytes()
