"""Uploads: the multipart body on the wire, progress, redirects, third-party parsing."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import wxtransfer
from tests.helpers import Recorder, runtime
from tests.servers.rawsock import RawServer, build_response, read_body_then


def _file(tmp_path: Path, name: str, size: int) -> Path:
    path = tmp_path / name
    path.write_bytes(bytes(i % 253 for i in range(size)))
    return path


def test_upload_body_fields_first_then_the_file(tmp_path: Path, server: Any) -> None:
    f = _file(tmp_path, "photo.png", 70000)
    with runtime(tmp_path) as rt:
        res = rt.upload_file(
            server.url + "/upload",
            f,
            "file",
            form_data={"user": "test", "n": 1.0, "f": 2.5, "ok": True, "no": False, "中": "文"},
            header={"Content-Type": "text/plain", "X-Extra": "1"},
        ).result(10)
    assert res.status_code == 200
    assert isinstance(res.data, str)
    body = json.loads(res.data)
    assert body["method"] == "POST"
    assert body["order"] == ["user", "n", "f", "ok", "no", "中", "file"]
    assert body["fields"] == {
        "user": "test", "n": "1", "f": "2.5", "ok": "true", "no": "false", "中": "文"
    }  # fmt: skip
    [part] = body["files"]
    assert part["field"] == "file"
    assert part["filename"] == "photo.png"
    assert part["content_type"] == "image/png"
    assert part["size"] == 70000
    assert part["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert body["chunked"] is False
    assert isinstance(body["content_length"], int) and body["content_length"] > 70000
    assert body["request_content_type"].startswith("multipart/form-data; boundary=")
    assert body["headers"]["x-extra"] == "1"
    assert "expect" not in body["headers"]
    assert res["statusCode"] == 200 and res["errMsg"] == "uploadFile:ok"


def test_unknown_extension_is_octet_stream(tmp_path: Path, server: Any) -> None:
    f = _file(tmp_path, "blob.zzzq", 10)
    with runtime(tmp_path) as rt:
        body = json.loads(rt.upload_file(server.url + "/upload", f, "f").result(10).data)
    assert body["files"][0]["content_type"] == "application/octet-stream"


def test_utf8_filenames_are_escaped_as_browsers_do(tmp_path: Path, raw_server: Any) -> None:
    handler = read_body_then(build_response(200, b"ok"))
    srv: RawServer = raw_server(handler)
    f = _file(tmp_path, 'fé"te\r\nx.txt', 5)
    with runtime(tmp_path) as rt:
        rt.upload_file(srv.url + "/u", f, "file").result(10)
    body = handler.bodies[0]
    assert b'filename="f\xc3\xa9%22te%0D%0Ax.txt"' in body
    assert b"Content-Type: text/plain" in body


def test_small_files_are_sent_as_libcurl_mime_sends_large_ones(
    tmp_path: Path, raw_server: Any
) -> None:
    # Files up to 64 KiB go out from memory in one piece; larger ones through libcurl's
    # MIME API. Apart from the boundary and the file's bytes the bodies must be the same.
    handler = read_body_then(build_response(200, b"ok"))
    srv: RawServer = raw_server(handler)
    (tmp_path / "small").mkdir()
    (tmp_path / "large").mkdir()
    small = _file(tmp_path / "small", 'na"me\r\n.txt', 100)
    large = _file(tmp_path / "large", 'na"me\r\n.txt', 70_000)
    fields = {"user": "test", 'k"e\ry': "vé", "n": 1.5}
    with runtime(tmp_path) as rt:
        for f in (small, large):
            rt.upload_file(srv.url + "/u", f, 'fi"le', form_data=fields).result(10)
    frames = []
    for head, body, f in zip(srv.requests, handler.bodies, (small, large), strict=True):
        [ctype] = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-type:")]
        boundary = ctype.split(b"boundary=")[1]
        assert boundary.startswith(b"-" * 24) and len(boundary) == 46, boundary
        [length] = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
        assert int(length.split(b":")[1]) == len(body)
        assert body.count(f.read_bytes()) == 1
        frames.append(body.replace(boundary, b"B").replace(f.read_bytes(), b"DATA"))
    assert frames[0] == frames[1]
    assert frames[0] == (
        b'--B\r\nContent-Disposition: form-data; name="user"\r\n\r\ntest\r\n'
        b'--B\r\nContent-Disposition: form-data; name="k%22e%0Dy"\r\n\r\nv\xc3\xa9\r\n'
        b'--B\r\nContent-Disposition: form-data; name="n"\r\n\r\n1.5\r\n'
        b'--B\r\nContent-Disposition: form-data; name="fi%22le"; '
        b'filename="na%22me%0D%0A.txt"\r\nContent-Type: text/plain\r\n\r\nDATA\r\n--B--\r\n'
    )


def test_progress_counts_the_request_body_and_ends_at_content_length(
    tmp_path: Path, server: Any
) -> None:
    f = _file(tmp_path, "big.bin", 3_000_000)
    rec = Recorder()
    with runtime(tmp_path) as rt:
        task = rt.upload_file(server.url + "/upload", f, "file", **rec.callbacks())
        task.on_progress_update(rec("progress"))
        res = task.result(20)
    content_length = json.loads(res.data)["content_length"]
    events = [e for k, e in rec.events if k == "progress"]
    assert rec.kinds()[-2:] == ["success", "complete"]
    # An event for each percent change: from the first one seen, no percent is skipped
    # by more than a read's worth (the file is read in 1/128ths).
    steps = [b.progress - a.progress for a, b in itertools.pairwise(events)]
    assert steps and max(steps) <= 2, steps
    sent = [e.total_bytes_sent for e in events]
    assert sent == sorted(sent)
    assert [e.progress for e in events] == sorted({e.progress for e in events})
    assert all(e.total_bytes_expected_to_send == content_length for e in events)
    assert (events[-1].progress, events[-1].total_bytes_sent) == (100, content_length)
    assert res.profile is not None and res.profile["sendBytesCount"] > content_length


def test_307_and_308_resend_the_body(tmp_path: Path, server: Any) -> None:
    f = _file(tmp_path, "a.txt", 1000)
    with runtime(tmp_path) as rt:
        for status in (307, 308):
            res = rt.upload_file(
                server.url + f"/redirect-to?url=/upload&status={status}", f, "file"
            ).result(10)
            assert res.status_code == 200
            assert json.loads(res.data)["files"][0]["size"] == 1000


def test_301_302_303_are_returned_as_they_are(tmp_path: Path, server: Any) -> None:
    f = _file(tmp_path, "a.txt", 10)
    with runtime(tmp_path) as rt:
        for status in (301, 302, 303):
            res = rt.upload_file(
                server.url + f"/redirect-to?url=/upload&status={status}", f, "file"
            ).result(10)
            assert res.status_code == status
            assert res.header["Location"] == "/upload"


def test_httpbin_parses_our_multipart(tmp_path: Path, httpbin_url: str) -> None:
    f = _file(tmp_path, "notes.txt", 0)
    f.write_text("hello wx")
    with runtime(tmp_path) as rt:
        res = rt.upload_file(httpbin_url + "/post", f, "doc", form_data={"k": "v"}).result(10)
    body = json.loads(res.data)
    assert body["files"] == {"doc": "hello wx"}
    assert body["form"] == {"k": "v"}


def test_module_level_upload_uses_the_default_runtime(
    tmp_path: Path, server: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("WXTRANSFER_HOME", str(tmp_path / "home"))
    f = _file(tmp_path, "x.bin", 10)
    res = wxtransfer.upload_file(server.url + "/upload", str(f), "file").result(10)
    assert json.loads(res.data)["files"][0]["size"] == 10


def test_content_type_is_what_mimetypes_guesses_for_the_whole_name(monkeypatch: Any) -> None:
    import mimetypes

    from wxtransfer import _options

    names = ["a.png", "b.PNG", "c.tar.gz", "d.gz", "e.GZ", "f.tgz", "g.TGZ", "h.bin", ".png"]
    names += ["i.tar.GZ", "j", "k.", "l:m.png", "data:text/x,n.png", "o.svgz", "p.tar", "q.Z"]
    for name in names + names[::-1]:  # the second time round, from what was remembered
        expected = mimetypes.guess_type(name)[0] or "application/octet-stream"
        assert _options._content_type(name) == expected, name
    # an extension mimetypes learns later is seen at once
    assert _options._content_type("r.wxtest") == "application/octet-stream"
    monkeypatch.setitem(mimetypes.types_map, ".wxtest", "application/x-wxtest")
    assert _options._content_type("r.wxtest") == "application/x-wxtest"
