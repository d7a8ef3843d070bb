"""The local name of a download: ``Content-Disposition`` or the URL's path, made safe.

A name from the server or the URL can only ever mean a file directly inside the folder
it is saved in: no ``..``, no absolute path, no control characters, at most 255 bytes.
"""

from __future__ import annotations

import os
import re
import unicodedata
import urllib.parse
from collections.abc import Mapping

import click

__all__ = [
    "FALLBACK_NAME",
    "content_disposition_filename",
    "inside",
    "remote_file_name",
    "safe_file_name",
    "url_file_name",
]

_NAME_MAX_BYTES = 255
FALLBACK_NAME = "download"

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM_RE = re.compile(rf';\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _fix_latin1(value: str) -> str:
    """Header values arrive decoded as latin-1: recover UTF-8 when that is what was sent."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def content_disposition_filename(value: str) -> str | None:
    """The file name a ``Content-Disposition`` value suggests (``filename*`` first), raw."""
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(value):
        key, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(key, raw)
    extended = params.get("filename*")
    if extended:
        charset, sep, rest = extended.partition("'")
        _lang, sep2, encoded = rest.partition("'")
        if sep and sep2:
            try:
                return urllib.parse.unquote(encoded, encoding=charset or "utf-8", errors="replace")
            except LookupError:  # unknown charset
                pass
    plain = params.get("filename")
    return _fix_latin1(plain) if plain else None


def _truncate(name: str, limit: int = _NAME_MAX_BYTES) -> str:
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 16:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    budget = limit - len(suffix.encode("utf-8"))
    stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore")
    return stem + suffix


def safe_file_name(raw: str | None) -> str | None:
    """A name that can only mean a file directly inside the current folder, or None.

    Control and format characters (NUL, CR/LF, bidi overrides ...) are dropped, only the
    last path component is kept (``/`` and ``\\`` both separate), leading dots are removed
    (no ``..``, no hidden files), and the result fits in 255 bytes.
    """
    if not raw:
        return None
    name = unicodedata.normalize("NFC", raw)
    name = "".join(c for c in name if not unicodedata.category(c).startswith("C"))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = name.strip().lstrip(".").rstrip(" .")
    name = _truncate(name).strip()
    if not name or name in {".", ".."} or "/" in name or "\0" in name:
        return None
    return name


def url_file_name(url: str) -> str | None:
    """The (unsafe, decoded) last segment of the URL's path, or None."""
    path = urllib.parse.urlsplit(url).path
    last = path.rsplit("/", 1)[-1]
    return urllib.parse.unquote(last, errors="replace") or None


def _header(header: Mapping[str, str], name: str) -> str | None:
    for key, value in header.items():
        if key.lower() == name:
            return value
    return None


def remote_file_name(url: str, header: Mapping[str, str]) -> str:
    """The safe local name for a download: Content-Disposition, else the URL's path."""
    disposition = _header(header, "content-disposition")
    if disposition:
        name = safe_file_name(content_disposition_filename(disposition))
        if name:
            return name
    return safe_file_name(url_file_name(url)) or FALLBACK_NAME


def inside(folder: str, name: str) -> str:
    """``folder/name``, checked to be a direct child of ``folder``."""
    dest = os.path.join(folder, name)
    if (
        os.path.isabs(name)
        or os.sep in name
        or (os.altsep is not None and os.altsep in name)
        or os.path.dirname(os.path.abspath(dest)) != os.path.abspath(folder)
    ):  # pragma: no cover - safe_file_name already guarantees it
        raise click.ClickException(f"refusing unsafe file name {name!r}")
    return dest
