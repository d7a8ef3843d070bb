"""A script that reaches its end still sees its tasks finish and their callbacks run (SPEC §3).

Each test runs a small script in a fresh interpreter (``sys.executable -c``) with
``WXTRANSFER_HOME`` under ``tmp_path``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.servers import free_port
from tests.servers.threaded import ServerThread


def run_script(
    tmp_path: Path, script: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WXTRANSFER_HOME=str(tmp_path / "home"))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_success_callbacks_run_after_script_end(tmp_path: Path, server: ServerThread) -> None:
    url = f"{server.url}/slow/5120?delay=0.1"  # five 1 KiB chunks, about 0.4 s
    started = time.monotonic()
    out = run_script(
        tmp_path,
        f"""
        import wxtransfer
        wxtransfer.download_file(
            {url!r},
            timeout=10000,
            success=lambda r: print("success", r.status_code, r.data_length, flush=True),
            fail=lambda e: print("fail", e.err_msg, flush=True),
            complete=lambda r: print("complete", r["errMsg"], flush=True),
        )
        print("end of script", flush=True)
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "end of script",
        "success 200 5120",
        "complete downloadFile:ok",
    ]
    assert time.monotonic() - started >= 0.4  # the interpreter did wait for the transfer
    assert "Traceback" not in out.stderr


def test_fail_callbacks_run_after_script_end(tmp_path: Path, server: ServerThread) -> None:
    out = run_script(
        tmp_path,
        f"""
        import wxtransfer
        wxtransfer.download_file(
            {server.url + "/hang"!r},
            timeout=400,
            success=lambda r: print("success", flush=True),
            fail=lambda e: print("fail", e.err_msg, e.errno, flush=True),
            complete=lambda r: print("complete", r["errMsg"], flush=True),
        )
        print("end of script", flush=True)
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "end of script",
        "fail downloadFile:fail timeout 5",
        "complete downloadFile:fail timeout",
    ]


def test_upload_callbacks_run_after_script_end(tmp_path: Path, server: ServerThread) -> None:
    src = tmp_path / "up.txt"
    src.write_bytes(b"x" * 3000)
    out = run_script(
        tmp_path,
        f"""
        import json
        from wxtransfer import wx
        wx.uploadFile({{
            "url": {server.url + "/slow-upload?rate=6000"!r},
            "filePath": {str(src)!r},
            "name": "file",
            "success": lambda r: print("success", json.loads(r["data"])["size"] > 3000,
                                       flush=True),
            "complete": lambda r: print("complete", r["errMsg"], flush=True),
        }})
        print("end of script", flush=True)
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["end of script", "success True", "complete uploadFile:ok"]


def test_tasks_started_by_callbacks_at_exit_also_finish(
    tmp_path: Path, server: ServerThread
) -> None:
    out = run_script(
        tmp_path,
        f"""
        import wxtransfer

        def second(res):
            print("second", res.data_length, flush=True)

        def first(res):
            print("first", res.data_length, flush=True)
            wxtransfer.download_file({server.url + "/slow/2048?delay=0.2"!r}, success=second)

        wxtransfer.download_file({server.url + "/slow/1024?delay=0.2"!r}, success=first)
        print("end of script", flush=True)
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["end of script", "first 1024", "second 2048"]


def test_explicit_runtime_never_closed(tmp_path: Path, server: ServerThread) -> None:
    out = run_script(
        tmp_path,
        f"""
        import wxtransfer
        rt = wxtransfer.Runtime(temp_dir={str(tmp_path / "tmp")!r})
        def success(res):
            print("success", res.temp_file_path, flush=True)
        rt.download_file({server.url + "/slow/2048?delay=0.2"!r}, success=success)
        """,
    )
    assert out.returncode == 0, out.stderr
    word, temp = out.stdout.split()
    assert word == "success"
    assert temp.startswith(str(tmp_path / "tmp"))
    assert not os.path.exists(temp)  # the runtime closed at exit: temp files removed


def test_unobserved_failure_is_logged(tmp_path: Path, server: ServerThread) -> None:
    out = run_script(
        tmp_path,
        f"""
        import logging, wxtransfer
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
        wxtransfer.download_file({server.url + "/hang"!r}, timeout=300)
        print("end of script", flush=True)
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "end of script\n"
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("WARNING wxtransfer ")]
    assert len(warnings) == 1, out.stderr
    assert "downloadFile:fail timeout" in warnings[0]


def test_unobserved_failure_kept_in_a_variable_is_logged(tmp_path: Path) -> None:
    out = run_script(
        tmp_path,
        f"""
        import logging, wxtransfer
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
        task = wxtransfer.download_file("http://127.0.0.1:{free_port()}/x", timeout=5000)
        """,
    )
    assert out.returncode == 0, out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("WARNING wxtransfer ")]
    assert len(warnings) == 1, out.stderr
    assert "downloadFile:fail" in warnings[0]


def test_observed_failures_are_not_logged(tmp_path: Path, server: ServerThread) -> None:
    out = run_script(
        tmp_path,
        f"""
        import logging, wxtransfer
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
        url = {server.url + "/hang"!r}
        # one write per line: these threads print at the same moment
        say = lambda word: print(word + "\\n", end="", flush=True)
        wxtransfer.download_file(url, timeout=200, fail=lambda e: say("fail"))
        wxtransfer.download_file(url, timeout=200, complete=lambda e: say("complete"))
        task = wxtransfer.download_file(url, timeout=200)
        try:
            task.result(10)
        except wxtransfer.TimeoutError:
            say("raised")
        """,
    )
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split()) == ["complete", "fail", "raised"]
    assert "WARNING" not in out.stderr, out.stderr


def test_task_from_a_finished_asyncio_run_still_calls_back(
    tmp_path: Path, server: ServerThread
) -> None:
    out = run_script(
        tmp_path,
        f"""
        import asyncio, wxtransfer

        async def main():
            wxtransfer.download_file(
                {server.url + "/slow/3072?delay=0.15"!r},
                success=lambda r: print("success", r.data_length, flush=True),
                complete=lambda r: print("complete", r["errMsg"], flush=True),
            )

        asyncio.run(main())
        print("end of script", flush=True)
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["end of script", "success 3072", "complete downloadFile:ok"]
