"""Run a child process and measure it from outside: wall time, CPU time, peak RSS."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

POLL_S = 0.01


@dataclass
class Measurement:
    """What one child run cost, seen from outside."""

    returncode: int
    wall: float  # seconds, spawn to reap
    cpu: float  # user + sys seconds, from the child's rusage (wait4)
    peak_rss: int  # bytes: max of GNU time's %M (if installed) and the polled VmHWM
    peak_rss_polled: int  # bytes: the highest VmHWM polled every 10 ms (cross-check)
    stdout: str
    stderr: str
    timed_out: bool


def _hwm(pid: int) -> int:
    """Peak RSS so far (VmHWM) of a live process, 0 if it is gone.

    VmHWM belongs to the address space made at exec, so unlike ``ru_maxrss`` it does not
    inherit the parent's footprint across fork/vfork; polling it therefore loses only growth
    in the last few milliseconds before exit.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    except OSError:
        pass
    try:  # no /proc VmHWM: fall back to the current RSS via psutil
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def _tree_hwm(pid: int, include_self: bool = True) -> int:
    """Peak RSS of a process (unless not include_self) plus the peaks of its live descendants."""
    total = _hwm(pid) if include_self else 0
    try:
        for child in psutil.Process(pid).children(recursive=True):
            total += _hwm(child.pid)
    except psutil.Error:
        pass
    return total


@functools.cache
def gnu_time() -> str | None:
    """Path of GNU time if installed (it reports an exact peak RSS of its child)."""
    exe = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    if exe is None:
        return None
    try:
        r = subprocess.run([exe, "-f", "%M", "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return exe if r.returncode == 0 and r.stderr.strip().isdigit() else None


def rss_method() -> str:
    """How peak RSS is measured on this machine."""
    if gnu_time():
        return "max of GNU time's %M (the child's ru_maxrss) and its VmHWM polled every 10 ms"
    return "polling the child's VmHWM (/proc/PID/status) every 10 ms"


def run_measured(
    argv: list[str],
    *,
    cwd: Path | None = None,
    timeout: float = 600.0,
    env: dict[str, str] | None = None,
) -> Measurement:
    """Run argv to completion (or kill its process group at ``timeout``) and measure it.

    With GNU time the child is started by it: ``ru_maxrss`` of a child forked straight from
    this (larger) process would report this process's footprint, not the child's.
    """
    wrapper = gnu_time()
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".time") as tfile,
    ):
        cmd = [wrapper, "-f", "%M", "-o", tfile.name, *argv] if wrapper else argv
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=out, stderr=err, env=env, start_new_session=True
        )
        peak = 0
        timed_out = False
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _tree_hwm(proc.pid, include_self=wrapper is None))
            if time.perf_counter() > deadline:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # the group we started
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(POLL_S)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
        out.seek(0)
        err.seek(0)
        exact = 0
        if wrapper:
            lines = tfile.read().split()
            exact = int(lines[-1]) * 1024 if lines and lines[-1].isdigit() else 0
        return Measurement(
            returncode=proc.returncode,
            wall=wall,
            cpu=ru.ru_utime + ru.ru_stime,
            peak_rss=max(exact, peak),
            peak_rss_polled=peak,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            timed_out=timed_out,
        )
