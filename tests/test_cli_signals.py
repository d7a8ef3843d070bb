"""The CLI under SIGTERM, SIGHUP and Ctrl-C, and the permissions of the files it saves.

The CLI runs as a real process (``python -m wxtransfer``) against a real local server; the
tests signal it by its PID or through a real terminal, then check what is left on disk:
nothing at the output path, no ``.wxpart`` beside it, no ``wxtransfer-*`` temp folder under
the child's ``TMPDIR``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers.app import pattern
from tests.servers.rawsock import RawServer, build_response, respond, wait_until_closed
from wxtransfer._files import MoveCancelled, move_into_place

#: Announced by the drip server: far more than a test ever lets it send.
BIG = 300 * 1024 * 1024
#: (umask, the mode a new file gets under it)
UMASKS = [(0o022, 0o644), (0o027, 0o640)]
#: Bound on every wait for the child to reach a state or to exit, in seconds.
WAIT = 20.0

RawServerFactory = Callable[[Callable[[socket.socket, bytes], None]], RawServer]


# --------------------------------------------------------------------------- helpers


def drip(sock: socket.socket, head: bytes) -> None:
    """Announce ``BIG`` bytes, then send 64 KiB every 20 ms until the client goes away."""
    sock.sendall(
        build_response(
            200, headers={"Content-Type": "application/octet-stream"}, content_length=BIG
        )
    )
    block = pattern(64 * 1024)
    for _ in range(BIG // len(block)):
        sock.sendall(block)
        time.sleep(0.02)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """``(cwd, tmpdir)``: the child's working folder and its ``TMPDIR``, both empty."""
    cwd, tmpdir = tmp_path / "cwd", tmp_path / "tmpdir"
    cwd.mkdir()
    tmpdir.mkdir()
    return cwd, tmpdir


def child_env(tmpdir: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmpdir), "TERM": "xterm", "COLUMNS": "120"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "wxtransfer", *args]


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def wait_for_part_file(tmpdir: Path, proc: subprocess.Popen[bytes]) -> Path:
    """The download's part file in the runtime's temp folder, once bytes have arrived."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for part in tmpdir.glob("wxtransfer-*/.*.part"):
            with contextlib.suppress(FileNotFoundError):
                if part.stat().st_size > 0:
                    return part
        assert proc.poll() is None, f"the child ended early with {proc.returncode}"
        time.sleep(0.02)
    raise AssertionError(f"no part file under {tmpdir}: {everything_under(tmpdir)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child (by its PID) if it still runs; reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=WAIT)


def assert_nothing_left(cwd: Path, tmpdir: Path) -> None:
    """No output file, no ``.wxpart`` beside it, no temp folder (so no part file)."""
    assert everything_under(cwd) == []
    assert everything_under(tmpdir) == []


def take_terminal() -> None:
    """preexec_fn: make stdin (the pty's slave) the controlling terminal of the child's
    new session, so the terminal's ^C and hang-up reach it as the kernel sends them."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A pty whose slave becomes the child's controlling terminal (stdin and stderr); its
    output (the progress bar) is drained by a thread so that the child never blocks."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.output = bytearray()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)

    def start(self, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        try:
            proc = subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdin=self.slave,
                stdout=subprocess.PIPE,
                stderr=self.slave,
                start_new_session=True,
                preexec_fn=take_terminal,
            )
        finally:
            os.close(self.slave)
        self._thread.start()
        return proc

    def _drain(self) -> None:
        while not self._done.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: no process has the slave open any more
                    return
                if not chunk:
                    return
                self.output += chunk

    def hang_up(self) -> None:
        """Close the terminal: the kernel sends SIGHUP to the session's leader."""
        if self.master >= 0:
            self._done.set()
            if self._thread.ident is not None:  # started
                self._thread.join(WAIT)
            os.close(self.master)
            self.master = -1

    def type(self, data: bytes) -> None:
        os.write(self.master, data)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    try:
        yield term
    finally:
        term.hang_up()


# --------------------------------------------------------------------------- signals


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["SIGTERM", "SIGHUP"]
)
def test_signal_mid_download_exits_128_plus_n_and_leaves_nothing(
    raw_server: RawServerFactory, folders: tuple[Path, Path], signum: int, code: int
) -> None:
    """``kill -TERM`` / ``kill -HUP``: abort, remove the part file and the temp folder,
    exit 128 + n with the Ctrl-C path's line on stderr."""
    cwd, tmpdir = folders
    srv = raw_server(drip)
    proc = subprocess.Popen(
        cli("download", srv.url + "/big.bin", "-o", "out.bin"),
        cwd=cwd,
        env=child_env(tmpdir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_part_file(tmpdir, proc)
        os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        stop(proc)
    assert proc.returncode == code, err
    assert out == b""
    assert err.decode() == "Error: downloadFile:fail abort\n"
    assert_nothing_left(cwd, tmpdir)


@pytest.mark.timeout(60)
def test_sigterm_mid_upload_json(
    raw_server: RawServerFactory, folders: tuple[Path, Path], tmp_path: Path
) -> None:
    """An upload stopped by SIGTERM reports the abort as JSON and exits 143."""
    cwd, tmpdir = folders
    sample = tmp_path / "sample.bin"
    sample.write_bytes(pattern(4 * 1024 * 1024))
    started = threading.Event()

    def slow_reader(sock: socket.socket, head: bytes) -> None:
        started.set()
        wait_until_closed(sock)  # reads the body, never answers

    srv = raw_server(slow_reader)
    proc = subprocess.Popen(
        cli("upload", srv.url + "/upload", str(sample), "--json"),
        cwd=cwd,
        env=child_env(tmpdir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert started.wait(WAIT), "the upload never reached the server"
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        stop(proc)
    assert proc.returncode == 143, err
    assert out == b""
    assert json.loads(err) == {"errMsg": "uploadFile:fail abort", "errno": 600003}
    assert_nothing_left(cwd, tmpdir)


@pytest.mark.timeout(60)
def test_ctrl_c_on_the_controlling_terminal(
    raw_server: RawServerFactory, folders: tuple[Path, Path], terminal: Terminal
) -> None:
    """^C typed on the child's controlling terminal (the kernel sends SIGINT): exit 130,
    nothing left; the handling of the three signals is one mechanism."""
    cwd, tmpdir = folders
    srv = raw_server(drip)
    proc = terminal.start(
        cli("download", srv.url + "/big.bin", "-o", "out.bin"), cwd, child_env(tmpdir)
    )
    try:
        wait_for_part_file(tmpdir, proc)
        terminal.type(b"\x03")
        out, _ = proc.communicate(timeout=WAIT)
    finally:
        stop(proc)
    assert proc.returncode == 130, bytes(terminal.output[-2000:])
    assert out == b""
    assert_nothing_left(cwd, tmpdir)


@pytest.mark.timeout(60)
def test_terminal_hang_up_mid_download(
    raw_server: RawServerFactory, folders: tuple[Path, Path], terminal: Terminal
) -> None:
    """The terminal goes away (ssh dropped, window closed): the kernel's SIGHUP aborts the
    download, nothing is left, exit 129, although stderr (the dead terminal) fails."""
    cwd, tmpdir = folders
    srv = raw_server(drip)
    proc = terminal.start(
        cli("download", srv.url + "/big.bin", "-o", "out.bin"), cwd, child_env(tmpdir)
    )
    try:
        wait_for_part_file(tmpdir, proc)
        terminal.hang_up()
        out, _ = proc.communicate(timeout=WAIT)
    finally:
        stop(proc)
    assert proc.returncode == 129
    assert out == b""
    assert_nothing_left(cwd, tmpdir)


@pytest.mark.timeout(60)
def test_an_ignored_sighup_stays_ignored(
    raw_server: RawServerFactory, folders: tuple[Path, Path]
) -> None:
    """Under ``nohup`` (SIGHUP ignored when the CLI starts) a SIGHUP does nothing; SIGTERM
    still aborts cleanly."""
    cwd, tmpdir = folders
    srv = raw_server(drip)
    nohup = (
        "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
        "os.execv(sys.executable, sys.argv[1:])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", nohup, *cli("download", srv.url + "/big.bin", "-o", "out.bin")],
        cwd=cwd,
        env=child_env(tmpdir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        part = wait_for_part_file(tmpdir, proc)
        os.kill(proc.pid, signal.SIGHUP)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)
        assert part.exists()  # still downloading
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        stop(proc)
    assert proc.returncode == 143, err
    assert out == b""
    assert_nothing_left(cwd, tmpdir)


def test_a_cancelled_copy_across_file_systems_leaves_nothing(tmp_path: Path) -> None:
    """A stop signal during the copy fallback (``cancel`` set) removes the ``.wxpart``
    beside the destination and leaves the source as it was."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system than the temp folder")
    src = tmp_path / "src.bin"
    src.write_bytes(pattern(3 * 1024 * 1024))
    cancel = threading.Event()
    cancel.set()
    dest_dir = Path(os.path.realpath(shm)) / f"wxtransfer-test-{os.getpid()}-{time.monotonic_ns()}"
    dest_dir.mkdir()
    try:
        for force in (False, True):
            with pytest.raises(MoveCancelled):
                move_into_place(str(src), str(dest_dir / "out.bin"), replace=force, cancel=cancel)
            assert list(dest_dir.iterdir()) == []
            assert src.read_bytes() == pattern(3 * 1024 * 1024)
    finally:
        for p in dest_dir.iterdir():
            p.unlink()
        dest_dir.rmdir()


# --------------------------------------------------------------------------- permissions


@pytest.fixture
def small_server(raw_server: RawServerFactory) -> RawServer:
    return raw_server(respond(build_response(200, pattern(5000), {"Content-Type": "x/y"})))


def download_with_umask(url: str, out: Path, tmpdir: Path, umask: int, *extra: str) -> None:
    result = subprocess.run(
        cli("download", url, "-o", str(out), *extra),
        cwd=out.parent,
        env=child_env(tmpdir),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=WAIT * 3,
        umask=umask,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == pattern(5000)


@pytest.mark.parametrize(("umask", "mode"), UMASKS, ids=["umask022", "umask027"])
def test_saved_file_gets_the_mode_of_a_new_file(
    small_server: RawServer, folders: tuple[Path, Path], umask: int, mode: int
) -> None:
    """0666 less the umask (SPEC §5), not the temp file's 0600: a new file (link from the
    temp folder) and ``--force`` over an existing 0600 file (rename)."""
    cwd, tmpdir = folders
    out = cwd / "out.bin"
    download_with_umask(small_server.url + "/a.bin", out, tmpdir, umask)
    assert stat.S_IMODE(out.stat().st_mode) == mode
    out.chmod(0o600)
    download_with_umask(small_server.url + "/a.bin", out, tmpdir, umask, "--force")
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert everything_under(cwd) == ["out.bin"]


@pytest.mark.parametrize(("umask", "mode"), UMASKS, ids=["umask022", "umask027"])
def test_copied_file_gets_the_mode_of_a_new_file(
    small_server: RawServer, folders: tuple[Path, Path], umask: int, mode: int
) -> None:
    """The copy fallback (output on another file system than ``TMPDIR``): same mode, with
    and without ``--force``, and no ``.wxpart`` left beside it."""
    _, tmpdir = folders
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmpdir.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system than the temp folder")
    dest_dir = Path(os.path.realpath(shm)) / f"wxtransfer-test-{os.getpid()}-{time.monotonic_ns()}"
    dest_dir.mkdir()
    try:
        out = dest_dir / "out.bin"
        download_with_umask(small_server.url + "/a.bin", out, tmpdir, umask)
        assert stat.S_IMODE(out.stat().st_mode) == mode
        out.chmod(0o600)
        download_with_umask(small_server.url + "/a.bin", out, tmpdir, umask, "--force")
        assert stat.S_IMODE(out.stat().st_mode) == mode
        assert sorted(os.listdir(dest_dir)) == ["out.bin"]
    finally:
        for p in dest_dir.iterdir():
            p.unlink()
        dest_dir.rmdir()
