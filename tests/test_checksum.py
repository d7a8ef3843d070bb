"""Checksums (SPEC §8): ``checksum=`` and RFC 9530 digest fields, checked on the bytes as
they are written, before the file takes its name."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import wxtransfer
from tests.helpers import leftovers, runtime
from tests.servers.faults import Faulty
from tests.servers.rawsock import RawServer, build_response, respond
from wxtransfer._digest import header_checks, parse_checksum

RawFactory = Callable[..., RawServer]
BODY = os.urandom(300_000)
BIG = os.urandom(3 << 20)  # past the writer's batch and the reserve threshold
FAST = wxtransfer.Retry(total=3, backoff=0.01)


def hexof(data: bytes, algo: str = "sha256") -> str:
    return hashlib.new(algo, data).hexdigest()


def field(data: bytes, algo: str = "sha-256") -> str:
    raw = hashlib.new(algo.replace("-", ""), data).digest()
    return f"{algo}=:{base64.b64encode(raw).decode()}:"


def serve(raw_server: RawFactory, body: bytes, **headers: str) -> RawServer:
    named = {k.replace("_", "-"): v for k, v in headers.items()}
    return raw_server(respond(build_response(200, body, named)))


@pytest.mark.parametrize("algo", ["md5", "sha1", "sha256", "sha512"])
def test_a_right_checksum_lets_the_file_take_its_name(
    tmp_path: Path, raw_server: RawFactory, algo: str
) -> None:
    srv = serve(raw_server, BODY)
    target = tmp_path / "f.bin"
    with runtime(tmp_path) as rt:
        res = rt.download_file(
            srv.url + "/f", file_path=target, checksum=f"{algo.upper()}:{hexof(BODY, algo).upper()}"
        ).result(20)
    assert res.data_length == len(BODY) and target.read_bytes() == BODY


def test_a_big_file_is_hashed_as_it_is_written(tmp_path: Path, raw_server: RawFactory) -> None:
    srv = serve(raw_server, BIG)
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/f", checksum=f"sha256:{hexof(BIG)}").result(20)
        assert Path(res.temp_file_path or "").read_bytes() == BIG


def test_a_mismatch_is_a_checksum_error_leaves_no_file_and_is_not_retried(
    tmp_path: Path, raw_server: RawFactory
) -> None:
    faulty = Faulty(BODY)
    srv = raw_server(faulty)
    target = tmp_path / "f.bin"
    wrong = "0" * 64
    with runtime(tmp_path) as rt:
        err = rt.download_file(
            srv.url + "/f", file_path=target, checksum=f"sha256:{wrong}", retry=FAST
        ).exception(20)
        assert leftovers(tmp_path / "tmp") == []
    assert isinstance(err, wxtransfer.ChecksumError) and isinstance(err, wxtransfer.FileError)
    assert err.errno == 603304
    assert err.err_msg == (
        f"downloadFile:fail checksum mismatch: expected sha256:{wrong}, got sha256:{hexof(BODY)}"
    )
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if "wxpart" in p.name] == []
    assert len(faulty.requests) == 1  # never retried


@pytest.mark.parametrize(
    "value",
    ["sha256", "crc32:00000000", "sha256:abc", "md5:" + "g" * 32, b"sha1:00", 42],
)
def test_a_malformed_checksum_is_a_parameter_error(
    tmp_path: Path, raw_server: RawFactory, value: object
) -> None:
    srv = serve(raw_server, b"x")
    with runtime(tmp_path) as rt:
        err = rt.download_file(srv.url + "/f", checksum=value).exception(10)  # type: ignore[arg-type]
    assert isinstance(err, wxtransfer.InvalidArgumentError)
    assert "checksum" in err.err_msg
    assert srv.connections == 0  # nothing was sent


def test_the_servers_digest_fields_are_checked(tmp_path: Path, raw_server: RawFactory) -> None:
    good = serve(raw_server, BODY, Repr_Digest=field(BODY), Content_Digest=field(BODY, "sha-512"))
    bad_repr = serve(raw_server, BODY, Repr_Digest=field(b"other"))
    bad_content = serve(raw_server, BODY, Content_Digest=field(b"other", "sha-512"))
    with runtime(tmp_path) as rt:
        kept = rt.download_file(good.url + "/f").result(20)
        repr_err = rt.download_file(bad_repr.url + "/f").exception(20)
        content_err = rt.download_file(bad_content.url + "/f").exception(20)
        assert [Path(p).name for p in leftovers(tmp_path / "tmp")] == [
            Path(kept.temp_file_path or "").name
        ]  # the good one only
    assert isinstance(repr_err, wxtransfer.ChecksumError)
    assert "(the server's repr-digest)" in repr_err.err_msg
    assert isinstance(content_err, wxtransfer.ChecksumError)
    assert "sha512" in content_err.err_msg


def test_with_a_checksum_too_both_must_hold(tmp_path: Path, raw_server: RawFactory) -> None:
    srv = serve(raw_server, BODY, Repr_Digest=field(b"other"))
    with runtime(tmp_path) as rt:
        err = rt.download_file(srv.url + "/f", checksum=f"sha256:{hexof(BODY)}").exception(20)
    assert isinstance(err, wxtransfer.ChecksumError)


def test_what_is_not_checked(tmp_path: Path, raw_server: RawFactory) -> None:
    encoded = serve(raw_server, BODY, Content_Encoding="gzip", Repr_Digest=field(b"other"))
    missing = raw_server(respond(build_response(404, b"nope")))
    with runtime(tmp_path) as rt:
        # a content-encoded body: the digest is of other bytes than those kept
        assert rt.download_file(encoded.url + "/f").result(20).status_code == 200
        # another status than 2xx: its body is not the resource
        res = rt.download_file(missing.url + "/f", checksum="sha256:" + "0" * 64).result(20)
    assert res.status_code == 404


def test_a_continued_download_is_hashed_whole(tmp_path: Path, raw_server: RawFactory) -> None:
    faulty = Faulty(BODY, cut_after=100_000, cuts=1)
    srv = raw_server(faulty)
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/f", retry=FAST, checksum=f"sha256:{hexof(BODY)}")
        assert res.result(20).attempts == 2
    assert faulty.requests[1]["range"] == "bytes=100000-"


def test_a_download_started_over_is_hashed_afresh(tmp_path: Path, raw_server: RawFactory) -> None:
    faulty = Faulty(BODY, cut_after=100_000, cuts=1, ignore_range=True)
    srv = raw_server(faulty)
    with runtime(tmp_path) as rt:
        res = rt.download_file(srv.url + "/f", retry=FAST, checksum=f"sha256:{hexof(BODY)}")
        assert res.result(20).data_length == len(BODY)


def test_parsing() -> None:
    assert parse_checksum(" SHA256:" + "A" * 64) == ("sha256", "a" * 64)
    head = {"repr-digest": "sha-256=:" + base64.b64encode(b"\x01" * 32).decode() + ":, md5=:x:"}
    assert header_checks(head) == [("sha256", "01" * 32, "repr-digest")]
    assert header_checks({"repr-digest": "sha-256=nocolons"}) == []
    assert header_checks({"content-digest": "sha-256=:!!!:"}) == []
