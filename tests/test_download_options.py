"""max_redirects and compressed, against httpbin (a real WSGI stack)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import wxtransfer


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[wxtransfer.Runtime]:
    with wxtransfer.Runtime(home=tmp_path / "home", temp_dir=tmp_path / "tmp") as runtime:
        yield runtime


def test_max_redirects_bounds_the_redirects_followed(
    rt: wxtransfer.Runtime, httpbin_url: str
) -> None:
    ok = rt.download_file(httpbin_url + "/redirect/3", max_redirects=3).result(20)
    assert ok.status_code == 200 and ok.attempts == 4
    assert (ok.redirects, ok.url) == (3, httpbin_url + "/get")
    assert "url" not in ok and "redirects" not in ok  # ours, not the platform's keys
    direct = rt.download_file(httpbin_url + "/get?a=1").result(20)
    assert (direct.redirects, direct.url) == (0, httpbin_url + "/get?a=1")
    with pytest.raises(wxtransfer.NetworkError) as caught:
        rt.download_file(httpbin_url + "/redirect/3", max_redirects=2).result(20)
    assert caught.value.err_msg == "downloadFile:fail too many redirects"
    with pytest.raises(wxtransfer.NetworkError):
        rt.download_file(httpbin_url + "/redirect/1", max_redirects=0).result(20)
    with pytest.raises(wxtransfer.InvalidArgumentError, match="max_redirects"):
        rt.download_file(httpbin_url + "/get", max_redirects=-1).result(20)


@pytest.mark.parametrize("path", ["/gzip", "/deflate", "/brotli"])
def test_compressed_asks_and_decodes(rt: wxtransfer.Runtime, httpbin_url: str, path: str) -> None:
    res = rt.download_file(httpbin_url + path, compressed=True).result(20)
    assert res.temp_file_path is not None
    body = json.loads(Path(res.temp_file_path).read_bytes())
    assert body["headers"]["Accept-Encoding"]
    assert res.data_length == Path(res.temp_file_path).stat().st_size


def test_without_compressed_the_bytes_are_as_sent(rt: wxtransfer.Runtime, httpbin_url: str) -> None:
    res = rt.download_file(httpbin_url + "/gzip").result(20)
    assert res.temp_file_path is not None
    raw = Path(res.temp_file_path).read_bytes()
    assert json.loads(gzip.decompress(raw))["gzipped"] is True


def test_compressed_and_resume_do_not_mix(rt: wxtransfer.Runtime, tmp_path: Path) -> None:
    task = rt.download_file(
        "http://127.0.0.1:9/x", file_path=tmp_path / "x", resume=True, compressed=True
    )
    with pytest.raises(wxtransfer.InvalidArgumentError, match="do not mix"):
        task.result(10)
