"""Checksums of downloads: ``checksum="sha256:..."`` and RFC 9530 digest fields (SPEC §8).

Pure parsing. The hashing itself runs on the writer thread as the bytes are written
(``_output.py``): no second read of the file.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

__all__ = ["ALGORITHMS", "Check", "header_checks", "parse_checksum"]

#: Algorithms of ``checksum=``, and the length of their hex digest.
ALGORITHMS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
# RFC 9530 algorithm keys we verify (the "active" ones; md5, sha, crc32c... are not).
_FIELD_ALGORITHMS = {"sha-256": "sha256", "sha-512": "sha512"}

Check = tuple[str, str, str]  # (algorithm, expected lowercase hex, where it came from)


def parse_checksum(value: str) -> tuple[str, str]:
    """``"<algo>:<hex>"`` as (algo, lowercase hex); ValueError saying what is wrong."""
    algo, sep, digest = value.partition(":")
    algo = algo.strip().lower()
    digest = digest.strip().lower()
    if not sep or algo not in ALGORITHMS:
        raise ValueError(
            f"checksum should be '<algo>:<hex>' with algo one of {', '.join(ALGORITHMS)}, "
            f"not {value!r}"
        )
    if len(digest) != ALGORITHMS[algo] or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(
            f"checksum: a {algo} digest is {ALGORITHMS[algo]} hex digits, not {digest!r}"
        )
    return algo, digest


def _field_digests(value: str) -> dict[str, str]:
    """An RFC 9530 ``Repr-Digest`` / ``Content-Digest`` dictionary: {algo: hex}."""
    out: dict[str, str] = {}
    for member in value.split(","):
        key, sep, item = member.strip().partition("=")
        algo = _FIELD_ALGORITHMS.get(key.strip().lower())
        item = item.strip()
        if not sep or algo is None or len(item) < 2 or item[0] != ":" or item[-1] != ":":
            continue
        try:
            raw = base64.b64decode(item[1:-1], validate=True)
        except (binascii.Error, ValueError):
            continue
        out[algo] = raw.hex()
    return out


def header_checks(head: Mapping[str, str]) -> list[Check]:
    """What a 200 response's ``Repr-Digest`` and ``Content-Digest`` promise of its body,
    when it is not content-encoded (else the digests are of other bytes than those kept)."""
    encoding = head.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return []
    checks: list[Check] = []
    for field in ("repr-digest", "content-digest"):
        value = head.get(field)
        if value:
            checks += [(a, h, field) for a, h in _field_digests(value).items()]
    return checks
