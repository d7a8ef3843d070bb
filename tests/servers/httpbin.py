"""httpbin under gunicorn, as a subprocess on 127.0.0.1 (stopped by its PID)."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import IO

from . import free_port, stop_process


class HttpbinProcess:
    """``python -m gunicorn -b 127.0.0.1:PORT -w 2 httpbin:app``; ``.url`` once started."""

    def __init__(
        self, *, port: int | None = None, workers: int = 2, start_timeout: float = 20.0
    ) -> None:
        self.port = port or 0
        self.workers = workers
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("httpbin not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> HttpbinProcess:
        if self.proc is not None:
            raise RuntimeError("already started")
        last_error: BaseException | None = None
        for _ in range(3):  # the free port may be taken in between: retry
            if not self.port or last_error is not None:
                self.port = free_port()
            try:
                self._spawn()
                return self
            except _PortBusyError as exc:
                last_error = exc
        raise RuntimeError("could not start httpbin") from last_error

    def _spawn(self) -> None:
        self._log = tempfile.TemporaryFile(prefix="httpbin-", suffix=".log")
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--graceful-timeout",
            "2",
            "--log-level",
            "warning",
            *_extra_gunicorn_flags(),
            "httpbin:app",
        ]
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        # cwd "/": never let "httpbin" resolve to a local module (e.g. this file).
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env, cwd=os.sep
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self._read_log()
                self._reap()
                if "Address already in use" in log:
                    raise _PortBusyError(log)
                raise RuntimeError(f"httpbin exited early:\n{log}")
            if self._answers():
                return
            time.sleep(0.1)
        log = self._read_log()
        self.stop()
        raise RuntimeError(f"httpbin did not answer within {self.start_timeout} s:\n{log}")

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/get")
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-4000:]

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the gunicorn master's PID, wait; SIGKILL if it lingers."""
        if self.proc is not None:
            stop_process(self.proc, timeout)
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:  # pragma: no cover - only if stop() failed
                self.proc.kill()
            self.proc.wait()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> HttpbinProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _extra_gunicorn_flags() -> list[str]:
    """Recent gunicorn opens a control socket at a fixed per-user path
    (~/.gunicorn/gunicorn.ctl), which concurrent instances would fight over: disable it."""
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:  # pragma: no cover - gunicorn missing: the start fails clearly
        return []
    flags = {flag for setting in KNOWN_SETTINGS for flag in (setting.cli or [])}
    return ["--no-control-socket"] if "--no-control-socket" in flags else []


class _PortBusyError(RuntimeError):
    pass


__all__ = ["HttpbinProcess"]
