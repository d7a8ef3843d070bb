"""Lifecycle: never hang, never leak, clean up on every kind of exit (SPEC §1, §3, §7).

Scripts run in fresh interpreters (real processes, real signals) against the session's
test server; each test bounds its waits and kills what it started by its PID.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wxtransfer
from tests.helpers import leftovers, runtime
from tests.servers.threaded import ServerThread
from tests.test_cli_signals import Terminal
from wxtransfer import _files
from wxtransfer._options import validate_download

# Announced 300 MB, sent 1 KiB every 50 ms: surely running when the test acts on it.
ENDLESS = "/slow/314572800?delay=0.05"


class Script:
    """A Python script in a child process; stdout read line by line on a thread."""

    def __init__(self, tmp_path: Path, source: str, **env: str) -> None:
        environment = dict(os.environ, WXTRANSFER_HOME=str(tmp_path / "home"))
        environment["TMPDIR"] = str(tmp_path / "tmp")
        environment.update(env)
        (tmp_path / "tmp").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(source)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._stderr: str | None = None
        self._got_line = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._got_line:
                self.lines.append(line.rstrip("\n"))
                self._got_line.notify_all()

    def wait_for_line(self, text: str, timeout: float = 20) -> None:
        with self._got_line:
            if not self._got_line.wait_for(lambda: text in self.lines, timeout):
                self.kill()
                raise AssertionError(f"no line {text!r}; got {self.lines}; {self.stderr()}")

    def finish(self, timeout: float = 20) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        return code

    def stderr(self) -> str:
        """What the child wrote to stderr (once it has ended; empty while it runs)."""
        if self.proc.poll() is None:
            return ""
        if self._stderr is None:
            assert self.proc.stderr is not None
            self._stderr = self.proc.stderr.read()
            self.proc.stderr.close()
        return self._stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)
        self.stderr()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def scripts() -> Iterator[list[Script]]:
    started: list[Script] = []
    yield started
    for script in started:
        script.kill()


def temp_files(tmp_path: Path) -> list[str]:
    return leftovers(tmp_path / "tmp")


def parts_in(tmp_path: Path) -> list[Path]:
    return [tmp_path / "tmp" / p for p in temp_files(tmp_path) if p.endswith(".part")]


# ---- a blocking wait on the thread of the loop the callbacks go to -----------------------


def test_result_inside_a_running_loop_runs_the_callbacks_itself(
    tmp_path: Path, server: ServerThread
) -> None:
    seen: list[str] = []

    async def main() -> wxtransfer.DownloadFileResult:
        thread = threading.get_ident()
        with runtime(tmp_path) as rt:
            task = rt.download_file(
                server.url + "/slow/4096?delay=0.05",
                success=lambda r: seen.append(f"success {threading.get_ident() == thread}"),
                complete=lambda r: seen.append("complete"),
            )
            task.on_progress_update(lambda p: seen.append(f"progress {p.progress}"))
            res = task.result(20)  # blocks the loop: the callbacks run here, in order
            assert seen[-2:] == ["success True", "complete"]
            return res

    res = asyncio.run(main())
    assert res.status_code == 200 and res.data_length == 4096
    progress = [int(s.split()[1]) for s in seen if s.startswith("progress")]
    assert progress == sorted(progress) and progress[-1] == 100


def test_result_inside_a_running_loop_honours_its_timeout(
    tmp_path: Path, server: ServerThread
) -> None:
    async def main() -> None:
        with runtime(tmp_path) as rt:
            task = rt.download_file(server.url + ENDLESS, success=print)
            started = time.monotonic()
            with pytest.raises(TimeoutError) as caught:
                task.result(0.3)
            assert not isinstance(caught.value, wxtransfer.TransferError)
            assert 0.25 <= time.monotonic() - started < 5
            task.abort()
            assert isinstance(task.exception(10), wxtransfer.AbortError)

    asyncio.run(main())


def test_result_inside_a_running_loop_without_callbacks(
    tmp_path: Path, server: ServerThread
) -> None:
    # No callback and no listener: the outcome is not dispatched at all; the wait wakes.
    async def main() -> int:
        with runtime(tmp_path) as rt:
            return rt.download_file(server.url + "/slow/2048?delay=0.05").result(20).data_length

    assert asyncio.run(main()) == 2048


def test_wait_is_a_coroutine_for_create_task(tmp_path: Path, server: ServerThread) -> None:
    async def main() -> list[int]:
        with runtime(tmp_path) as rt:
            tasks = [rt.download_file(server.url + f"/bytes/{n}") for n in (10, 20)]
            pending = [asyncio.create_task(t.wait()) for t in tasks]
            done = await asyncio.wait_for(asyncio.gather(*pending), 20)
            return [r.data_length for r in done]

    assert asyncio.run(main()) == [10, 20]


# ---- fork ---------------------------------------------------------------------------------


def _child_download(url: str, out: Any) -> None:
    res = wxtransfer.download_file(url).result(20)
    out.put((res.status_code, res.data_length, os.path.exists(res.temp_file_path)))


def _child_idle(out: Any) -> None:
    out.put("idle")


def _child_waits_on_parents_task(task: wxtransfer.DownloadTask, out: Any) -> None:
    out.put(type(task.exception(5)).__name__)


# Python 3.12+ warns that forking a process with threads may deadlock: that is the case
# under test (register_at_fork makes the child safe).
pytestmark_fork = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")


@pytest.fixture
def fork_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("WXTRANSFER_HOME", str(tmp_path / "home"))
    previous = wxtransfer.set_default_runtime(
        wxtransfer.Runtime(home=tmp_path / "home", temp_dir=tmp_path / "tmp")
    )
    try:
        yield multiprocessing.get_context("fork")
    finally:
        mine = wxtransfer.set_default_runtime(previous)
        if mine is not None:
            mine.close()


def _run_child(ctx: Any, target: Any, *args: Any) -> tuple[Any, int | None, float]:
    out = ctx.Queue()
    child = ctx.Process(target=target, args=(*args, out))
    started = time.monotonic()
    child.start()
    try:
        value = out.get(timeout=20)
        child.join(20)
        return value, child.exitcode, time.monotonic() - started
    finally:
        if child.is_alive():
            child.kill()
            child.join(5)


@pytestmark_fork
def test_a_forked_child_downloads_and_exits(
    tmp_path: Path, server: ServerThread, fork_context: Any
) -> None:
    parent = wxtransfer.download_file(server.url + "/bytes/100").result(20)
    value, code, took = _run_child(fork_context, _child_download, server.url + "/bytes/300")
    assert value == (200, 300, True)
    assert code == 0
    assert took < 8, "the child's exit waited for threads it does not have"
    # the child removed its own temp folder, never the parent's
    assert os.path.exists(parent.temp_file_path)
    folders = {p.split("/")[0] for p in temp_files(tmp_path)}
    assert folders == {Path(parent.temp_file_path).parent.name}


@pytestmark_fork
def test_a_forked_child_that_never_uses_the_library_exits_at_once(
    tmp_path: Path, server: ServerThread, fork_context: Any
) -> None:
    wxtransfer.download_file(server.url + "/bytes/100").result(20)
    value, code, took = _run_child(fork_context, _child_idle)
    assert (value, code) == ("idle", 0)
    assert took < 8, "the child's exit waited for the parent's engine thread"


@pytestmark_fork
def test_a_task_of_the_parent_ends_in_the_child_instead_of_hanging(
    tmp_path: Path, server: ServerThread, fork_context: Any
) -> None:
    task = wxtransfer.download_file(server.url + ENDLESS)
    value, code, _ = _run_child(fork_context, _child_waits_on_parents_task, task)
    assert (value, code) == ("AbortError", 0)
    assert not task.done()  # the parent's transfer goes on
    task.abort()
    assert isinstance(task.exception(10), wxtransfer.AbortError)


# ---- abort racing close -------------------------------------------------------------------


def test_aborts_racing_a_close_never_touch_the_engine_from_another_thread(
    tmp_path: Path, server: ServerThread
) -> None:
    for round_ in range(20):
        rt = wxtransfer.Runtime(home=tmp_path / "home", temp_dir=tmp_path / "tmp")
        tasks = [rt.download_file(server.url + ENDLESS) for _ in range(30)]
        go = threading.Barrier(5)

        def abort_all(
            tasks: list[wxtransfer.DownloadTask] = tasks, go: threading.Barrier = go
        ) -> None:
            go.wait(5)
            for task in tasks:
                task.abort()

        def start_more(rt: wxtransfer.Runtime = rt, go: threading.Barrier = go) -> None:
            go.wait(5)
            for _ in range(10):
                rt.download_file(server.url + "/bytes/10")

        workers = [threading.Thread(target=abort_all) for _ in range(3)]
        workers.append(threading.Thread(target=start_more))
        for w in workers:
            w.start()
        go.wait(5)
        rt.close()
        for w in workers:
            w.join(10)
        for task in tasks:
            assert isinstance(task.exception(10), wxtransfer.AbortError), round_
    assert temp_files(tmp_path) == []


def test_a_start_after_close_fails_as_aborted_and_sends_nothing(
    tmp_path: Path, server: ServerThread
) -> None:
    rt = wxtransfer.Runtime(home=tmp_path / "home", temp_dir=tmp_path / "tmp")
    rt.download_file(server.url + "/bytes/10").result(10)
    engine = rt._engine
    rt.close()
    assert engine is not None
    task = wxtransfer.DownloadTask("downloadFile", rt._dispatcher)
    engine.submit(validate_download(server.url + "/bytes/10"), task)
    assert isinstance(task.exception(5), wxtransfer.AbortError)


# ---- Ctrl-C -------------------------------------------------------------------------------


def test_ctrl_c_while_waiting_in_result_aborts_and_exits_at_once(
    tmp_path: Path, server: ServerThread, scripts: list[Script]
) -> None:
    script = Script(
        tmp_path,
        f"""
        import wxtransfer
        task = wxtransfer.download_file({server.url + ENDLESS!r}, timeout=0)
        task.on_progress_update(lambda p: print("running", flush=True))
        task.result()
        """,
    )
    scripts.append(script)
    script.wait_for_line("running")
    started = time.monotonic()
    script.proc.send_signal(signal.SIGINT)
    code = script.finish()
    assert code == -signal.SIGINT, script.stderr()
    assert time.monotonic() - started < 5, "the exit waited for the transfer"
    assert temp_files(tmp_path) == []


def test_ctrl_c_while_the_script_end_waits_aborts_and_exits_at_once(
    tmp_path: Path, server: ServerThread, scripts: list[Script]
) -> None:
    script = Script(
        tmp_path,
        f"""
        import wxtransfer
        task = wxtransfer.download_file(
            {server.url + ENDLESS!r}, timeout=0, fail=lambda e: print(e.err_msg, flush=True)
        )
        task.on_progress_update(lambda p: print("running", flush=True))
        """,
    )
    scripts.append(script)
    script.wait_for_line("running")
    started = time.monotonic()
    script.proc.send_signal(signal.SIGINT)
    script.finish()
    assert time.monotonic() - started < 5, "the exit waited for the transfer"
    assert "downloadFile:fail abort" in script.lines
    assert temp_files(tmp_path) == []


def test_ctrl_c_typed_on_the_terminal_aborts_a_script_at_once(
    tmp_path: Path, server: ServerThread
) -> None:
    """^C on the script's controlling terminal (the kernel sends SIGINT, as at a shell)."""
    terminal = Terminal()
    (tmp_path / "tmp").mkdir()
    env = dict(os.environ, WXTRANSFER_HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "tmp"))
    source = f"""
        import wxtransfer
        task = wxtransfer.download_file({server.url + ENDLESS!r}, timeout=0)
        task.on_progress_update(lambda p: print("running", flush=True))
        task.result()
        """
    proc = terminal.start([sys.executable, "-c", textwrap.dedent(source)], tmp_path, env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"running\n"
        deadline = time.monotonic() + 10
        while not parts_in(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        terminal.type(b"\x03")
        proc.wait(20)
        assert time.monotonic() - started < 5, "the exit waited for the transfer"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
        terminal.hang_up()
    assert proc.returncode == -signal.SIGINT, bytes(terminal.output[-2000:])
    assert b"KeyboardInterrupt" in terminal.output
    assert temp_files(tmp_path) == []


# ---- what no handler catches: the next runtime sweeps ------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_process_leaves_no_full_size_file_and_the_next_runtime_sweeps(
    tmp_path: Path, server: ServerThread, scripts: list[Script], signum: int
) -> None:
    # A library script has no handler for either: the process dies where it stands.
    source = f"""
        import wxtransfer
        task = wxtransfer.download_file({server.url + ENDLESS!r}, timeout=0)
        task.on_progress_update(lambda p: print("running", flush=True))
        task.result()
        """
    killed, alive = Script(tmp_path, source), Script(tmp_path, source)
    scripts += [killed, alive]
    killed.wait_for_line("running")
    alive.wait_for_line("running")
    deadline = time.monotonic() + 10
    while len(parts_in(tmp_path)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # the writer thread makes the part file soon after the head
    killed.proc.send_signal(signum)
    assert killed.finish() == -signum
    parts = parts_in(tmp_path)
    assert len(parts) == 2, temp_files(tmp_path)
    assert all(p.stat().st_size < 1 << 20 for p in parts)  # not the 300 MB reserved

    removed = _files.sweep_abandoned(str(tmp_path / "tmp"))
    assert [Path(r).name for r in removed] == [
        p.parent.name for p in parts if str(killed.proc.pid) in p.name
    ]
    left = temp_files(tmp_path)
    assert len(left) == 1 and str(alive.proc.pid) in left[0], "a live process's folder went"


def test_the_first_runtime_sweeps_its_temp_parent(tmp_path: Path) -> None:
    dead = tmp_path / "tmp" / "wxtransfer-dead"
    dead.mkdir(parents=True)
    (dead / ".lock").touch()  # nobody holds it
    (dead / ".1-1.part").write_bytes(b"x" * 10)
    foreign = tmp_path / "tmp" / "wxtransfer-not-ours"  # no lock file: left alone
    foreign.mkdir()
    with runtime(tmp_path):
        assert not dead.exists()
        assert foreign.exists()


# ---- a failed save leaves nothing in the store --------------------------------------------


def test_a_save_that_fills_the_disk_leaves_no_part_and_keeps_the_temp_file(
    tmp_path: Path, server: ServerThread, small_tmpfs: Path
) -> None:
    with wxtransfer.Runtime(home=small_tmpfs, temp_dir=tmp_path / "tmp") as rt:
        res = rt.download_file(server.url + f"/bytes/{3 << 20}").result(20)
        with pytest.raises(wxtransfer.FileError) as caught:
            rt.save_file(res.temp_file_path)
        assert "no space left" in caught.value.err_msg
        assert leftovers(small_tmpfs) == []
        assert os.path.getsize(res.temp_file_path) == 3 << 20  # nothing lost


# ---- the default runtime ------------------------------------------------------------------


def test_set_default_runtime_configures_the_module_functions_and_the_wx_face(
    tmp_path: Path, server: ServerThread
) -> None:
    rules = wxtransfer.WeChatRules(app_id="wx0123456789abcdef", download_domains=["https://a.cn"])
    mine = wxtransfer.Runtime(rules=rules, home=tmp_path / "home", temp_dir=tmp_path / "tmp")
    previous = wxtransfer.set_default_runtime(mine)
    try:
        assert wxtransfer.default_runtime() is mine
        err = wxtransfer.download_file(server.url + "/bytes/10").exception(10)
        assert isinstance(err, wxtransfer.RuleError)
        failed: list[Any] = []
        done = threading.Event()
        wxtransfer.wx.downloadFile(
            {
                "url": server.url + "/bytes/10",
                "fail": failed.append,
                "complete": lambda r: done.set(),
            }
        )
        assert done.wait(10)
        assert isinstance(failed[0], wxtransfer.RuleError)
    finally:
        assert wxtransfer.set_default_runtime(previous) is mine
        mine.close()


def test_set_default_runtime_refuses_what_cannot_serve(tmp_path: Path) -> None:
    closed = wxtransfer.Runtime(home=tmp_path / "home", temp_dir=tmp_path / "tmp")
    closed.close()
    with pytest.raises(ValueError, match="closed"):
        wxtransfer.set_default_runtime(closed)
    with pytest.raises(TypeError, match="Runtime"):
        wxtransfer.set_default_runtime("rt")  # type: ignore[arg-type]


# ---- a timeout meant in seconds -----------------------------------------------------------


def test_a_timeout_under_100_ms_warns_once_naming_the_unit(
    tmp_path: Path, server: ServerThread
) -> None:
    script = Script(
        tmp_path,
        f"""
        import wxtransfer
        for timeout in (30, 5.5, 60000):
            wxtransfer.download_file({server.url + "/bytes/10"!r}, timeout=timeout).exception(10)
        print("done", flush=True)
        """,
    )
    assert script.finish() == 0
    err = script.stderr()
    assert err.count("TimeoutUnitWarning") == 1, err
    assert "timeout=30 is in milliseconds" in err
    assert "timeout=30000" in err
    assert "<string>:4" in err  # points at the caller's line, not the library's


def test_the_cli_says_nothing_of_units_its_timeout_is_documented_in_ms(
    tmp_path: Path, server: ServerThread
) -> None:
    command = ["download", server.url + "/bytes/10", "-q", "--timeout", "50"]
    out = subprocess.run(
        [sys.executable, "-m", "wxtransfer", *command, "-o", str(tmp_path / "out.bin")],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, WXTRANSFER_HOME=str(tmp_path / "home")),
    )
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr
