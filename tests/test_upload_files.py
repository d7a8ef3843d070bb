"""Several files in one multipart request (SPEC §9 ``files=``): byte-exact order on a raw
server, small and large bodies alike, httpbin's parse, the wx face, progress over the whole
body, and the calls that send nothing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.helpers import runtime
from tests.servers.rawsock import RawServer, build_response, read_body_then
from wxtransfer import wx


def _file(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("size", [10, 40_000, 300_000], ids=["small", "past-64KiB", "large"])
def test_the_parts_go_in_order_after_the_fields(tmp_path: Path, raw_server: Any, size: int) -> None:
    handler = read_body_then(build_response(200, b"ok"))
    srv: RawServer = raw_server(handler)
    a = _file(tmp_path / "x", "a.jpg", os.urandom(size))
    b = _file(tmp_path / "y", "b.jpg", os.urandom(size + 1))
    c = _file(tmp_path, "c.pdf", os.urandom(size + 2))
    with runtime(tmp_path) as rt:
        res = rt.upload_file(
            srv.url + "/u",
            files=[("photo", a), ("photo", str(b)), ("doc", c)],
            form_data={"user": "test", "n": 2},
        ).result(20)
    assert res.status_code == 200 and res.data == "ok"
    head, body = srv.requests[0], handler.bodies[0]
    [ctype] = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-type:")]
    boundary = ctype.split(b"boundary=")[1]
    frame = body.replace(boundary, b"B")
    for name, f in (("A", a), ("B", b), ("C", c)):
        assert frame.count(f.read_bytes()) == 1
        frame = frame.replace(f.read_bytes(), name.encode() * 3)
    assert frame == (
        b'--B\r\nContent-Disposition: form-data; name="user"\r\n\r\ntest\r\n'
        b'--B\r\nContent-Disposition: form-data; name="n"\r\n\r\n2\r\n'
        b'--B\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\nAAA\r\n"
        b'--B\r\nContent-Disposition: form-data; name="photo"; filename="b.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\nBBB\r\n"
        b'--B\r\nContent-Disposition: form-data; name="doc"; filename="c.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\nCCC\r\n--B--\r\n"
    )


def test_httpbin_parses_every_file(tmp_path: Path, httpbin_url: str) -> None:
    a = _file(tmp_path, "a.txt", b"first file\n")
    b = _file(tmp_path, "b.txt", b"second file\n")
    with runtime(tmp_path) as rt:
        res = rt.upload_file(
            httpbin_url + "/post", files=[("one", a), ("two", b)], form_data={"k": "v"}
        ).result(20)
    got = json.loads(res.data)
    assert got["files"] == {"one": "first file\n", "two": "second file\n"}
    assert got["form"] == {"k": "v"}


def test_progress_counts_the_whole_body(tmp_path: Path, server: Any) -> None:
    files = [("f", _file(tmp_path, f"{i}.bin", os.urandom(1_000_000))) for i in range(3)]
    events: list[wxtransfer.UploadProgress] = []
    with runtime(tmp_path) as rt:
        task = rt.upload_file(server.url + "/upload", files=files)
        task.on_progress_update(events.append)
        res = task.result(20)
    report = json.loads(res.data)
    assert [f["sha256"] for f in report["files"]] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for _, p in files
    ]
    assert report["order"] == ["f", "f", "f"]
    whole = report["content_length"]
    assert whole > 3_000_000
    assert all(e.total_bytes_expected_to_send == whole for e in events)
    assert events[-1].total_bytes_sent == whole and events[-1].progress == 100
    assert [e.total_bytes_sent for e in events] == sorted(e.total_bytes_sent for e in events)
    assert len({e.progress for e in events}) > 50  # moves through the files, not per file


def test_the_wx_face_takes_name_and_uri(tmp_path: Path, server: Any) -> None:
    a = _file(tmp_path, "a.png", b"\x89PNG...")
    b = _file(tmp_path, "b.txt", b"hello")
    got: list[Any] = []
    with runtime(tmp_path) as rt:
        wxtransfer.set_default_runtime(rt)
        try:
            task = wx.uploadFile(
                {
                    "url": server.url + "/upload",
                    "files": [{"name": "pic", "uri": str(a)}, {"name": "note", "uri": str(b)}],
                    "formData": {"user": "u"},
                    "success": got.append,
                }
            )
            task.result(20)
        finally:
            wxtransfer.set_default_runtime(None)
    [res] = got
    report = json.loads(res["data"])
    assert report["order"] == ["user", "pic", "note"]
    assert [(f["filename"], f["size"]) for f in report["files"]] == [("a.png", 7), ("b.txt", 5)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"file_path": "A", "name": "f", "files": [("f", "A")]}, "not both"),
        ({"name": "f", "files": [("f", "A")]}, "not both"),
        ({"files": []}, "files should not be empty"),
        ({"files": "A"}, "files should be a list of (name, file_path) pairs, not str"),
        ({"files": [("f",)]}, "files[0] should be a (name, file_path) pair"),
        ({"files": [("f", "A"), ("", "A")]}, "files[1] name should be a non-empty str"),
        ({"files": [("f", "A"), ("g", "")]}, "files[1] path should be a non-empty path"),
        ({"files": [{"name": "f"}]}, "files[0] path should be a non-empty path"),
    ],
)
def test_bad_files_fail_before_anything_is_sent(
    tmp_path: Path, raw_server: Any, kwargs: dict[str, Any], message: str
) -> None:
    srv: RawServer = raw_server(read_body_then(build_response(200, b"ok")))
    a = _file(tmp_path, "a.bin", b"a")
    for key in ("file_path",):
        if kwargs.get(key) == "A":
            kwargs[key] = a
    if isinstance(kwargs.get("files"), list):
        kwargs["files"] = [
            tuple(a if v == "A" else v for v in item) if isinstance(item, tuple) else item
            for item in kwargs["files"]
        ]
    with runtime(tmp_path) as rt:
        task = rt.upload_file(srv.url + "/u", **kwargs)
        with pytest.raises(wxtransfer.InvalidArgumentError) as caught:
            task.result(10)
    assert message in caught.value.err_msg
    assert caught.value.err_msg.startswith("uploadFile:fail parameter error")
    assert srv.requests == []


def test_a_missing_file_among_them_sends_nothing(tmp_path: Path, raw_server: Any) -> None:
    srv: RawServer = raw_server(read_body_then(build_response(200, b"ok")))
    a = _file(tmp_path, "a.bin", b"a")
    with runtime(tmp_path) as rt:
        task = rt.upload_file(srv.url + "/u", files=[("f", a), ("g", tmp_path / "nope.bin")])
        with pytest.raises(wxtransfer.FileError) as caught:
            task.result(10)
    assert caught.value.err_msg == f"uploadFile:fail file not found {tmp_path / 'nope.bin'}"
    assert srv.requests == []
