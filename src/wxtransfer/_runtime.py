"""The runtime: configuration, the engine and dispatcher it owns, and the calls users make.

Module-level functions use a default runtime made on first use. At interpreter exit every
runtime waits for its tasks to finish and their callbacks to run (as Node.js would), then
closes: its temp files are removed.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pycurl

from . import _files
from ._dispatch import Dispatcher, LoopDispatcher, ThreadDispatcher
from ._engine import Engine
from ._errors import AbortError, Errno, TransferError
from ._options import (
    Api,
    Request,
    check_callbacks,
    validate_download,
    validate_resumable,
    validate_upload,
)
from ._output import load_checkpoint
from ._results import FileInfo, SavedFileInfo
from ._retry import Retry, as_retry
from ._rules import WeChatRules
from ._task import DownloadTask, Task, UploadTask
from ._transport import TransportConfig

__all__ = [
    "Runtime",
    "before_start",
    "default_runtime",
    "default_user_agent",
    "package_version",
    "set_default_runtime",
]


@functools.cache
def package_version() -> str:
    """The installed distribution's version (pyproject's ``version``, the one place it is
    written); ``0+unknown`` for a source tree that is not installed.

    Read when first asked for, not at import: ``importlib.metadata`` costs a ``wxtransfer``
    command a quarter of its start-up.
    """
    import importlib.metadata

    try:
        return importlib.metadata.version("wxtransfer")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def default_user_agent() -> str:
    """The ``User-Agent`` every transfer sends unless its headers name another."""
    return f"wxtransfer/{package_version()} libcurl/{pycurl.version_info()[1]}"


DEFAULT_TIMEOUT_MS = 60000
DEFAULT_CONCURRENCY = 10
_SYSTEM_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)


def _require_int(what: str, value: object, minimum: int, unit: str) -> None:
    """A runtime setting is a whole number of ``unit``, at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} should be {unit} >= {minimum}, not {value!r}")


def _system_ca_bundle() -> str | None:
    for path in _SYSTEM_CA_BUNDLES:
        if os.path.isfile(path):
            return path
    try:
        import certifi  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return str(certifi.where())


_T = TypeVar("_T", UploadTask, DownloadTask)

_BEFORE_START: contextvars.ContextVar[Callable[[Task[Any, Any]], object] | None] = (
    contextvars.ContextVar("wxtransfer_before_start", default=None)
)


@contextlib.contextmanager
def before_start(prepare: Callable[[Task[Any, Any]], object]) -> Iterator[None]:
    """Within the block, each call's task is handed to ``prepare`` before it is started:
    the CLI attaches its listeners there, so that no event (a retry is not replayed) can
    come before them."""
    token = _BEFORE_START.set(prepare)
    try:
        yield
    finally:
        _BEFORE_START.reset(token)


class Runtime:
    """A configured runtime: timeouts, concurrency limits, temp and saved-file folders.

    ``network_timeout`` takes app.json's ``networkTimeout`` keys (``uploadFile``,
    ``downloadFile``) in milliseconds; ``resolve`` maps host names to addresses like curl's
    ``--resolve`` (a value with a port, ``"127.0.0.1:8443"``, also redirects the port, like
    ``--connect-to``); ``ca_file`` adds a CA bundle to the system's trusted ones.
    ``rules=WeChatRules(...)`` applies the platform's network rules (docs/rules.md).
    ``default_stall_timeout`` (ms) is the ``stall_timeout`` of calls that give none;
    ``max_download_speed`` / ``max_upload_speed`` (bytes per second) cap the sum of the
    runtime's transfers in each direction; ``default_retry`` (an int or a ``Retry``) is the
    ``retry`` of calls that give none.
    Closing a runtime (``close()`` or leaving its ``with`` block) aborts what still runs.
    """

    def __init__(
        self,
        *,
        network_timeout: Mapping[str, int] | None = None,
        max_concurrent_uploads: int = DEFAULT_CONCURRENCY,
        max_concurrent_downloads: int = DEFAULT_CONCURRENCY,
        temp_dir: str | os.PathLike[str] | None = None,
        home: str | os.PathLike[str] | None = None,
        resolve: Mapping[str, str] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        rules: WeChatRules | None = None,
        default_stall_timeout: int | None = None,
        max_download_speed: int | None = None,
        max_upload_speed: int | None = None,
        default_retry: int | Retry | None = None,
    ) -> None:
        if rules is not None and not isinstance(rules, WeChatRules):
            raise ValueError(f"rules should be a WeChatRules, not {type(rules).__name__}")
        # Under rules, their networkTimeout is the default; network_timeout= still wins.
        timeouts = {**(rules.timeouts if rules else {}), **(network_timeout or {})}
        unknown = set(timeouts) - {"uploadFile", "downloadFile", "request", "connectSocket"}
        if unknown:
            raise ValueError(f"network_timeout has unknown keys {sorted(unknown)}")
        for key, value in timeouts.items():
            _require_int(f"network_timeout[{key!r}]", value, 0, "milliseconds")
        _require_int("max_concurrent_uploads", max_concurrent_uploads, 1, "an int")
        _require_int("max_concurrent_downloads", max_concurrent_downloads, 1, "an int")
        for what, optional, unit in (
            ("default_stall_timeout", default_stall_timeout, "milliseconds"),
            ("max_upload_speed", max_upload_speed, "bytes per second"),
            ("max_download_speed", max_download_speed, "bytes per second"),
        ):
            if optional is not None:
                _require_int(what, optional, 0, unit)
        self._stall_timeout_ms = default_stall_timeout or 0
        self._retry = as_retry(default_retry)
        self._speed_caps: dict[Api, int] = {
            "uploadFile": max_upload_speed or 0,
            "downloadFile": max_download_speed or 0,
        }
        if ca_file is not None and not os.path.isfile(ca_file):
            raise ValueError(f"ca_file {os.fspath(ca_file)!r} is not a file")
        self._timeouts: dict[Api, int] = {
            "uploadFile": timeouts.get("uploadFile", DEFAULT_TIMEOUT_MS),
            "downloadFile": timeouts.get("downloadFile", DEFAULT_TIMEOUT_MS),
        }
        self._limits: dict[Api, int] = {
            "uploadFile": max_concurrent_uploads,
            "downloadFile": max_concurrent_downloads,
        }
        self._rules = rules
        if rules is not None:  # the platform runs at most max_concurrent per API
            for api in self._limits:
                self._limits[api] = min(self._limits[api], rules.max_concurrent)
        self._resolve = {k.lower(): v for k, v in (resolve or {}).items()}
        self._ca_file = os.fspath(ca_file) if ca_file is not None else None
        self._temp = _files.TempFolder(os.fspath(temp_dir) if temp_dir is not None else None)
        self._temp.sweep_parent()  # the first runtime of a process removes what the dead left
        home_path = Path(home) if home is not None else _files.default_home()
        self._store = _files.SavedFileStore(home_path / "saved_files", self._temp)
        self._checkpoints = _files.UploadCheckpoints(home_path / "resumable")
        if rules is not None:
            self._store.quota_bytes = rules.saved_quota_bytes
        self._dispatcher = ThreadDispatcher()
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._tasks: set[Task[Any, Any]] = set()
        _live_runtimes.add(self)

    # ---- transfers -------------------------------------------------------------------

    def upload_file(
        self,
        url: str,
        file_path: str | os.PathLike[str] | None = None,
        name: str | None = None,
        *,
        files: Sequence[tuple[str, str | os.PathLike[str]]] | None = None,
        header: Mapping[str, str] | None = None,
        form_data: Mapping[str, str | int | float | bool] | None = None,
        timeout: int | float | None = None,
        success: Callable[[Any], object] | None = None,
        fail: Callable[[TransferError], object] | None = None,
        complete: Callable[[Any], object] | None = None,
        enable_http2: bool = False,
        enable_quic: bool = False,
        enable_profile: bool = True,
        stall_timeout: int | float | None = None,
        max_speed: int | None = None,
        retry: int | Retry | None = None,
        connect_timeout: int | float | None = None,
        max_redirects: int | None = None,
    ) -> UploadTask:
        """POST ``file_path`` as multipart/form-data field ``name`` (or every file of
        ``files``, ``(name, file_path)`` pairs, in order, after ``form_data``); returns at
        once.

        ``timeout`` is in milliseconds (0: no limit); ``stall_timeout`` (ms) fails the
        transfer once no byte has moved either way for that long (0: off; None: the
        runtime's ``default_stall_timeout``); ``max_speed`` caps it in bytes per second;
        ``retry`` (an int or a ``Retry``; 0: none; None: the runtime's ``default_retry``)
        tries it again after a failure worth it. Never raises: every failure reaches
        ``fail`` and ``task.result()``.
        """
        return self._launch(
            UploadTask,
            "uploadFile",
            (success, fail, complete),
            lambda: validate_upload(
                url,
                file_path,
                name,
                files=files,
                header=header,
                form_data=form_data,
                timeout=timeout,
                enable_http2=enable_http2,
                enable_quic=enable_quic,
                enable_profile=enable_profile,
                stall_timeout=stall_timeout,
                max_speed=max_speed,
                retry=retry,
                connect_timeout=connect_timeout,
                max_redirects=max_redirects,
            ),
        )

    def upload_resumable(
        self,
        url: str,
        file_path: str | os.PathLike[str],
        *,
        metadata: Mapping[str, str] | None = None,
        chunk_size: int | None = None,
        header: Mapping[str, str] | None = None,
        timeout: int | float | None = None,
        retry: int | Retry | None = None,
        stall_timeout: int | float | None = None,
        success: Callable[[Any], object] | None = None,
        fail: Callable[[TransferError], object] | None = None,
        complete: Callable[[Any], object] | None = None,
        max_speed: int | None = None,
        connect_timeout: int | float | None = None,
    ) -> UploadTask:
        """Upload ``file_path`` to the tus 1.0 endpoint ``url``, resumably; returns at once.

        The upload URL is kept under ``<home>/resumable/`` until the upload completes, so
        a call for the same file after a crash, a failure or ``abort()`` continues from the
        server's offset (a file that changed starts a new upload). ``metadata`` goes in
        ``Upload-Metadata`` (``filename`` is the file's name unless given); ``chunk_size``
        bytes per PATCH (None: the rest in one). ``retry`` continues from the server's
        offset. The result's ``data`` is the upload's URL. Never raises.
        """
        return self._launch(
            UploadTask,
            "uploadFile",
            (success, fail, complete),
            lambda: validate_resumable(
                url,
                file_path,
                metadata=metadata,
                chunk_size=chunk_size,
                header=header,
                timeout=timeout,
                retry=retry,
                stall_timeout=stall_timeout,
                max_speed=max_speed,
                connect_timeout=connect_timeout,
            ),
        )

    def download_file(
        self,
        url: str,
        *,
        header: Mapping[str, str] | None = None,
        file_path: str | os.PathLike[str] | None = None,
        timeout: int | float | None = None,
        success: Callable[[Any], object] | None = None,
        fail: Callable[[TransferError], object] | None = None,
        complete: Callable[[Any], object] | None = None,
        enable_http2: bool = False,
        enable_quic: bool = False,
        enable_profile: bool = True,
        stall_timeout: int | float | None = None,
        max_speed: int | None = None,
        retry: int | Retry | None = None,
        connect_timeout: int | float | None = None,
        checksum: str | None = None,
        resume: bool = False,
        max_redirects: int | None = None,
        compressed: bool = False,
    ) -> DownloadTask:
        """GET ``url`` into a temp file, or into ``file_path`` once complete; returns at once.

        ``timeout`` is in milliseconds (0: no limit); ``stall_timeout`` (ms) fails the
        transfer once no byte has moved either way for that long (0: off; None: the
        runtime's ``default_stall_timeout``); ``max_speed`` caps it in bytes per second;
        ``retry`` (an int or a ``Retry``; 0: none; None: the runtime's ``default_retry``)
        tries it again after a failure worth it; ``checksum`` (``"sha256:<hex>"``; md5, sha1,
        sha256, sha512) is checked before the file takes its name; with ``resume`` (and a
        ``file_path``) a failed or aborted download keeps its bytes in
        ``<file_path>.wxpart`` and a later one of the same URL continues them;
        ``max_redirects`` (default 10) bounds the redirects followed; ``compressed`` asks
        for gzip, br, zstd or deflate and writes the decoded bytes. Never raises: every
        failure reaches ``fail`` and ``task.result()``.
        """
        return self._launch(
            DownloadTask,
            "downloadFile",
            (success, fail, complete),
            lambda: validate_download(
                url,
                header=header,
                file_path=file_path,
                timeout=timeout,
                enable_http2=enable_http2,
                enable_quic=enable_quic,
                enable_profile=enable_profile,
                stall_timeout=stall_timeout,
                max_speed=max_speed,
                retry=retry,
                connect_timeout=connect_timeout,
                checksum=checksum,
                resume=resume,
                max_redirects=max_redirects,
                compressed=compressed,
            ),
        )

    def _launch(
        self,
        kind: type[_T],
        api: Api,
        callbacks: tuple[Any, Any, Any],
        validate: Callable[[], Request],
    ) -> _T:
        """A task for the call, checked (``validate``) then started; a bad call fails its
        task, which is returned either way: the call never raises."""
        success, fail, complete = callbacks
        task = kind(
            api,
            self._dispatcher_for_caller(),
            success=success if callable(success) else None,
            fail=fail if callable(fail) else None,
            complete=complete if callable(complete) else None,
        )
        prepare = _BEFORE_START.get()
        if prepare is not None:
            prepare(task)
        try:
            check_callbacks(api, success, fail, complete)
            request = validate()
        except TransferError as exc:
            task._report_done(exc)
            return task
        self._start(task, request)
        return task

    def _start(self, task: Task[Any, Any], request: Request) -> None:
        """Apply the rules to a checked call, then hand it to the engine; or fail the task."""
        if self._rules is not None:  # refused here: nothing is sent
            try:
                self._rules.admit(request)
            except TransferError as exc:
                task._report_done(exc)
                return
        if request.resume and request.target_path is not None:  # read here, not on the engine
            request.resume_from = load_checkpoint(request.target_path, request.url)
        tus = request.tus
        if tus is not None:  # the upload URL an earlier call kept for this very file
            checkpoint = self._checkpoints.path_for(request.url, tus.path)
            known = self._checkpoints.load(
                checkpoint, request.url, tus.path, tus.size, tus.mtime_ns
            )
            request.tus = dataclasses.replace(tus, checkpoint=checkpoint, known_url=known)
        with self._lock:
            if self._closed:
                engine = None
            else:
                if self._engine is None:
                    self._engine = self._make_engine()
                engine = self._engine
                self._tasks.add(task)
                task._runtime_tasks = self._tasks  # it leaves the set once its callbacks ran
        if engine is None:
            task._report_done(
                AbortError(f"{request.api}:fail abort: the runtime is closed", Errno.ABORT)
            )
            return
        engine.submit(request, task)

    def _refused(self, api: Api, error: TransferError) -> UploadTask | DownloadTask:
        """A task already failed with ``error``: for calls refused before any checking."""
        cls = UploadTask if api == "uploadFile" else DownloadTask
        task = cls(api, self._dispatcher_for_caller())
        task._report_done(error)
        return task

    def _dispatcher_for_caller(self) -> Dispatcher:
        # asyncio is imported only by code that uses it: before that no loop can run
        aio = sys.modules.get("asyncio")
        loop = aio._get_running_loop() if aio is not None else None  # None, without raising
        if loop is None:
            return self._dispatcher
        return LoopDispatcher(loop, self._dispatcher)

    def _make_engine(self) -> Engine:
        ca = _system_ca_bundle()
        if self._ca_file is not None:
            combined = os.path.join(self._temp.path(), ".ca-bundle.pem")
            with open(combined, "wb") as out:
                for part in (ca, self._ca_file):
                    if part:
                        with open(part, "rb") as src:
                            out.write(src.read().rstrip(b"\n") + b"\n")
            ca = combined
        config = TransportConfig(
            temp_dir=self._temp.path,
            ca_file=ca,
            resolve=self._resolve,
            user_agent=default_user_agent(),
            rules=self._rules,
        )
        return Engine(
            config,
            self._limits,
            self._timeouts,
            stall_timeout_ms=self._stall_timeout_ms,
            speed_caps=self._speed_caps,
            retry=self._retry,
        )

    # ---- saved files -----------------------------------------------------------------

    def save_file(self, temp_file_path: str, file_path: str | None = None) -> str:
        """Move a temp file of this runtime into the saved-file store; return its new path."""
        return self._store.save(temp_file_path, file_path)

    def get_saved_file_list(self) -> list[SavedFileInfo]:
        """Every saved file: path, size, creation time (seconds)."""
        return self._store.list()

    def get_saved_file_info(self, file_path: str) -> SavedFileInfo:
        """Size and creation time of one saved file."""
        return self._store.info(file_path)

    def remove_saved_file(self, file_path: str) -> None:
        """Delete a saved file (only files in the store; anything else is refused)."""
        self._store.remove(file_path)

    def get_file_info(self, file_path: str, digest_algorithm: str = "md5") -> FileInfo:
        """Size and digest (``md5``, ``sha1`` or ``sha256``, lowercase hex) of a file."""
        return _files.get_file_info(file_path, digest_algorithm)

    @property
    def rules(self) -> WeChatRules | None:
        """The platform rules this runtime applies, or None."""
        return self._rules

    @property
    def saved_files_dir(self) -> Path:
        """The folder saved files are kept in."""
        return self._store.root

    # ---- lifecycle -------------------------------------------------------------------

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every task has finished and its callbacks have run."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._tasks)
            if not pending:
                return True
            for task in pending:
                while not task._wait_callbacks(0.1):
                    if task.done() and isinstance(task._dispatcher, LoopDispatcher):
                        if not task._dispatcher.loop_alive():
                            self._tasks.discard(task)
                            break
                    if deadline is not None and time.monotonic() >= deadline:
                        return False

    def close(self) -> None:
        """Abort what still runs, stop the engine, remove temp files. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            engine = self._engine
        if engine is not None:
            engine.close()
        self._dispatcher.close(timeout=10)
        self._temp.cleanup()
        _live_runtimes.discard(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def _after_fork_in_child(self) -> None:
        """Start afresh in a forked child: the parent's threads are not here.

        The parent's engine (its libcurl handles and sockets, shared with the parent) is
        kept but never touched or freed here, so nothing is sent or closed on the
        parent's connections; its tasks end as aborted without callbacks (the parent
        runs those); its temp folder stays the parent's, and the child makes its own.
        """
        self._lock = threading.Lock()
        if self._engine is not None:
            _parents_engines.append(self._engine)
            self._engine = None
        self._dispatcher = ThreadDispatcher()
        for task in self._tasks:
            task._orphan("the transfer belongs to the parent process")
        self._tasks = set()
        self._temp = self._temp.forked()
        self._store.adopt_temp(self._temp)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Runtime {state}, {len(self._tasks)} tasks>"


_live_runtimes: weakref.WeakSet[Runtime] = weakref.WeakSet()
_default: Runtime | None = None
_default_lock = threading.Lock()
_parents_engines: list[Engine] = []  # in a forked child: kept, never used nor freed


def default_runtime() -> Runtime:
    """The runtime the module-level functions use, made on first use."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = Runtime()
        return _default


def set_default_runtime(runtime: Runtime | None) -> Runtime | None:
    """Make ``runtime`` the one behind the module functions and the ``wx`` face.

    Returns the runtime it replaces (None if none was made yet); that one is not closed.
    ``None`` goes back to a default runtime made on next use.
    """
    global _default
    if runtime is not None:
        if not isinstance(runtime, Runtime):
            raise TypeError(f"runtime should be a wxtransfer.Runtime, not {type(runtime).__name__}")
        if runtime.closed:
            raise ValueError("runtime is closed: a closed runtime cannot be the default")
    with _default_lock:
        previous, _default = _default, runtime
    return previous


def _interrupted() -> bool:
    """Whether the program is ending on a KeyboardInterrupt nobody caught (Ctrl-C).

    The interpreter keeps the uncaught exception in ``sys.last_exc`` (3.12) or
    ``sys.last_value`` before it runs the exit hooks.
    """
    last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return isinstance(last, KeyboardInterrupt)


def _at_exit() -> None:
    """Let running tasks finish and their callbacks run, then close every runtime.

    After Ctrl-C (an uncaught KeyboardInterrupt, or one while waiting here) nothing is
    waited for: every runtime is closed at once, which aborts its transfers and removes
    their files. A second Ctrl-C does not cut that short.
    """
    interrupted = _interrupted()
    for runtime in list(_live_runtimes):
        if not interrupted:
            try:
                runtime.wait_idle()
            except KeyboardInterrupt:
                interrupted = True
        if interrupted:
            _ignore_sigint()
        runtime.close()


def _ignore_sigint() -> None:
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()  # another thread may have held it at the fork
    for runtime in list(_live_runtimes):
        runtime._after_fork_in_child()


def _register_at_exit() -> None:
    # threading's hook runs before daemon threads stop, so the dispatcher can still run
    # callbacks; concurrent.futures uses the same hook.
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(_at_exit)
    else:  # pragma: no cover
        import atexit

        atexit.register(_at_exit)


_register_at_exit()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
