"""Against a third-party server: httpbin under gunicorn (a real WSGI stack, not our app)."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wxtransfer


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[wxtransfer.Runtime]:
    with wxtransfer.Runtime(home=tmp_path / "home", temp_dir=tmp_path / "tmp") as runtime:
        yield runtime


def _json_file(res: wxtransfer.DownloadFileResult) -> Any:
    assert res.temp_file_path is not None
    return json.loads(Path(res.temp_file_path).read_text())


def test_upload_to_post(rt: wxtransfer.Runtime, httpbin_url: str, tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("line one\nline two\n")
    res = rt.upload_file(
        f"{httpbin_url}/post",
        str(src),
        "upload",
        form_data={"user": "test", "count": 3, "flag": False},
        header={"X-Custom": "yes"},
        timeout=10000,
    ).result(timeout=15)
    assert res.status_code == 200
    assert res.err_msg == "uploadFile:ok"
    body = json.loads(res.data)
    assert body["files"] == {"upload": "line one\nline two\n"}
    assert body["form"] == {"user": "test", "count": "3", "flag": "false"}
    headers = body["headers"]
    assert headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert int(headers["Content-Length"]) > src.stat().st_size
    assert "Transfer-Encoding" not in headers
    assert headers["X-Custom"] == "yes"
    assert "Referer" not in headers


def test_upload_progress_matches_content_length(
    rt: wxtransfer.Runtime, httpbin_url: str, tmp_path: Path
) -> None:
    src = tmp_path / "big.txt"
    src.write_text("abc" * 100_000)
    task = rt.upload_file(f"{httpbin_url}/post", str(src), "file", timeout=10000)
    events: list[wxtransfer.UploadProgress] = []
    task.on_progress_update(events.append)
    res = task.result(timeout=15)
    sent = int(json.loads(res.data)["headers"]["Content-Length"])
    assert events
    assert events[-1].total_bytes_sent == events[-1].total_bytes_expected_to_send == sent
    assert events[-1].progress == 100


def test_download_bytes(rt: wxtransfer.Runtime, httpbin_url: str) -> None:
    res = rt.download_file(f"{httpbin_url}/bytes/2048", timeout=10000).result(timeout=15)
    assert res.status_code == 200
    assert res.data_length == 2048
    assert res.temp_file_path is not None
    assert os.path.getsize(res.temp_file_path) == 2048


def test_download_to_file_path(rt: wxtransfer.Runtime, httpbin_url: str, tmp_path: Path) -> None:
    target = tmp_path / "out" / "bytes.bin"
    target.parent.mkdir()
    res = rt.download_file(
        f"{httpbin_url}/bytes/1000", file_path=str(target), timeout=10000
    ).result(timeout=15)
    assert res.file_path == str(target)
    assert "tempFilePath" not in res
    assert target.stat().st_size == 1000


def test_redirects_followed(rt: wxtransfer.Runtime, httpbin_url: str) -> None:
    res = rt.download_file(f"{httpbin_url}/redirect/3", timeout=10000).result(timeout=15)
    assert res.status_code == 200
    assert _json_file(res)["url"].endswith("/get")


def test_too_many_redirects(rt: wxtransfer.Runtime, httpbin_url: str) -> None:
    err = rt.download_file(f"{httpbin_url}/redirect/12", timeout=10000).exception(timeout=15)
    assert isinstance(err, wxtransfer.NetworkError)
    assert err.errno == 600008
    assert err.err_msg == "downloadFile:fail too many redirects"


def test_status_418_is_success(rt: wxtransfer.Runtime, httpbin_url: str) -> None:
    outcomes: list[str] = []
    task = rt.download_file(
        f"{httpbin_url}/status/418",
        timeout=10000,
        success=lambda _: outcomes.append("success"),
        fail=lambda _: outcomes.append("fail"),
    )
    res = task.result(timeout=15)
    assert outcomes == ["success"]
    assert res.status_code == 418
    assert res["statusCode"] == 418
    assert res.err_msg == "downloadFile:ok"


def test_upload_status_500_is_success(
    rt: wxtransfer.Runtime, httpbin_url: str, tmp_path: Path
) -> None:
    src = tmp_path / "a.txt"
    src.write_text("a")
    res = rt.upload_file(f"{httpbin_url}/status/500", str(src), "f", timeout=10000).result(
        timeout=15
    )
    assert res.status_code == 500
    assert res.err_msg == "uploadFile:ok"


def test_custom_header_and_no_referer(rt: wxtransfer.Runtime, httpbin_url: str) -> None:
    res = rt.download_file(
        f"{httpbin_url}/headers", header={"X-Custom-Thing": "value 1"}, timeout=10000
    ).result(timeout=15)
    headers = _json_file(res)["headers"]
    assert headers["X-Custom-Thing"] == "value 1"
    assert "Referer" not in headers


def test_referer_header_refused(rt: wxtransfer.Runtime, httpbin_url: str) -> None:
    err = rt.download_file(
        f"{httpbin_url}/headers", header={"Referer": "https://example.com/"}
    ).exception(timeout=15)
    assert isinstance(err, wxtransfer.InvalidArgumentError)
    assert err.errno == 600005


def test_gzip_body_saved(rt: wxtransfer.Runtime, httpbin_url: str) -> None:
    res = rt.download_file(f"{httpbin_url}/gzip", timeout=10000).result(timeout=15)
    assert res.status_code == 200
    assert res.temp_file_path is not None
    data = Path(res.temp_file_path).read_bytes()
    assert res.data_length == len(data)
    # Saved as sent (gzip) or decoded: either way it is httpbin's gzip report.
    if data[:2] == b"\x1f\x8b":
        assert res.header["Content-Encoding"] == "gzip"
        assert res.data_length == int(res.header["Content-Length"])
        text = gzip.decompress(data)
    else:
        text = data
    assert json.loads(text)["gzipped"] is True
