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
import json
import logging
import os
import secrets
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path

import platformdirs

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: no lock, no sweep
    fcntl = None  # type: ignore[assignment]

from ._errors import Errno, FileError, InvalidArgumentError
from ._results import FileInfo, SavedFileInfo

__all__ = [
    "SavedFileStore",
    "TempFolder",
    "UploadCheckpoints",
    "default_home",
    "remove_upload_checkpoint",
    "save_upload_checkpoint",
    "sweep_abandoned",
]

logger = logging.getLogger("wxtransfer")

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


_TEMP_PREFIX = "wxtransfer-"
_LOCK_NAME = ".lock"  # held (flock) by the process that owns the folder, while it runs
_swept: set[str] = set()  # parents already swept by this process
_swept_lock = threading.Lock()


def _hold_lock(folder: str) -> int:
    """Create ``folder``'s lock file already locked, and return its descriptor.

    The lock is taken under another name, then renamed into place: a sweeper never sees
    ``.lock`` unlocked while its owner is alive.
    """
    staging = os.path.join(folder, _LOCK_NAME + ".new")
    fd = os.open(staging, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(staging, os.path.join(folder, _LOCK_NAME))
    except BaseException:
        os.close(fd)
        raise
    return fd


def sweep_abandoned(parent: str) -> list[str]:
    """Remove the temp folders in ``parent`` whose process no longer runs; return them.

    A folder belongs to a live process while that process holds the flock on its lock
    file (a lock dies with its process, so a reused PID cannot fool it). Folders without
    a lock file (being made, or made by another program) are left alone.
    """
    removed: list[str] = []
    if fcntl is None:
        return removed
    uid = os.geteuid()
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(_TEMP_PREFIX):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != uid:
                continue
            fd = os.open(
                os.path.join(entry.path, _LOCK_NAME), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            )
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its process runs
            os.close(fd)
            continue
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
        finally:
            os.close(fd)
    return removed


class TempFolder:
    """One owner-only folder of temp files, made on first use.

    The process holds a lock on it while it runs, so that the folders dead processes left
    (SIGKILL, SIGTERM, power loss) can be told apart and removed (``sweep_parent``).
    """

    def __init__(self, parent: str | None = None) -> None:
        self._parent = parent
        self._path: str | None = None
        self._lock_fd = -1
        self._lock = threading.Lock()

    def path(self) -> str:
        with self._lock:
            if self._path is None:
                if self._parent is not None:
                    os.makedirs(self._parent, exist_ok=True)
                parent = self._parent if self._parent is not None else tempfile.gettempdir()
                path = tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=parent)
                if fcntl is not None:
                    try:
                        self._lock_fd = _hold_lock(path)
                    except OSError:
                        shutil.rmtree(path, ignore_errors=True)
                        raise
                self._path = path
            return self._path

    def sweep_parent(self) -> None:
        """Remove what dead processes left in the parent folder; once per process and
        spelling of the folder (no system call for a runtime made after the first: a
        second spelling of one folder only sweeps it twice, which is harmless)."""
        parent = self._parent if self._parent is not None else tempfile.gettempdir()
        with _swept_lock:
            if parent in _swept:
                return
            _swept.add(parent)
        removed = sweep_abandoned(parent)
        if removed:
            logger.info("removed %d temp folder(s) of processes that ended", len(removed))

    def forked(self) -> TempFolder:
        """This folder as a forked child sees it: the parent's; the child makes its own.

        The child lets go of its copy of the lock descriptor (the parent's lock stays).
        """
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # close, never unlock: the lock is the parent's
            self._lock_fd = -1
        self._path = None
        return TempFolder(self._parent)

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
            lock_fd, self._lock_fd = self._lock_fd, -1
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        if lock_fd >= 0:
            os.close(lock_fd)


class SavedFileStore:
    """The persistent folder that ``save_file`` moves temp files into."""

    def __init__(self, root: Path, temp: TempFolder, quota_bytes: int | None = None) -> None:
        self.root = root
        self._temp = temp
        self.quota_bytes = quota_bytes

    def adopt_temp(self, temp: TempFolder) -> None:
        """Save from ``temp`` from now on (a forked child's own folder)."""
        self._temp = temp

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
            raise _file_error(api, exc, target) from exc
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
            dst = open(part, "xb")  # closed by the with below
            try:
                with open(source, "rb") as src, dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                    dst.flush()
                    os.fsync(dst.fileno())
                os.link(part, target)
            finally:  # copied and linked, or failed (a full disk): the part goes either way
                with contextlib.suppress(FileNotFoundError):
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
            raise _file_error(api, exc, path) from exc
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
            raise _file_error(api, exc, path) from exc
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
        raise _file_error(api, exc, path) from exc
    return FileInfo(st.st_size, digest.hexdigest())


# ------------------------------------------------------------------ resumable uploads' URLs


class UploadCheckpoints:
    """Where resumable uploads keep their upload URLs (SPEC §9): ``<home>/resumable/``,
    one JSON file per endpoint and file path, with the file's size and mtime; they are
    not saved files (not listed, not counted in the quota)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, endpoint: str, file_path: str) -> str:
        key = hashlib.sha256(f"{endpoint}\0{file_path}".encode()).hexdigest()[:32]
        return str(self.root / f"{key}.json")

    @staticmethod
    def load(
        checkpoint: str, endpoint: str, file_path: str, size: int, mtime_ns: int
    ) -> str | None:
        """The upload URL kept for this very file (same size and mtime), else None."""
        try:
            with open(checkpoint, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("version") != 1:
            return None
        url = record.get("upload_url")
        same = (
            record.get("endpoint"),
            record.get("path"),
            record.get("size"),
            record.get("mtime_ns"),
        )
        if same != (endpoint, file_path, size, mtime_ns) or not isinstance(url, str):
            return None
        return url


def save_upload_checkpoint(checkpoint: str, record: dict[str, object]) -> None:
    """Write ``record`` whole or not at all (a rename); its folder made if need be."""
    folder = os.path.dirname(checkpoint)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    staging = f"{checkpoint}.{os.getpid()}.new"
    with open(staging, "w", encoding="utf-8") as f:
        json.dump({"version": 1, **record}, f)
    os.replace(staging, checkpoint)


def remove_upload_checkpoint(checkpoint: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(checkpoint)
