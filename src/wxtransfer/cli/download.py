"""``wxtransfer download URL...``: one or many downloads, at most ``-j`` at a time.

Each URL is a :class:`Job`: its task on the command's runtime, its progress bar, and, once
it ends, its :class:`~.output.Outcome`: the file moved into place (never over another
without ``--force``), written to stdout (``-o -``), or the failure and its exit status.
With one URL the command reports as it always did; with several, each result as it comes,
a summary table at the end, and curl's exit status for several transfers: the last
failure's (in the URLs' order).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click
from rich.console import Console

from .. import _errors as errors
from .._files import MoveCancelled, move_into_place, new_file_mode
from .._output import PART_SUFFIX
from .._results import DownloadFileResult, DownloadProgress, HeadersReceived, RetryEvent
from .._runtime import Runtime, before_start
from .._task import DownloadTask, Task
from .exit import (
    ExitStatus,
    Interrupt,
    exit_failure,
    exit_interrupted,
    exit_status,
    exit_with,
    http_error_report,
    print_json,
    save_error,
)
from .names import inside, remote_file_name
from .options import Robustness, RuntimeSettings
from .output import (
    MultiBars,
    Outcome,
    Reporter,
    RichReporter,
    TraceCapture,
    Tracker,
    human_size,
    request_head,
    response_head,
    summary_table,
    write_out,
)

__all__ = ["DownloadOptions", "Target", "run_downloads", "show_retries"]

API = "downloadFile"
#: How long to wait for aborted transfers to end, in seconds.
_ABORT_GRACE = 30.0
_STDOUT = "-"


@dataclass(frozen=True)
class Target:
    """One URL and where it goes: ``output`` a path, ``"-"`` (stdout) or None (the
    remote name, in ``folder``)."""

    url: str
    output: str | None = None
    folder: str = "."


@dataclass(frozen=True)
class DownloadOptions:
    """What the command line asked for, for every URL."""

    header: dict[str, str]
    robust: Robustness
    resume: bool = False
    checksum: str | None = None
    as_json: bool = False
    quiet: bool = False  # no bars
    silent: bool = False  # -s: no bars, no messages (but -S: errors)
    show_error: bool = False
    verbose: bool = False
    fail_http: bool = False
    force: bool = False
    max_redirects: int | None = None
    compressed: bool = False
    write_out: str | None = None
    parallel: int = 5
    time_condition: bool = False  # -z: a 304 is "not modified", and saves nothing
    shown_header: dict[str, str] | None = None  # -v: the request's headers as sent
    #: ``-z FILE``: that file may be replaced by a newer version without ``--force``
    #: (curl's ``-z page.html -o page.html``)
    update_path: str | None = None

    def may_replace(self, path: str) -> bool:
        """Whether ``path`` may be overwritten: ``--force``, or the file ``-z`` named."""
        return self.force or (
            self.update_path is not None and os.path.abspath(path) == self.update_path
        )

    @property
    def errors_hidden(self) -> bool:
        return self.silent and not self.show_error


def show_retries(task: Task[Any, Any], tracker: Tracker, label: str, robust: Robustness) -> None:
    """Show each retry on the bar as it happens; the label comes back with the answer."""
    if robust.retry is None:
        return
    total = robust.retry.total

    def on_retry(event: RetryEvent) -> None:
        # the error's headline only ("connection reset"), so the bar keeps its columns
        reason = (
            event.error.err_msg.partition(":fail ")[2].partition(":")[0]
            if event.error
            else f"HTTP {event.status_code}"
        )
        tracker.describe(
            f"{label} · retry {event.attempt - 1}/{total} in {event.delay:.1f} s: {reason}"
        )

    task.on_retry(on_retry)
    task.on_headers_received(lambda h: tracker.describe(label))


def _echo_err(line: str) -> None:
    with contextlib.suppress(OSError):
        click.echo(line, err=True)


@dataclass
class Job:
    """One URL's download, from its start to its :class:`Outcome`."""

    target: Target
    opts: DownloadOptions
    wake: threading.Event
    explicit: str | None = None  # the path -o named (None: the remote name, or stdout)
    task: DownloadTask | None = None
    tracker: Tracker = field(default_factory=Tracker)
    state: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    outcome: Outcome | None = None
    failure: errors.TransferError | None = None
    trace_number: int | None = None

    @property
    def to_stdout(self) -> bool:
        return self.target.output == _STDOUT

    def fail_now(self, exc: errors.TransferError) -> None:
        """End before any request (a file in the way, no such folder)."""
        self.failure = exc
        self.outcome = Outcome(
            self.target.url, error=exc.err_msg, exit_code=exit_status(exc), seconds=0.0
        )

    def preflight(self) -> bool:
        """Check the named output before the request; False (and an outcome) if it fails."""
        output = self.target.output
        if output is None or output == _STDOUT:
            return True
        folder = self.target.folder
        path = output if os.path.isabs(output) or folder == "." else os.path.join(folder, output)
        if os.path.isdir(path):
            self.target = Target(self.target.url, None, path)
            return True
        self.explicit = path
        if not self.opts.may_replace(path) and os.path.lexists(path):
            self.fail_now(save_error(FileExistsError(), path))
            return False
        parent = os.path.dirname(path) or "."
        if not os.path.isdir(parent):
            self.fail_now(
                errors.FileError(
                    f"downloadFile:fail download save file error: no such folder {parent}",
                    errors.Errno.SAVE_FILE_ERROR,
                )
            )
            return False
        return True

    def resume_path(self) -> str:
        """Where ``-C`` keeps the file: a name known before the request."""
        return self.explicit or inside(self.target.folder, remote_file_name(self.target.url, {}))

    def start(self, runtime: Runtime, reporter: Reporter, trace: TraceCapture | None) -> None:
        """Make the request (the preflight passed)."""
        self.started = time.monotonic()
        opts = self.opts
        url = self.target.url
        if opts.verbose:
            for line in request_head(url, opts.shown_header or opts.header):
                _echo_err(line)
        kwargs: dict[str, Any] = dict(
            header=opts.header,
            checksum=opts.checksum,
            max_redirects=opts.max_redirects,
            compressed=opts.compressed,
            complete=lambda _: self.wake.set(),
            **opts.robust.kwargs(),
        )
        if opts.resume:
            dest = self.resume_path()
            self.state["dest"] = dest
            if not opts.may_replace(dest) and os.path.lexists(dest):
                self.fail_now(save_error(FileExistsError(), dest))
                self.wake.set()
                return
        label = "download"
        if self.explicit:
            label = f"download {os.path.basename(self.explicit)}"
        elif opts.resume:
            label = f"download {os.path.basename(self.state['dest'])}"
        tracker = self.tracker = reporter.track(label)

        def listen(task: Task[Any, Any]) -> None:
            """Before the transfer starts: a retry event is not replayed to a late listener."""
            assert isinstance(task, DownloadTask)
            self.task = task
            show_retries(task, tracker, label, opts.robust)
            task.on_headers_received(self._on_headers)
            task.on_progress_update(self._on_progress)

        with before_start(listen):
            if opts.resume:
                runtime.download_file(url, file_path=self.state["dest"], resume=True, **kwargs)
            else:
                runtime.download_file(url, **kwargs)

    def _on_headers(self, h: HeadersReceived) -> None:
        self.state["status"] = h.status_code
        if self.opts.verbose:
            for line in response_head(h.status_code, h.header):
                _echo_err(line)
        if self.opts.fail_http and h.status_code >= 400:
            self.state["http_error"] = h.status_code
            assert self.task is not None
            self.task.abort()
            return
        if self.explicit is None and not self.to_stdout and not self.opts.resume:
            name = remote_file_name(self.target.url, h.header)
            dest = inside(self.target.folder, name)
            self.state["dest"] = dest
            self.tracker.describe(f"download {name}")
            if not self.opts.may_replace(dest) and os.path.lexists(dest):
                self.state["exists"] = dest
                assert self.task is not None
                self.task.abort()

    def _on_progress(self, p: DownloadProgress) -> None:
        self.tracker.update(p.total_bytes_written, p.total_bytes_expected_to_write)

    def done(self) -> bool:
        return self.outcome is not None or (self.task is not None and self.task.done())

    def _result(self) -> DownloadFileResult | None:
        assert self.task is not None
        try:
            return self.task.result(timeout=_ABORT_GRACE)
        except errors.TransferError as exc:
            self.failure = exc
        except TimeoutError:  # builtin: the task did not end in time
            self.task.abort()
            self.failure = errors.AbortError(f"{API}:fail abort", errors.Errno.ABORT)
        return None

    def settle(self, cancel: threading.Event, trace: TraceCapture | None) -> Outcome:
        """The transfer ended: put its file in place and say how it went."""
        if self.outcome is not None:
            self.tracker.finish(False)
            return self.outcome
        res = self._result()
        temp = res.temp_file_path if res is not None else None
        try:
            outcome = self._settle(res, cancel)
        finally:
            if temp is not None and not self.opts.resume and "body" not in self.state:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
        if res is not None:  # where it ended: the final response's URL, query and all
            outcome.redirects = res.redirects
            if res.redirects:
                outcome.effective_url = res.url
        elif trace is not None:  # a failure: its number is the first unclaimed "queued"
            self.trace_number = trace.claim(self.target.url)  # line of its URL
            hops = trace.redirects(self.trace_number)
            outcome.redirects = len(hops)
            if hops:
                outcome.effective_url = hops[-1]
        self.tracker.finish(outcome.error is None)
        self.outcome = outcome
        return outcome

    def _settle(self, res: DownloadFileResult | None, cancel: threading.Event) -> Outcome:
        url = self.target.url
        seconds = time.monotonic() - self.started
        status = int(self.state.get("status", 0))
        if "http_error" in self.state:
            report = http_error_report(API, self.state["http_error"])
            return Outcome(
                url, status=status, seconds=seconds, error=report["errMsg"], exit_code=22
            )
        if "exists" in self.state:
            self.failure = save_error(FileExistsError(), self.state["exists"])
        if self.failure is not None or res is None:
            exc = self.failure or errors.AbortError(f"{API}:fail abort", errors.Errno.ABORT)
            self.failure = exc
            return Outcome(
                url, status=status, seconds=seconds, error=exc.err_msg, exit_code=exit_status(exc)
            )
        profile = res.profile or {}
        if profile.get("fetchStart") and profile.get("responseEnd"):
            seconds = max(0.0, (profile["responseEnd"] - profile["fetchStart"]) / 1000)
        outcome = Outcome(
            url,
            status=res.status_code,
            size=res.data_length,
            seconds=seconds,
            header=res.header,
            profile=profile,
        )
        if self.opts.fail_http and res.status_code >= 400:
            report = http_error_report(API, res.status_code)
            if self.opts.resume and res.file_path:
                with contextlib.suppress(OSError):
                    os.unlink(res.file_path)
            outcome.error, outcome.exit_code = report["errMsg"], ExitStatus.HTTP_ERROR
            return outcome
        if self.opts.time_condition and res.status_code in (304, 412):
            outcome.note = "not modified" if res.status_code == 304 else "modified since"
            if self.opts.resume and res.file_path:
                with contextlib.suppress(OSError):
                    os.unlink(res.file_path)
            return outcome
        if self.opts.resume:
            outcome.path = os.path.abspath(res.file_path or self.state["dest"])
            return outcome
        temp = res.temp_file_path
        assert temp is not None
        if self.to_stdout:
            outcome.path = _STDOUT
            self.state["body"] = temp
            return outcome
        dest = (
            self.explicit
            or self.state.get("dest")
            or inside(self.target.folder, remote_file_name(url, res.header))
        )
        try:
            move_into_place(
                temp, dest, replace=self.opts.may_replace(dest), mode=new_file_mode(), cancel=cancel
            )
        except MoveCancelled:  # a stop signal during a copy across file systems
            self.failure = errors.AbortError(f"{API}:fail abort", errors.Errno.ABORT)
            outcome.error, outcome.exit_code = self.failure.err_msg, ExitStatus.INTERRUPTED
            return outcome
        except OSError as exc:
            self.failure = save_error(exc, dest)
            outcome.error = self.failure.err_msg
            outcome.exit_code = exit_status(self.failure)
            return outcome
        outcome.path = os.path.abspath(dest)
        return outcome

    def json_report(self, many: bool) -> dict[str, Any]:
        """``--json``: the result object, or the failure's ``{errMsg, errno}``."""
        outcome = self.outcome
        assert outcome is not None
        head: dict[str, Any] = {"url": outcome.url} if many else {}
        if outcome.error is not None:
            if outcome.exit_code == ExitStatus.HTTP_ERROR:
                report = http_error_report(API, outcome.status)
            elif self.failure is not None:
                report = self.failure.to_dict()
            else:
                report = {"errMsg": outcome.error, "errno": None}
            tail = {"exitCode": outcome.exit_code} if many else {}
            return {**head, **report, **tail}
        out: dict[str, Any] = {
            **head,
            "filePath": outcome.path,
            "statusCode": outcome.status,
            "dataLength": outcome.size,
            "header": dict(outcome.header or {}),
            "profile": dict(outcome.profile or {}),
            "errMsg": "downloadFile:ok",
        }
        if outcome.note:
            out["filePath"] = None
            out["note"] = outcome.note
        return out

    def kept_part_hint(self) -> None:
        """``-C``: say how much waits in the ``.wxpart`` and how to continue."""
        dest = self.state.get("dest")
        if not self.opts.resume or not dest:
            return
        kept = dest + PART_SUFFIX
        if os.path.exists(kept):
            held = os.path.getsize(kept)
            _echo_err(
                f"{human_size(held)} received wait in {kept}: run the same command again "
                "(with -C) to continue."
            )


def _write_body(path: str) -> None:
    """``-o -``: the body, as bytes, on stdout."""
    sys.stdout.flush()  # what was echoed before goes first
    stdout = sys.stdout.buffer
    with open(path, "rb") as f:
        shutil.copyfileobj(f, stdout, 1 << 20)
    stdout.flush()


def _make_reporter(opts: DownloadOptions, count: int) -> Reporter:
    if opts.quiet or opts.silent or opts.verbose:
        return Reporter()
    console = Console(stderr=True)
    if not console.is_terminal:
        return Reporter()
    return MultiBars(console, count) if count > 1 else RichReporter(console)


def _report_success(job: Job, opts: DownloadOptions, many: bool) -> None:
    """stdout: the body (``-o -``) or the saved path, or the JSON result; then ``-w``."""
    outcome = job.outcome
    assert outcome is not None
    if "body" in job.state:
        body = job.state.pop("body")
        try:
            _write_body(body)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(body)
    if opts.as_json:
        print_json(job.json_report(many))
    elif outcome.path and outcome.path != _STDOUT:
        click.echo(outcome.path)


class _Run:
    """The downloads of one command, at most ``opts.parallel`` at a time."""

    def __init__(self, targets: list[Target], opts: DownloadOptions) -> None:
        self.opts = opts
        self.many = len(targets) > 1
        self.wake = threading.Event()
        self.jobs = [Job(t, opts, self.wake) for t in targets]

    def run(self, settings: RuntimeSettings) -> None:
        opts = self.opts
        trace_wanted = opts.verbose or (opts.write_out is not None and "%{" in opts.write_out)
        with contextlib.ExitStack() as stack:
            # Interrupt first: its handlers stay until the runtime has closed and removed
            # its files.
            interrupt = stack.enter_context(Interrupt())
            trace = stack.enter_context(TraceCapture(opts.verbose)) if trace_wanted else None
            runtime = stack.enter_context(settings.build())
            reporter = stack.enter_context(_make_reporter(opts, len(self.jobs)))
            pending = list(self.jobs)
            running: list[Job] = []
            while pending or running:
                if interrupt.interrupted:
                    self._stop(running, interrupt, reporter, trace)
                while pending and len(running) < opts.parallel:
                    job = pending.pop(0)
                    if job.preflight():
                        job.start(runtime, reporter, trace)
                    running.append(job)
                self.wake.wait(0.1)
                self.wake.clear()
                for job in [j for j in running if j.done()]:
                    running.remove(job)
                    job.settle(interrupt.event, trace)
                    if job.failure is not None and isinstance(job.failure, errors.AbortError):
                        if interrupt.interrupted:
                            self._stop(running, interrupt, reporter, trace)
                    self._report(job, reporter)
            reporter.close()
        self._finish()

    def _stop(
        self,
        running: list[Job],
        interrupt: Interrupt,
        reporter: Reporter,
        trace: TraceCapture | None,
    ) -> NoReturn:
        """A stop signal: abort what runs, let it end, exit 128 + the signal's number."""
        for job in running:
            if job.task is not None:
                job.task.abort()
        for job in running:
            if job.task is not None:
                with contextlib.suppress(errors.TransferError, TimeoutError):
                    job.task.result(timeout=_ABORT_GRACE)
        reporter.close()
        for job in self.jobs:
            job.kept_part_hint()
        exit_interrupted(
            API, as_json=self.opts.as_json, code=interrupt.exit_code, quiet=self.opts.silent
        )

    def _report(self, job: Job, reporter: Reporter) -> None:
        """One transfer ended: its result on stdout as it comes (several URLs), or the
        single URL's whole report, with the exit."""
        opts = self.opts
        outcome = job.outcome
        assert outcome is not None
        if not self.many:
            reporter.close()
            if outcome.error is not None:
                job.kept_part_hint()
                self._write_out(outcome)
                if outcome.exit_code == ExitStatus.HTTP_ERROR:
                    exit_with(
                        http_error_report(API, outcome.status),
                        as_json=opts.as_json,
                        code=ExitStatus.HTTP_ERROR,
                        quiet=opts.errors_hidden,
                    )
                assert job.failure is not None
                exit_failure(
                    job.failure,
                    as_json=opts.as_json,
                    code=outcome.exit_code,
                    quiet=opts.errors_hidden,
                )
            _report_success(job, opts, self.many)
            self._write_out(outcome)
            if (
                not (opts.quiet or opts.silent or opts.as_json)
                and outcome.path
                and Console(stderr=True).is_terminal
            ):
                _echo_err(f"saved {human_size(outcome.size)} (HTTP {outcome.status})")
            return
        if outcome.error is not None:
            if opts.as_json:
                print_json(job.json_report(True))
            elif opts.silent and opts.show_error:
                _echo_err(f"Error: {outcome.error} ({outcome.url})")
        else:
            _report_success(job, opts, True)
        self._write_out(outcome)

    def _write_out(self, outcome: Outcome) -> None:
        if self.opts.write_out is not None:
            click.echo(write_out(self.opts.write_out, outcome), nl=False)

    def _finish(self) -> None:
        """Several URLs: the summary (stderr), and curl's exit status: the last failure's."""
        if not self.many:
            return
        outcomes = [j.outcome for j in self.jobs if j.outcome is not None]
        if not (self.opts.silent or self.opts.as_json):
            for job in self.jobs:
                if job.failure is not None:
                    job.kept_part_hint()
            console = Console(stderr=True)
            if not console.is_terminal:  # a log: no narrow 80 columns
                console = Console(stderr=True, width=160)
            with contextlib.suppress(OSError):
                console.print(summary_table(outcomes))
        failed = [o for o in outcomes if o.error is not None]
        if failed:
            raise click.exceptions.Exit(failed[-1].exit_code)


def run_downloads(targets: list[Target], opts: DownloadOptions, settings: RuntimeSettings) -> None:
    """Download every target; exits (``click.exceptions.Exit``) with the status."""
    _Run(targets, opts).run(settings)
