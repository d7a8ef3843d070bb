"""SPEC §2: every row of the error table, with the right errMsg and errno."""

from __future__ import annotations

import errno as errno_codes
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pycurl
import pytest

import wxtransfer
from tests.helpers import leftovers, runtime
from tests.servers.rawsock import RawServer, build_response, hang, reset, respond
from wxtransfer._options import (
    _PLAIN_URL,
    _check_upload_file,
    _check_url,
    _parse_url,
    validate_download,
)
from wxtransfer._transport import CURL_ERRORS, map_curl_error

RawFactory = Callable[[Any], RawServer]


def _fail(task: wxtransfer.Task[Any, Any]) -> wxtransfer.TransferError:
    err = task.exception(timeout=10)
    assert err is not None, "expected the task to fail"
    return err


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"url": None}, "url is required"),
        ({"url": 42}, "url should be a str"),
        ({"header": {"Referer": "https://x"}}, "Referer"),
        ({"header": {"referer": "https://x"}}, "Referer"),
        ({"header": {"X-A": "a\r\nX-B: b"}}, "CR, LF"),
        ({"header": {"X-A\n": "a"}}, "forbidden character"),
        ({"header": {"X-A": object()}}, "header 'X-A'"),
        ({"header": "x"}, "header should be a dict"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": "10"}, "timeout"),
        ({"success": 3}, "success should be callable"),
    ],
)
def test_bad_download_arguments_fail_without_a_request(
    tmp_path: Path, raw_server: RawFactory, kwargs: dict[str, Any], reason: str
) -> None:
    srv = raw_server(respond(build_response(200, b"x")))
    call: dict[str, Any] = {"url": srv.url + "/x", **kwargs}
    url = call.pop("url")
    with runtime(tmp_path) as rt:
        err = _fail(rt.download_file(url, **call))
    assert isinstance(err, wxtransfer.InvalidArgumentError)
    assert err.errno == 600005
    assert err.err_msg.startswith("downloadFile:fail parameter error: ")
    assert reason in err.err_msg
    assert srv.connections == 0


@pytest.mark.parametrize(
    ("form_data", "reason"),
    [
        ({"a": {"nested": 1}}, "formData['a'] should be a str, bool or number"),
        ({"a": None}, "formData['a']"),
        ({"a": [1]}, "formData['a']"),
        ({1: "x"}, "formData keys"),
        ("a=b", "formData should be a dict"),
    ],
)
def test_unsupported_form_data_is_a_parameter_error(
    tmp_path: Path, raw_server: RawFactory, form_data: Any, reason: str
) -> None:
    srv = raw_server(respond(build_response(200, b"x")))
    f = tmp_path / "a.txt"
    f.write_bytes(b"abc")
    with runtime(tmp_path) as rt:
        err = _fail(rt.upload_file(srv.url + "/u", f, "file", form_data=form_data))
    assert isinstance(err, wxtransfer.InvalidArgumentError)
    assert (err.errno, reason in err.err_msg) == (600005, True), err.err_msg
    assert srv.connections == 0


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "http://", "http://127.0.0.1:99999/", "x"]
)
def test_unsupported_or_malformed_urls_are_invalid_url(tmp_path: Path, url: str) -> None:
    with runtime(tmp_path) as rt:
        err = _fail(rt.download_file(url))
    assert isinstance(err, wxtransfer.InvalidArgumentError)
    assert err.errno == 600009
    assert err.err_msg.startswith("downloadFile:fail invalid URL")


@pytest.mark.parametrize(
    "url",
    [
        "http://h:65535/",
        "http://h:65536/",
        "http://h:070000/",
        "HTTP://H:/a?b#c",
        "http://h/a b",
        "http://h/a\x00",
        "http://h\t/",
        "http://:80/",
        "http://[::1/",
        "http://h:\u0661/",
        "http\u017f://h/",
        "https://a.b-c_d.0:443?q#f",
        " http://h/",
    ],
)
def test_a_plain_url_takes_the_quick_path_only_when_the_long_one_accepts_it(url: str) -> None:
    try:
        expected: str | None = _parse_url("downloadFile", url)
    except wxtransfer.TransferError as exc:
        expected = None
        with pytest.raises(wxtransfer.TransferError) as raised:
            _check_url("downloadFile", url)
        assert raised.value.err_msg == exc.err_msg
    assert _PLAIN_URL(url) is None or expected == url
    assert expected is None or _check_url("downloadFile", url) == url


def test_upload_file_problems(tmp_path: Path, raw_server: RawFactory) -> None:
    srv = raw_server(respond(build_response(200, b"x")))
    with runtime(tmp_path) as rt:
        missing = _fail(rt.upload_file(srv.url, tmp_path / "nope.bin", "file"))
        folder = _fail(rt.upload_file(srv.url, tmp_path, "file"))
        no_name = _fail(rt.upload_file(srv.url, tmp_path / "nope.bin", ""))
    assert isinstance(missing, wxtransfer.FileError)
    assert missing.errno == 600005
    assert missing.err_msg == f"uploadFile:fail file not found {tmp_path / 'nope.bin'}"
    assert folder.err_msg == f"uploadFile:fail is a directory {tmp_path}"
    assert isinstance(no_name, wxtransfer.InvalidArgumentError)
    assert srv.connections == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_upload_file_is_permission_denied(tmp_path: Path) -> None:
    f = tmp_path / "secret.bin"
    f.write_bytes(b"x")
    f.chmod(0)
    with runtime(tmp_path) as rt:
        err = _fail(rt.upload_file("http://127.0.0.1:9/", f, "file"))
    assert err.err_msg == f"uploadFile:fail permission denied {f}"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a check as another user")
def test_upload_file_readability_follows_the_owner_class_as_another_user() -> None:
    """Checked as ``nobody`` (a forked child): the mode bits decide where they can."""
    pwd = pytest.importorskip("pwd")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    cases = {
        "open.bin": (0o644, 0),
        "root-only.bin": (0o600, 0),
        "own-no-owner-read.bin": (0o044, nobody.pw_uid),
        "own.bin": (0o400, nobody.pw_uid),
    }
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)
        for name, (mode, uid) in cases.items():
            f = folder / name
            f.write_bytes(b"x")
            os.chown(f, uid, -1)
            f.chmod(mode)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                seen = []
                for name in cases:
                    try:
                        _check_upload_file(str(folder / name))
                        seen.append(f"{name} read")
                    except wxtransfer.FileError as exc:
                        seen.append(f"{name} {exc.err_msg.split(' ', 2)[1]}")
                os.write(w, "\n".join(seen).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as pipe:
            out = pipe.read().splitlines()
        os.waitpid(pid, 0)
    finally:
        shutil.rmtree(folder)
    assert out == [
        "open.bin read",
        "root-only.bin permission",
        "own-no-owner-read.bin permission",
        "own.bin read",
    ]


def test_download_into_a_missing_folder_fails_before_sending(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    srv = raw_server(respond(build_response(200, b"x")))
    target = tmp_path / "no" / "such" / "a.bin"
    with runtime(tmp_path) as rt:
        err = _fail(rt.download_file(srv.url, file_path=target))
        onto_dir = _fail(rt.download_file(srv.url, file_path=tmp_path))
    assert isinstance(err, wxtransfer.FileError)
    assert err.errno == 603300
    assert err.err_msg.startswith("downloadFile:fail download save file error")
    assert onto_dir.errno == 603300
    assert srv.connections == 0


def test_a_folder_removed_after_a_call_into_it_fails_the_save(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    # A burst of calls into one folder checks it once (for a second): a folder removed
    # meanwhile is found when the file is saved. Same failure, and nothing left behind.
    srv = raw_server(respond(build_response(200, b"x")))
    folder = tmp_path / "sub"
    folder.mkdir()
    with runtime(tmp_path) as rt:
        rt.download_file(srv.url, file_path=folder / "a.bin").result(10)
        shutil.rmtree(folder)
        err = _fail(rt.download_file(srv.url, file_path=folder / "b.bin"))
    assert isinstance(err, wxtransfer.FileError)
    assert err.errno == 603300
    assert err.err_msg.startswith("downloadFile:fail download save file error")
    assert not folder.exists()


def test_download_target_problems_say_which(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"x")
    exe = tmp_path / "run.sh"
    exe.write_bytes(b"#!/bin/sh\n")
    exe.chmod(0o755)
    (tmp_path / "dir").mkdir()
    (tmp_path / "to-dir").symlink_to(tmp_path / "dir")
    save = "downloadFile:fail download save file error:"
    cases = {
        tmp_path / "no" / "a.bin": f"{save} no such folder {tmp_path / 'no'}",
        plain / "a.bin": f"{save} no such folder {plain}",
        exe / "a.bin": f"{save} no such folder {exe}",
        plain / "b" / "a.bin": f"{save} no such folder {plain / 'b'}",
        tmp_path / "dir": f"{save} {tmp_path / 'dir'} is a directory",
        tmp_path / "to-dir": f"{save} {tmp_path / 'to-dir'} is a directory",
        tmp_path / "dir" / "..": f"{save} {tmp_path} is a directory",
    }
    for target, message in cases.items():
        with pytest.raises(wxtransfer.FileError) as raised:
            validate_download("http://127.0.0.1:9/", file_path=target)
        assert (raised.value.errno, raised.value.err_msg) == (603300, message), target
    for fine in (tmp_path / "new.bin", plain, tmp_path / "to-dir" / "a.bin"):
        assert validate_download("http://127.0.0.1:9/", file_path=fine).target_path == str(fine)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere whatever the mode")
def test_download_into_a_read_only_folder_is_permission_denied(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    with runtime(tmp_path) as rt:
        err = _fail(rt.download_file("http://127.0.0.1:9/", file_path=folder / "a"))
    assert err.errno == 603303
    assert "permission denied" in err.err_msg


def test_connection_refused_is_cannot_connect(tmp_path: Path) -> None:
    from tests.servers import free_port

    with runtime(tmp_path) as rt:
        err = _fail(rt.download_file(f"http://127.0.0.1:{free_port()}/x"))
    assert isinstance(err, wxtransfer.NetworkError)
    assert err.errno == 600001
    assert err.err_msg.startswith("downloadFile:fail could not connect")


def test_reset_is_interrupted(tmp_path: Path, raw_server: RawFactory) -> None:
    srv = raw_server(reset())
    with runtime(tmp_path) as rt:
        err = _fail(rt.download_file(srv.url + "/x"))
    assert isinstance(err, wxtransfer.NetworkError)
    assert err.errno == 600003
    assert leftovers(tmp_path / "tmp") == []


def test_short_body_is_interrupted_and_leaves_no_file(tmp_path: Path, server: Any) -> None:
    target = tmp_path / "out.bin"
    with runtime(tmp_path) as rt:
        err = _fail(rt.download_file(server.url + "/truncated/100000", file_path=target))
        temp_err = _fail(rt.download_file(server.url + "/truncated/100000"))
        assert leftovers(tmp_path / "tmp") == []
    assert err.errno == temp_err.errno == 600003
    assert "shorter than its Content-Length" in err.err_msg
    assert not target.exists()
    assert [p for p in os.listdir(tmp_path) if "wxpart" in p] == []


def test_timeout_is_errno_5(tmp_path: Path, server: Any) -> None:
    with runtime(tmp_path) as rt:
        err = _fail(rt.download_file(server.url + "/hang", timeout=200))
    assert isinstance(err, wxtransfer.TimeoutError)
    assert isinstance(err, TimeoutError)
    assert (err.err_msg, err.errno) == ("downloadFile:fail timeout", 5)


def test_timeout_bounds_the_whole_transfer_not_each_read(tmp_path: Path, server: Any) -> None:
    # One 1 KiB chunk every 50 ms never stalls, but 40 chunks take 2 s: more than 500 ms.
    with runtime(tmp_path) as rt:
        err = _fail(rt.download_file(server.url + "/slow/40960?delay=0.05", timeout=500))
    assert isinstance(err, wxtransfer.TimeoutError)


def test_runtime_network_timeout_is_the_default(tmp_path: Path, server: Any) -> None:
    with runtime(tmp_path, network_timeout={"downloadFile": 150}) as rt:
        err = _fail(rt.download_file(server.url + "/hang-before-headers"))
        ok = rt.download_file(server.url + "/bytes/10").result(10)
    assert isinstance(err, wxtransfer.TimeoutError)
    assert ok.data_length == 10


def test_too_many_redirects(tmp_path: Path, server: Any) -> None:
    with runtime(tmp_path) as rt:
        loop = _fail(rt.download_file(server.url + "/redirect-loop"))
        eleven = _fail(rt.download_file(server.url + "/redirect/11"))
        ten = rt.download_file(server.url + "/redirect/10").result(10)
    assert isinstance(loop, wxtransfer.NetworkError)
    assert (loop.err_msg, loop.errno) == ("downloadFile:fail too many redirects", 600008)
    assert eleven.errno == 600008
    assert ten.status_code == 200


def test_tls_failure_is_cannot_connect(tmp_path: Path, https_server: Any) -> None:
    with runtime(tmp_path) as rt:
        err = _fail(rt.download_file(https_server.url + "/bytes/10"))
    assert isinstance(err, wxtransfer.NetworkError)
    assert err.errno == 600001
    assert "TLS" in err.err_msg
    with runtime(tmp_path, ca_file=https_server.ca_file) as rt:
        res = rt.download_file(https_server.url + "/bytes/10").result(10)
    assert res.status_code == 200
    assert res.profile is not None and res.profile["SSLconnectionEnd"] > 0


def test_a_server_that_answers_nothing_is_interrupted(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    srv = raw_server(respond(b""))
    with runtime(tmp_path) as rt:
        err = _fail(rt.download_file(srv.url + "/x"))
    assert err.errno == 600003


def test_a_hanging_server_times_out(tmp_path: Path, raw_server: RawFactory) -> None:
    srv = raw_server(hang())
    with runtime(tmp_path) as rt:
        err = _fail(rt.upload_file(srv.url, __file__, "file", timeout=200))
    assert (err.err_msg, err.errno) == ("uploadFile:fail timeout", 5)


# libcurl codes a transfer of ours can end with. Each must have its own row in CURL_ERRORS.
CODES_WE_CAN_MEET = [
    pycurl.E_UNSUPPORTED_PROTOCOL,
    pycurl.E_URL_MALFORMAT,
    pycurl.E_COULDNT_RESOLVE_PROXY,
    pycurl.E_COULDNT_RESOLVE_HOST,
    pycurl.E_COULDNT_CONNECT,
    8,  # CURLE_WEIRD_SERVER_REPLY
    pycurl.E_HTTP2,
    pycurl.E_PARTIAL_FILE,
    pycurl.E_WRITE_ERROR,
    pycurl.E_UPLOAD_FAILED,
    pycurl.E_READ_ERROR,
    pycurl.E_OUT_OF_MEMORY,
    pycurl.E_OPERATION_TIMEDOUT,
    pycurl.E_SSL_CONNECT_ERROR,
    pycurl.E_ABORTED_BY_CALLBACK,
    pycurl.E_INTERFACE_FAILED,
    pycurl.E_TOO_MANY_REDIRECTS,
    pycurl.E_GOT_NOTHING,
    pycurl.E_SEND_ERROR,
    pycurl.E_RECV_ERROR,
    pycurl.E_SSL_CERTPROBLEM,
    pycurl.E_SSL_CIPHER,
    pycurl.E_PEER_FAILED_VERIFICATION,
    pycurl.E_BAD_CONTENT_ENCODING,
    pycurl.E_FILESIZE_EXCEEDED,
    pycurl.E_SEND_FAIL_REWIND,
    pycurl.E_SSL_CACERT_BADFILE,
    pycurl.E_SSL_SHUTDOWN_FAILED,
    pycurl.E_SSL_ISSUER_ERROR,
    pycurl.E_SSL_PINNEDPUBKEYNOTMATCH,
    pycurl.E_SSL_INVALIDCERTSTATUS,
    92,  # CURLE_HTTP2_STREAM
    95,  # CURLE_HTTP3
    96,  # CURLE_QUIC_CONNECT_ERROR
    97,  # CURLE_PROXY
    99,  # CURLE_UNRECOVERABLE_POLL
    100,  # CURLE_TOO_LARGE
]


@pytest.mark.parametrize("code", CODES_WE_CAN_MEET)
def test_every_libcurl_code_we_can_meet_is_mapped(code: int) -> None:
    assert code in CURL_ERRORS
    err = map_curl_error("downloadFile", code)
    assert err.err_msg.startswith("downloadFile:fail ")
    assert err.errno in {5, 600000, 600001, 600003, 600005, 600008, 600009, 603300, 603301}


def test_an_unknown_libcurl_code_is_an_unknown_network_error() -> None:
    err = map_curl_error("uploadFile", 12345)
    assert isinstance(err, wxtransfer.NetworkError)
    assert (err.errno, err.err_msg) == (600000, "uploadFile:fail network error (curl 12345)")


def test_mapped_classes_match_their_errno() -> None:
    for code, (cls, errno, _) in CURL_ERRORS.items():
        if errno == 5:
            assert cls is wxtransfer.TimeoutError, code
        if cls is wxtransfer.AbortError:
            assert errno == 600003


# ---- the underlying error: curl_code and __cause__ (SPEC §8) ----------------------------


def test_a_libcurl_failure_keeps_its_code_and_cause(tmp_path: Path, server: Any) -> None:
    from tests.servers import free_port

    with runtime(tmp_path) as rt:
        refused = _fail(rt.download_file(f"http://127.0.0.1:{free_port()}/x"))
        timed_out = _fail(rt.download_file(server.url + "/hang", timeout=200))
    for err, code in ((refused, 7), (timed_out, 28)):
        assert err.curl_code == code
        assert isinstance(err.__cause__, pycurl.error)
        assert err.__cause__.args[0] == code
        assert err.__cause__.args[1]  # libcurl's own words
        assert err.__cause__.__traceback__ is None  # no frames of ours kept alive


def test_a_tls_failure_explained_by_the_rules_keeps_its_code_and_cause() -> None:
    from wxtransfer._rules import explain_failure

    err = explain_failure(map_curl_error("downloadFile", 60, "unable to get issuer"), 60)
    assert "[rule: valid certificate]" in err.err_msg
    assert err.curl_code == 60
    assert isinstance(err.__cause__, pycurl.error) and err.__cause__.args[0] == 60


def test_a_full_disk_keeps_the_operating_systems_error(
    tmp_path: Path, server: Any, small_tmpfs: Path
) -> None:
    with runtime(tmp_path) as rt:
        err = _fail(rt.download_file(server.url + f"/bytes/{3 << 20}", file_path=small_tmpfs / "x"))
    assert isinstance(err, wxtransfer.FileError)
    assert err.curl_code in (0, 23)  # 23: libcurl's write error, when it is the one to stop
    assert isinstance(err.__cause__, OSError)
    assert err.__cause__.errno == errno_codes.ENOSPC
    assert leftovers(small_tmpfs) == []


def test_errors_of_a_call_keep_their_cause(tmp_path: Path) -> None:
    with runtime(tmp_path) as rt:
        missing = _fail(rt.upload_file("http://127.0.0.1:1/u", tmp_path / "nope", "file"))
        bad_port = _fail(rt.download_file("http://127.0.0.1:99999/x"))
    assert isinstance(missing.__cause__, FileNotFoundError)
    assert isinstance(bad_port.__cause__, ValueError)
    assert missing.curl_code == bad_port.curl_code == 0


def test_curl_code_survives_pickling() -> None:
    err = map_curl_error("downloadFile", 7, "Connection refused")
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), copy.err_msg, copy.errno, copy.curl_code) == (
        wxtransfer.NetworkError,
        err.err_msg,
        600001,
        7,
    )
    assert copy.to_dict() == {"errMsg": err.err_msg, "errno": 600001}  # the platform's keys
