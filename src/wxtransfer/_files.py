"""Temp files and the saved-file store (SPEC §7).

Temp files live in one owner-only folder per runtime, removed when the runtime closes.
Saved files live in a persistent folder (``WXTRANSFER_HOME`` or the user data folder);
a save is durable, file and folder fsynced, before it reports success, and never
overwrites anything.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import hashlib
import os
import secrets
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path

import platformdirs

from ._errors import Errno, FileError, InvalidArgumentError
from ._results import FileInfo, SavedFileInfo

__all__ = ["SavedFileStore", "TempFolder", "default_home"]

_DIGESTS = ("md5", "sha1", "sha256")


def default_home() -> Path:
    """``$WXTRANSFER_HOME`` or the platform's user data folder for wxtransfer."""
    env = os.environ.get("WXTRANSFER_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("wxtransfer", appauthor=False))


def _file_error(api: str, exc: OSError, path: str) -> FileError:
    """A FileError whose errno follows the platform's 1300xxx codes (1300000 + errno)."""
    code = exc.errno or errno_codes.EIO
    reasons = {
        errno_codes.ENOENT: "file not exist",
        errno_codes.EACCES: "permission denied",
        errno_codes.EPERM: "permission denied",
        errno_codes.EISDIR: "is a directory",
        errno_codes.EEXIST: "file already exists",
        errno_codes.ENOSPC: "no space left on device",
    }
    reason = reasons.get(code, exc.strerror or "file error")
    return FileError(f"{api}:fail {reason} {path}", 1300000 + code)


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TempFolder:
    """One owner-only folder of temp files, made on first use."""

    def __init__(self, parent: str | None = None) -> None:
        self._parent = parent
        self._path: str | None = None
        self._lock = threading.Lock()

    def path(self) -> str:
        with self._lock:
            if self._path is None:
                if self._parent is not None:
                    os.makedirs(self._parent, exist_ok=True)
                self._path = tempfile.mkdtemp(prefix="wxtransfer-", dir=self._parent)
            return self._path

    def contains(self, path: str) -> bool:
        with self._lock:
            root = self._path
        if root is None:
            return False
        real = os.path.realpath(path)
        return os.path.dirname(real) == os.path.realpath(root)

    def cleanup(self) -> None:
        with self._lock:
            root, self._path = self._path, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


class SavedFileStore:
    """The persistent folder that ``save_file`` moves temp files into."""

    def __init__(self, root: Path, temp: TempFolder, quota_bytes: int | None = None) -> None:
        self.root = root
        self._temp = temp
        self.quota_bytes = quota_bytes

    def _ensure_root(self) -> str:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        return str(self.root)

    def _in_store(self, path: str) -> bool:
        return os.path.dirname(os.path.realpath(path)) == os.path.realpath(self.root)

    def used_bytes(self) -> int:
        return sum(info.size for info in self.list())

    def save(self, temp_file_path: str, file_path: str | None = None) -> str:
        api = "saveFile"
        temp = os.fspath(temp_file_path)
        if not isinstance(temp, str) or not temp:
            raise InvalidArgumentError(
                f"{api}:fail parameter error: tempFilePath is required", Errno.INVALID_ARGUMENT
            )
        if not os.path.isfile(temp) or not self._temp.contains(temp):
            raise FileError(
                f"{api}:fail tempFilePath file not exist {temp} "
                "(only this runtime's temp files can be saved)",
                Errno.FILE_NOT_EXIST,
            )
        size = os.path.getsize(temp)
        if self.quota_bytes is not None and self.used_bytes() + size > self.quota_bytes:
            raise FileError(
                f"{api}:fail the maximum size of the file storage limit is exceeded "
                f"({self.quota_bytes} bytes in all)",
                Errno.FILE_STORAGE_LIMIT,
            )
        if file_path is not None:
            target = os.path.abspath(os.fspath(file_path))
        else:
            ext = os.path.splitext(temp)[1]
            target = os.path.join(self._ensure_root(), f"{secrets.token_hex(12)}{ext}")
        try:
            self._move_exclusive(temp, target)
        except OSError as exc:
            raise _file_error(api, exc, target) from None
        return target

    @staticmethod
    def _move_exclusive(source: str, target: str) -> None:
        """Move without ever replacing an existing file; durable when it returns."""
        folder = os.path.dirname(target)
        now = time.time()
        os.utime(source, (now, now))
        try:
            os.link(source, target)  # fails with EEXIST instead of overwriting
        except OSError as exc:
            if exc.errno != errno_codes.EXDEV:
                raise
            part = os.path.join(folder, f".{os.path.basename(target)}.{secrets.token_hex(4)}.part")
            with open(source, "rb") as src, open(part, "xb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            try:
                os.link(part, target)
            finally:
                os.unlink(part)
        with open(target, "rb") as f:
            os.fsync(f.fileno())
        _fsync_dir(folder)
        os.unlink(source)

    def list(self) -> list[SavedFileInfo]:
        if not self.root.is_dir():
            return []
        out = []
        for entry in os.scandir(self.root):
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat()
            out.append(SavedFileInfo(entry.path, st.st_size, int(st.st_mtime)))
        out.sort(key=lambda info: (info.create_time, info.file_path))
        return out

    def info(self, file_path: str) -> SavedFileInfo:
        api = "getSavedFileInfo"
        path = os.fspath(file_path)
        if not self._in_store(path):
            raise FileError(
                f"{api}:fail file not exist {path} (not a saved file)", Errno.FILE_NOT_EXIST
            )
        try:
            st = os.stat(path)
        except OSError as exc:
            raise _file_error(api, exc, path) from None
        return SavedFileInfo(os.path.abspath(path), st.st_size, int(st.st_mtime))

    def remove(self, file_path: str) -> None:
        api = "removeSavedFile"
        path = os.fspath(file_path)
        if not self._in_store(path):
            raise FileError(
                f"{api}:fail file not exist {path} (not a saved file)", Errno.FILE_NOT_EXIST
            )
        try:
            os.unlink(path)
        except OSError as exc:
            raise _file_error(api, exc, path) from None
        with contextlib.suppress(OSError):
            _fsync_dir(str(self.root))


def get_file_info(file_path: str, digest_algorithm: str = "md5") -> FileInfo:
    """Size and digest (lowercase hex) of a file, read in 1 MiB blocks."""
    api = "getFileInfo"
    if digest_algorithm not in _DIGESTS:
        raise InvalidArgumentError(
            f"{api}:fail parameter error: digestAlgorithm should be one of {', '.join(_DIGESTS)}",
            Errno.INVALID_ARGUMENT,
        )
    path = os.fspath(file_path)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno_codes.EISDIR, "is a directory", path)
        digest = hashlib.new(digest_algorithm)
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise _file_error(api, exc, path) from None
    return FileInfo(st.st_size, digest.hexdigest())
