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
    "MoveCancelled",
    "SavedFileStore",
    "TempFolder",
    "UploadCheckpoints",
    "default_home",
    "move_into_place",
    "new_file_mode",
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


# ------------------------------------------------------------------ moving a finished file

_BLOCK = 1 << 20
#: errno values of a link or rename that cannot be done here, where a copy can.
_NO_LINK = frozenset(
    {
        errno_codes.EXDEV,
        errno_codes.EPERM,
        errno_codes.ENOTSUP,
        errno_codes.EOPNOTSUPP,
        errno_codes.EMLINK,
        errno_codes.ENOSYS,
    }
)


def _process_umask() -> int:
    """The process's umask, read without changing it where the system allows.

    ``os.umask`` can only read the mask by setting it, for every thread at once: another
    thread creating a file meanwhile would get the wrong permissions. Linux (4.7+) shows it
    in ``/proc/self/status``; elsewhere the set-and-restore is the only way, and it sets
    0o077 for that moment so that such a file is private rather than open to all.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permissions a newly created file gets: 0o666 less the umask (SPEC §5)."""
    return 0o666 & ~_process_umask()


class MoveCancelled(Exception):
    """:func:`move_into_place` stopped because its ``cancel`` event was set; nothing was
    put in place and nothing of the move is left beside the destination."""


def _copy_exclusive(
    src: str, dest: str, cancel: threading.Event | None, *, durable: bool, mode: int
) -> None:
    """Copy ``src`` to ``dest`` created exclusively (fails if ``dest`` exists); no
    ``dest`` is left when it fails or once ``cancel`` is set (:class:`MoveCancelled`)."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb", closefd=False) as fout:
            while block := fin.read(_BLOCK):
                if cancel is not None and cancel.is_set():
                    raise MoveCancelled(dest)
                fout.write(block)
            fout.flush()
            if durable:
                os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(dest)
        raise
    os.close(fd)


def move_into_place(
    src: str,
    dest: str,
    *,
    replace: bool = False,
    mode: int | None = None,
    durable: bool = False,
    cancel: threading.Event | None = None,
) -> None:
    """Move the finished file ``src`` to ``dest``, never overwriting unless ``replace``.

    The one move of the library's saved files and the CLI's downloads. Without
    ``replace`` the new name is made with ``link()`` (atomic, ``FileExistsError`` if
    ``dest`` exists, a symlink included); where no link can be made (another file system,
    no hard links) the file is copied beside ``dest`` first, then linked or created
    exclusively. ``mode``: the permissions ``dest`` gets (set before it has its name;
    None keeps ``src``'s). ``durable``: ``dest`` and its folder are fsynced before it
    returns. :class:`MoveCancelled` when ``cancel`` is set before a copy is in place
    (``src`` is then left as it was).
    """
    linked = True
    if mode is not None:
        try:
            os.chmod(src, mode)  # on src, before the new name: dest never shows src's mode
        except OSError:  # cannot set it here: make a new file instead
            linked = False
    if linked:
        try:
            if replace:
                os.replace(src, dest)
            else:
                os.link(src, dest)
                os.unlink(src)
            if durable:
                _fsync_file_and_folder(dest)
            return
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
    if not replace and os.path.lexists(dest):
        raise FileExistsError(errno_codes.EEXIST, "File exists", dest)
    folder, base = os.path.split(os.path.abspath(dest))
    part = os.path.join(folder, f".{base[:200]}.{secrets.token_hex(4)}.wxpart")
    copy_mode = mode if mode is not None else stat.S_IMODE(os.stat(src).st_mode)
    try:
        _copy_exclusive(src, part, cancel, durable=durable, mode=copy_mode)
        with contextlib.suppress(OSError):  # the umask narrowed os.open's mode
            os.chmod(part, copy_mode)
        if cancel is not None and cancel.is_set():
            raise MoveCancelled(dest)
        if replace:
            os.replace(part, dest)
        else:
            try:
                os.link(part, dest)
            except FileExistsError:
                raise
            except OSError:  # no hard links here: create exclusively and copy again
                _copy_exclusive(part, dest, cancel, durable=durable, mode=copy_mode)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(part)
    if durable:
        _fsync_file_and_folder(dest)
    with contextlib.suppress(OSError):
        os.unlink(src)


def _fsync_file_and_folder(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


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
        now = time.time()
        try:
            os.utime(temp, (now, now))  # the saved file's createTime
            move_into_place(temp, target, durable=True)
        except OSError as exc:
            raise _file_error(api, exc, target) from exc
        return target

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
