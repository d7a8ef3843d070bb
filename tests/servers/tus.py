"""The tus 1.0 reference server (npm ``@tus/server`` with ``@tus/file-store``) on 127.0.0.1,
for testing resumable uploads against a server we did not write.

``TusServer(folder).start()`` installs the node packages if needed
(:func:`ensure_node_packages`), runs ``node tests/servers/tus/server.mjs`` on a free port
with its store in ``folder/store`` and its stderr in ``folder/tus-server.log``;
``.url`` is the creation endpoint ``http://127.0.0.1:<port>/files/``, ``.store`` the
store's folder, ``.pid`` the node process; ``.uploads()`` lists what the store holds;
``.stop()`` ends the process by its PID (SIGTERM, then SIGKILL after 5 s).

The server answers a creation POST with an absolute ``Location``,
``http://127.0.0.1:<port>/files/<id>`` (32 hex digits), where ``<port>`` is the port of the
request's Host header: the server's own, or a proxy's when the POST went through one, so
that the PATCH and HEAD on it go the same way. A PATCH whose connection breaks keeps the
bytes the server received before the break: the offset grows by those bytes.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.servers import stop_process

TUS_DIR = Path(__file__).with_name("tus")
_STAMP = TUS_DIR / "node_modules" / ".wxtransfer-installed"


def ensure_node_packages(timeout: float = 300.0) -> None:
    """Run ``npm ci`` in ``tests/servers/tus`` unless node_modules is newer than the lockfile.

    An exclusive ``flock`` on ``tests/servers/tus/.npm-install.lock`` keeps two processes
    (pytest workers, a make target) from installing at once; the second one waits, then
    finds the packages installed.
    """
    lock_json = TUS_DIR / "package-lock.json"

    def fresh() -> bool:
        return _STAMP.exists() and _STAMP.stat().st_mtime >= lock_json.stat().st_mtime

    if fresh():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm is not installed (Debian: apt-get install nodejs npm)")
    deadline = time.monotonic() + timeout
    with open(TUS_DIR / ".npm-install.lock", "w") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError("another npm install holds the lock") from None
                time.sleep(0.2)
        try:
            if fresh():
                return
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=TUS_DIR,
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"npm ci failed ({done.returncode}):\n{done.stderr}")
            _STAMP.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class TusUpload:
    """One upload in the store: ``offset`` is the bytes on disk, ``length`` the declared
    Upload-Length (``None`` while deferred)."""

    id: str
    offset: int
    length: int | None
    metadata: dict[str, str | None]


class TusServer:
    def __init__(self, folder: Path, *, start_timeout: float = 30.0) -> None:
        self.folder = folder
        self.store = folder / "store"
        self.log_path = folder / "tus-server.log"
        self.start_timeout = start_timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The creation endpoint (POST here)."""
        return f"http://127.0.0.1:{self.port}/files/"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("TusServer is not started")
        return self.proc.pid

    def start(self) -> TusServer:
        ensure_node_packages()
        node = shutil.which("node")
        if node is None:
            raise FileNotFoundError("node is not installed (Debian: apt-get install nodejs)")
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [node, "server.mjs", "--port", "0", "--dir", str(self.store)],
                cwd=TUS_DIR,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        try:
            self.port = self._wait_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + self.start_timeout
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"tus server did not listen within {self.start_timeout} s")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                self.proc.wait(5)
                raise RuntimeError(
                    f"tus server exited ({self.proc.returncode}): {self.log_path.read_text()}"
                )
            buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        word, _, port = line.partition(" ")
        if word != "LISTENING" or not port.isdigit():
            raise RuntimeError(f"tus server printed {line!r}, not 'LISTENING <port>'")
        return int(port)

    def uploads(self) -> list[TusUpload]:
        """Every upload in the store, by id: bytes on disk and declared length.

        The FileStore keeps ``<id>`` (the bytes so far) and ``<id>.json`` (``id``, ``size``
        = the Upload-Length, absent while deferred, ``metadata``, ``creation_date``, and an
        ``offset`` that stays 0: the file's size is the real offset).
        """
        found: list[TusUpload] = []
        for record in sorted(self.store.glob("*.json")):
            info = json.loads(record.read_text())
            data = record.with_suffix("")
            size = info.get("size")
            found.append(
                TusUpload(
                    id=str(info.get("id", data.name)),
                    offset=data.stat().st_size if data.exists() else 0,
                    length=int(size) if size is not None else None,
                    metadata=dict(info.get("metadata") or {}),
                )
            )
        return found

    def requests(self) -> list[tuple[str, str, str]]:
        """Every request the server has logged so far: (method, status or "-" when the
        connection ended before an answer, the Upload-Offset it carried or "-")."""
        found: list[tuple[str, str, str]] = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            word, _, rest = line.partition(" ")
            fields = rest.split()
            if word == "REQUEST" and len(fields) == 3:
                found.append((fields[0], fields[1], fields[2]))
        return found

    def requests_after(self, start: int, until: int = 0) -> list[tuple[str, str, str]]:
        """The requests logged after the first ``start`` ones, once the log holds at
        least ``until`` answered PATCHes among them (a request is logged when its
        connection is done with it, a moment after the client has its answer)."""
        deadline = time.monotonic() + 5
        while True:
            found = self.requests()[start:]
            patched = [r for r in found if r[0] == "PATCH" and r[1] != "-"]
            if len(patched) >= until or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def upload(self, upload_id: str) -> TusUpload:
        """The upload with this id (the last part of its Location)."""
        for found in self.uploads():
            if found.id == upload_id:
                return found
        raise KeyError(upload_id)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        stop_process(proc, 5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> TusServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
