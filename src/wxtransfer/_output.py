"""A download's file: a part file beside the target (or in the temp folder), renamed into
place once complete, removed on failure.

The file-system calls run on one writer thread per runtime, not on the engine thread: the
create / write / rename of a file then overlaps with the network work of the transfers
around it, and a slow disk never stalls the network loop. Jobs run in the order they are
given, so each file is opened, written, then finished or removed in order. The bytes handed
over and not yet written are bounded: memory stays flat whatever the file size.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: no lock on a kept part
    fcntl = None  # type: ignore[assignment]

from ._digest import Check
from ._errors import ChecksumError, Errno, FileError
from ._events import hold_wakeups, release_wakeups

__all__ = ["KeptPart", "Output", "Writer", "load_checkpoint", "save_error"]

logger = logging.getLogger("wxtransfer")

Chunk = bytes | memoryview

_BATCH = 1 << 20  # bytes gathered on the engine thread before one writev on the writer
# Big bodies are copied into reused buffers of _BATCH bytes: pycurl's 16 KiB chunks are then
# freed at once where they were made. Held for a batch and freed in bulk on the writer, they
# made malloc give the pages back and fault them in again: a third of D1's time.
_BATCH_CHUNKS = 512  # and at most this many chunks (writev takes up to IOV_MAX = 1024)
_MAX_QUEUED = 8 << 20  # bytes handed to the writer and not yet written
_PART_NAMES = itertools.count(1)
_SMALL_BODY = 256 << 10  # announced sizes up to this are written in one job at the end
_SMALL_WRITE = 64 << 10  # finished downloads wait no longer than writes up to this size
_JOBS_PER_RELEASE = 8  # and than this many jobs
_CHECK_SPACE_MIN = 1 << 20  # announced sizes from which the free space is checked first

Job = Callable[[], None]

PART_SUFFIX = ".wxpart"  # a resumable download's bytes: <file_path>.wxpart
CHECKPOINT_SUFFIX = ".wxpart.json"  # and what they are: URL, validator, complete length

_pid = os.getpid()  # in part names; asked once, not with a system call per file


def _new_pid() -> None:
    """A forked child names its part files with its own pid."""
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_pid)


class KeptPart(NamedTuple):
    """A resumable download's part file: kept when it fails or is aborted (a pause),
    continued from ``held`` bytes, described by a checkpoint (``record``: written anew
    when not None)."""

    target: str
    held: int = 0
    record: dict[str, Any] | None = None

    @property
    def path(self) -> str:
        return self.target + PART_SUFFIX

    @property
    def checkpoint(self) -> str:
        return self.target + CHECKPOINT_SUFFIX


def load_checkpoint(target: str, url: str) -> tuple[int, str, int] | None:
    """What ``<target>.wxpart`` holds of ``url``, as (bytes, validator, complete length),
    when its checkpoint says it is that URL's with a validator; else None (start over).

    The bytes are the part file's size (at most the length): a process killed after its
    last checkpoint still wrote only bytes of the version the checkpoint names.
    """
    kept = KeptPart(target)
    try:
        with open(kept.checkpoint, encoding="utf-8") as f:
            record = json.load(f)
        size = os.stat(kept.path).st_size
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("url") != url:
        return None
    validator, total = record.get("validator"), record.get("total")
    if not isinstance(validator, str) or not isinstance(total, int) or total <= 0:
        return None
    held = min(size, total)
    return (held, validator, total) if held else None


def save_error(exc: OSError, path: str) -> FileError:
    """The platform's error for a download that cannot be saved; ``exc`` is its cause."""
    if isinstance(exc, PermissionError):
        error = FileError(
            f"downloadFile:fail permission denied can not open file {path}",
            Errno.PERMISSION_DENIED,
        )
    else:
        reason = exc.strerror or str(exc)
        error = FileError(
            f"downloadFile:fail download save file error: {reason}", Errno.SAVE_FILE_ERROR
        )
    error.__cause__ = exc
    return error


def _free_bytes(fd: int) -> int | None:
    """Bytes the file system of ``fd`` can still take (root may use the reserved ones), or
    None where it cannot say."""
    try:
        st = os.fstatvfs(fd)
    except (OSError, AttributeError):
        return None
    blocks = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize


class Buffers:
    """Buffers of ``_BATCH`` bytes, reused; at most ``keep`` are kept for the next taker."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(_BATCH)

    def give(self, buffer: bytearray) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buffer)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


class Writer:
    """One thread that runs file jobs in order; started on first use.

    The thread that calls ``hold()`` (the engine's) has its jobs held until its next
    ``flush()``: it flushes before it blocks or calls into libcurl, so the writer is woken
    once for the files a pass of the engine ends rather than once per file.
    """

    def __init__(self, name: str = "wxtransfer-files", max_queued: int = _MAX_QUEUED) -> None:
        self.buffers = Buffers(keep=max_queued // _BATCH + 2)
        self._name = name
        self._max_queued = max_queued
        self._queue: queue.SimpleQueue[tuple[Job, int] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._queued = 0
        self._waiting = 0  # submitters waiting for room
        self._holder: int | None = None  # the thread whose jobs wait for its flush()
        self._held: list[tuple[Job, int]] = []
        self._thread: threading.Thread | None = None

    def hold(self) -> None:
        """From now on, hold this thread's jobs until its ``flush()``."""
        self._holder = threading.get_ident()

    def flush(self) -> None:
        """Hand the held jobs to the writer thread (on the holding thread)."""
        held = self._held
        if held:
            self._held = []
            put = self._queue.put
            for item in held:
                put(item)

    def submit(self, job: Job, size: int = 0) -> None:
        """Queue ``job``; with ``size`` bytes to write, first wait until they fit the bound."""
        with self._lock:
            if size:
                while self._queued and self._queued + size > self._max_queued:
                    self.flush()  # what is held counts in the bound: let it go first
                    self._waiting += 1
                    try:
                        self._room.wait()
                    finally:
                        self._waiting -= 1
                self._queued += size
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        if self._holder == threading.get_ident():
            self._held.append((job, size))
        else:
            self._queue.put((job, size))

    def close(self, timeout: float | None = None) -> None:
        """Run what is queued, then stop the thread."""
        self.flush()
        with self._lock:
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
        self.buffers.clear()

    def _run(self) -> None:
        hold_wakeups()  # downloads end here: their callers are woken as _run_jobs says
        try:
            self._run_jobs()
        finally:
            release_wakeups()

    def _run_jobs(self) -> None:
        jobs = self._queue
        since_release = 0
        while True:
            try:
                item = jobs.get_nowait()
            except queue.Empty:
                release_wakeups()
                since_release = 0
                item = jobs.get()
            if item is None:
                return
            job, size = item
            since_release += 1
            # Wake who is done before a long write, and after a few short jobs at most.
            if size > _SMALL_WRITE or since_release > _JOBS_PER_RELEASE:
                release_wakeups()
                since_release = 0
            try:
                job()
            except Exception:  # pragma: no cover - a bug; the job's own errors are reported
                logger.exception("wxtransfer file job failed")
            if size:
                with self._lock:
                    self._queued -= size
                    if self._waiting:
                        self._room.notify_all()


class Output:
    """The file of one download.

    The engine thread calls ``start``, ``write``, then ``finish`` or ``discard``; the work
    itself runs on the writer. A small body's file is made, written and renamed in one
    job at the end. ``error`` is set there when the file cannot be made or written.
    """

    __slots__ = (
        "_buffer",
        "_chunks",
        "_hashers",
        "_opened",
        "_prefix",
        "_size",
        "_view",
        "_writer",
        "error",
        "expected",
        "fd",
        "kept",
        "path",
        "target",
        "temp_dir",
        "written",
    )

    def __init__(
        self,
        writer: Writer,
        target: str | None,
        temp_dir: Callable[[], str],
        expected: int = 0,
        kept: KeptPart | None = None,
    ) -> None:
        self._writer = writer
        self.kept = kept  # a resumable download's part, kept on failure
        self.target = target
        self.temp_dir = temp_dir
        self.expected = expected  # the announced size; 0: unknown
        self.written = 0  # bytes the writer wrote
        self.fd = -1
        self.path: str | None = None
        self.error: FileError | None = None
        self._chunks: list[Chunk] = []  # a small body's bytes, as pycurl gave them
        self._buffer: bytearray | None = None  # or a big body's, copied into a buffer
        self._view: memoryview | None = None
        self._size = 0
        self._opened = False  # the part file's creation was handed to the writer
        self._hashers: dict[str, Any] = {}  # algorithm -> hash of the bytes written
        self._prefix = 0  # bytes the part held when it was opened, not yet hashed

    # ---- engine thread ---------------------------------------------------------------

    def start(self) -> None:
        """Make the part file now, unless the body is announced small: then it is made,
        written and renamed in one job at the end."""
        if self.kept is not None or not 0 < self.expected <= _SMALL_BODY:
            self._opened = True
            self._writer.submit(self._open)

    def write(self, data: bytes) -> FileError | None:
        """Hand ``data`` over (in batches); the error of an earlier write, if any."""
        if self.error is not None:
            return self.error
        size, view = self._size, self._view
        if view is None and 0 < self.expected <= _SMALL_BODY:  # small: kept as it came
            self._chunks.append(data)
            self._size = size + len(data)
            if self._size >= _BATCH or len(self._chunks) >= _BATCH_CHUNKS:
                self._hand_over()
            return None
        end = size + len(data)
        if view is None or end > _BATCH:
            if size:
                self._hand_over()
            if len(data) > _BATCH:  # never from libcurl (16 KiB at most): as it came
                self._chunks.append(data)
                self._size = len(data)
                self._hand_over()
                return None
            self._buffer = self._writer.buffers.take()
            view = self._view = memoryview(self._buffer)
            size, end = 0, len(data)
        view[size:end] = data
        self._size = end
        if end == _BATCH:
            self._hand_over()
        return None

    def _take_pending(self) -> tuple[list[Chunk], int, bytearray | None]:
        """The bytes not yet handed over, their size and their buffer; none left here."""
        size, buffer, view = self._size, self._buffer, self._view
        chunks: list[Chunk] = [view[:size]] if view is not None and size else self._chunks
        self._chunks, self._size, self._buffer, self._view = [], 0, None, None
        return chunks, size, buffer

    def _hand_over(self, work: Callable[[list[Chunk]], object] | None = None) -> None:
        """One writer job for the bytes not yet handed over: make the file if it is not
        made yet, run ``work`` on them (write them, unless told otherwise), then give their
        buffer back."""
        chunks, size, buffer = self._take_pending()
        opened, self._opened = self._opened, True
        release = self._writer.buffers.give
        run = work or self._write

        def job() -> None:
            try:
                if not opened:
                    self._open()
                run(chunks)
            finally:
                if buffer is not None:
                    chunks.clear()
                    release(buffer)

        self._writer.submit(job, size)

    def _drop_pending(self) -> None:
        buffer = self._take_pending()[2]
        if buffer is not None:
            self._writer.buffers.give(buffer)

    def finish(
        self,
        final: str,
        then: Callable[[FileError | None], object],
        checks: Sequence[Check] = (),
    ) -> None:
        """Write the rest, check the digests, close, rename to ``final``; then
        ``then(None)`` or its error (a mismatch removes the file: it never takes the name).

        A body smaller than a batch is one job: create, write, close, rename.
        """
        self._hand_over(lambda chunks: self._finish(chunks, final, then, checks))

    def hash_with(self, algorithms: Iterable[str]) -> None:
        """Hash the bytes written from here on (the file's, since it is empty or just
        started over) with ``algorithms``; on the writer, in order with the writes."""
        names = tuple(algorithms)
        self._writer.submit(lambda: self._set_hashers(names))

    def restart(self, expected: int, record: dict[str, Any] | None = None) -> None:
        """Start the file over, empty, for a new response of ``expected`` bytes (a retry
        that could not continue): bytes of two responses are never joined. A kept part
        gets ``record`` as its new checkpoint."""
        self._drop_pending()
        self.expected = expected
        if self._opened:
            self._writer.submit(lambda: self._truncate(record))

    def close_kept(self) -> None:
        """Let go of a kept part, with what it was handed (another response goes
        elsewhere)."""
        self._keep_pending(lambda: None)

    def discard(self, then: Callable[[], object]) -> None:
        """Remove the part file, if one was made; then ``then()``. A kept part is kept,
        with every byte it was handed, for a later resume."""
        if self.kept is not None:
            self._keep_pending(then)
            return
        self._drop_pending()
        if self._opened:
            self._writer.submit(lambda: self._discard(then))
        else:  # nothing on disk yet
            then()

    def _keep_pending(self, then: Callable[[], object]) -> None:
        def keep(chunks: list[Chunk]) -> None:
            if chunks:
                self._write(chunks)
            self._close()
            then()

        self._hand_over(keep)

    # ---- writer thread ---------------------------------------------------------------

    def _open(self) -> None:
        if self.kept is not None:
            self._open_kept(self.kept)
            return
        target = self.target
        if target is not None:
            folder, base = os.path.split(target)
            prefix, suffix, mode = os.path.join(folder, f".{base}."), PART_SUFFIX, 0o666
        else:
            try:
                folder = self.temp_dir()
            except OSError as exc:
                self.error = save_error(exc, "temp folder")
                return
            prefix, suffix, mode = os.path.join(folder, "."), ".part", 0o600
        for _ in range(100):
            # A name of our own (pid and a counter); O_EXCL makes sure it is new.
            name = f"{prefix}{_pid}-{next(_PART_NAMES)}{suffix}"
            try:
                self.fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            except FileExistsError:
                continue
            except OSError as exc:
                self.error = save_error(exc, target or "temp folder")
                return
            self.path = name
            self._reserve()
            return
        self.error = save_error(FileExistsError(17, "no free part file name"), prefix)

    def _open_kept(self, kept: KeptPart) -> None:
        """Open ``<target>.wxpart``: at its end when it is continued, else emptied; write
        its checkpoint first, so the part never holds bytes the checkpoint does not name.
        The part is locked while it is written: a second download of the same file with
        ``resume`` fails rather than join its bytes to the first's."""
        try:
            self.fd = os.open(kept.path, os.O_WRONLY | os.O_CREAT, 0o666)
        except OSError as exc:
            self.error = save_error(exc, kept.target)
            return
        try:
            if fcntl is not None:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = -1
            self.error = FileError(
                f"downloadFile:fail download save file error: another download is writing "
                f"{kept.path}",
                Errno.SAVE_FILE_ERROR,
            )
            return
        try:
            if kept.record is not None:
                _write_checkpoint(kept)
            os.ftruncate(self.fd, kept.held)
            os.lseek(self.fd, kept.held, os.SEEK_SET)
        except OSError as exc:
            self.error = save_error(exc, kept.target)
            return
        self.path = kept.path
        self.written = self._prefix = kept.held
        if not kept.held:
            self._reserve()

    def _reserve(self) -> None:
        """Fail a big file at once when the disk cannot hold it, before its body is fetched.
        Its blocks are not reserved (fallocate): writing into reserved blocks cost ext4 a
        quarter of D1's time, and a killed process's part would look complete."""
        if self.expected < _CHECK_SPACE_MIN:
            return
        free = _free_bytes(self.fd)
        if free is not None and free < self.expected:
            code = errno.ENOSPC
            self.error = save_error(OSError(code, os.strerror(code)), self.target or "temp folder")

    def _write(self, chunks: list[Chunk]) -> None:
        if self.error is not None or self.fd < 0:
            return
        try:
            for hasher in self._hashers.values():
                for chunk in chunks:
                    hasher.update(chunk)  # lets go of the GIL for big chunks
            done = os.writev(self.fd, chunks)
            total = sum(map(len, chunks))
            if done < total:  # a short write: go on with the rest, chunk by chunk
                rest = b"".join(chunks)[done:]
                while rest:
                    rest = rest[os.write(self.fd, rest) :]
            self.written += total
        except OSError as exc:
            self.error = save_error(exc, self.target or self.path or "temp folder")

    def _finish(
        self,
        chunks: list[Chunk],
        final: str,
        then: Callable[[FileError | None], object],
        checks: Sequence[Check],
    ) -> None:
        if chunks:
            self._write(chunks)
        error = self.error
        if error is None:
            error = self._verify(checks)
        if error is None:
            fd, self.fd = self.fd, -1
            try:
                os.close(fd)
                assert self.path is not None
                os.replace(self.path, final)
                self.path = None
                if self.kept is not None:  # whole: the checkpoint has served
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.kept.checkpoint)
            except OSError as exc:
                error = save_error(exc, self.target or "temp folder")
        if error is not None:
            if self.kept is not None and not isinstance(error, ChecksumError):
                self._close()  # kept for a later resume
            else:
                self._remove()
        then(error)

    def _set_hashers(self, names: tuple[str, ...]) -> None:
        self._hashers = {name: hashlib.new(name) for name in names}
        if self._prefix and self.path is not None:  # a continued part: its bytes first
            try:
                with open(self.path, "rb") as f:
                    left = self._prefix
                    while left and (block := f.read(min(left, 1 << 20))):
                        left -= len(block)
                        for hasher in self._hashers.values():
                            hasher.update(block)
            except OSError as exc:
                self.error = save_error(exc, self.target or self.path)

    def _truncate(self, record: dict[str, Any] | None = None) -> None:
        for name in self._hashers:
            self._hashers[name] = hashlib.new(name)
        self._prefix = 0
        if self.error is not None or self.fd < 0:
            return
        try:
            if self.kept is not None and record is not None:
                _write_checkpoint(self.kept._replace(record=record))
            os.ftruncate(self.fd, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)
            self.written = 0
        except OSError as exc:
            self.error = save_error(exc, self.target or self.path or "temp folder")

    def _close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        self.path = None

    def _verify(self, checks: Sequence[Check]) -> FileError | None:
        """A ChecksumError for the first digest the bytes written do not match."""
        for algorithm, expected, source in checks:
            hasher = self._hashers.get(algorithm)
            if hasher is None:  # pragma: no cover - hash_with named every checked one
                continue
            got = hasher.hexdigest()
            if got != expected:
                where = "" if source == "checksum" else f" (the server's {source})"
                return ChecksumError(
                    f"downloadFile:fail checksum mismatch: expected {algorithm}:{expected}"
                    f"{where}, got {algorithm}:{got}",
                    Errno.CHECKSUM_MISMATCH,
                )
        return None

    def _discard(self, then: Callable[[], object]) -> None:
        if self.kept is not None:
            self._close()  # a failure or an abort with resume: the bytes wait for later
        else:
            self._remove()
        then()

    def _remove(self) -> None:
        if self.kept is not None:  # not even a resumable part stays (a checksum mismatch)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.kept.checkpoint)
        path = self.path
        self._close()
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _write_checkpoint(kept: KeptPart) -> None:
    """Write ``kept.record`` beside the part, whole or not at all (a rename)."""
    staging = kept.checkpoint + ".new"
    with open(staging, "w", encoding="utf-8") as f:
        json.dump(kept.record, f)
    os.replace(staging, kept.checkpoint)
