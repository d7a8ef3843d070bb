"""The ``wxtransfer`` commands: upload, download, serve, demo.

Exit statuses: :class:`~.exit.ExitStatus` (curl's where curl has one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from .. import _errors as errors
from .._options import TimeoutUnitWarning
from .._results import UploadProgress
from .._runtime import before_start, default_user_agent, package_version
from .._task import Task, UploadTask
from .download import DownloadOptions, Target, run_downloads, show_retries
from .exit import (
    ExitStatus,
    Interrupt,
    exit_failure,
    exit_interrupted,
    http_error,
    print_json,
    wait,
)
from .options import (
    OUTPUT_ORDER,
    SIZE,
    OrderedOutputs,
    Robustness,
    RuntimeSettings,
    basic_auth,
    byte_range,
    converted,
    fail_option,
    header_option,
    json_option,
    parse_form,
    quiet_option,
    robustness_options,
    runtime_options,
    split_form,
    time_condition,
    write_out_format,
)
from .output import (
    Outcome,
    PlainReporter,
    Reporter,
    RichReporter,
    human_size,
    make_reporter,
)
from .output import write_out as render_write_out

__all__ = ["cli", "default_user_agent", "main"]


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("Interrupted", err=True)
            raise click.exceptions.Exit(ExitStatus.INTERRUPTED) from None


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the same reading as ``wxtransfer.__version__`` (``0+unknown`` for a
    source tree that is not installed), made only when asked for."""
    if value and not ctx.resilient_parsing:
        click.echo(f"wxtransfer, version {package_version()}")
        ctx.exit()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="Show the version and exit.",
)
def cli() -> None:
    """Uploads and downloads the way wx.uploadFile / wx.downloadFile do them.

    Exit codes are curl's: 0 done, 1 failure, 2 usage, 6/7 cannot resolve/connect,
    18 body cut short, 22 HTTP error with --fail, 23 cannot save, 28 timeout, 47 too many
    redirects, 60 certificate; 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (the transfer is
    aborted, no file is left). Several URLs: the last failure's.
    """


# --------------------------------------------------------------------------- curl's habits

_silent_option = click.option(
    "-s", "--silent", is_flag=True, help="No bars, no messages (curl's -s); see -S."
)
_show_error_option = click.option(
    "-S", "--show-error", is_flag=True, help="With -s: still print the errors."
)
_verbose_option = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Print the request and response heads and the library's trace on stderr "
    "(Authorization and Cookie values hidden).",
)
_user_option = click.option(
    "-u",
    "--user",
    "user",
    metavar="USER:PASSWORD",
    default=None,
    callback=converted(basic_auth),
    help="HTTP Basic authentication.",
)
_user_agent_option = click.option(
    "-A", "--user-agent", metavar="NAME", default=None, help="The User-Agent header to send."
)
_location_option = click.option(
    "-L",
    "--location",
    is_flag=True,
    help="Follow redirects (accepted for curl's sake: wxtransfer always follows them).",
)
_max_redirs_option = click.option(
    "--max-redirs",
    type=click.IntRange(min=0),
    metavar="N",
    default=None,
    help="Follow at most N redirects (default 10; more is exit 47).",
)
_write_out_option = click.option(
    "-w",
    "--write-out",
    metavar="FORMAT",
    default=None,
    callback=converted(write_out_format),
    help="Print FORMAT on stdout after each transfer: %{http_code}, %{size_download}, "
    "%{time_total}, %{url_effective}, %{num_redirects}, %{content_type}, %{exitcode}, "
    "%{errormsg} ... (curl's; @FILE reads it from a file, @- from stdin).",
)


def _request_header(
    header: dict[str, str],
    *,
    user: str | None = None,
    user_agent: str | None = None,
    byte_range_value: str | None = None,
    time_cond: tuple[str, str, str | None] | None = None,
) -> dict[str, str]:
    """The request's headers: those curl's options make, then ``-H`` (which wins)."""
    made: dict[str, str] = {}
    if user_agent is not None:
        made["User-Agent"] = user_agent
    if user is not None:
        made["Authorization"] = user
    if byte_range_value is not None:
        made["Range"] = byte_range_value
    if time_cond is not None:
        made[time_cond[0]] = time_cond[1]
    given = {name.lower() for name in header}
    return {**{k: v for k, v in made.items() if k.lower() not in given}, **header}


# --------------------------------------------------------------------------- upload


@cli.command()
@click.argument("url")
@click.argument("file", type=click.Path(path_type=str), required=False)
@click.option("--name", default="file", show_default=True, help="Multipart field name of FILE.")
@click.option(
    "-F",
    "--form",
    "form",
    multiple=True,
    metavar="KEY=VALUE|KEY=@FILE",
    callback=parse_form,
    help="A text field, or with @ a file to attach (repeatable; the same name may repeat). "
    "Fields go first, then the files in order. With --resumable: the upload's metadata.",
)
@click.option(
    "--form-string",
    "form_string",
    multiple=True,
    metavar="KEY=VALUE",
    callback=parse_form,
    help="A text field taken literally, even when it starts with @ (repeatable).",
)
@click.option(
    "--resumable",
    is_flag=True,
    help="Upload FILE with tus 1.0 to URL (a tus endpoint); the same command continues an "
    "upload that was cut, stopped or killed.",
)
@header_option
@_user_option
@_user_agent_option
@_location_option
@_max_redirs_option
@robustness_options
@_write_out_option
@json_option
@quiet_option
@_silent_option
@_show_error_option
@fail_option
@runtime_options
def upload(
    url: str,
    file: str | None,
    name: str,
    form: list[tuple[str, str]],
    form_string: list[tuple[str, str]],
    resumable: bool,
    header: dict[str, str],
    user: str | None,
    user_agent: str | None,
    location: bool,
    max_redirs: int | None,
    robust: Robustness,
    write_out: str | None,
    as_json: bool,
    quiet: bool,
    silent: bool,
    show_error: bool,
    fail_http: bool,
    settings: RuntimeSettings,
) -> None:
    """Upload FILE to URL as multipart/form-data (like wx.uploadFile), with the files of
    -F NAME=@PATH, all in one request.

    The response body is printed on stdout (with --resumable: the upload's URL).
    """
    api = "uploadFile"
    fields, attached = split_form(form, form_string)
    files = ([(name, file)] if file is not None else []) + attached
    if not files:
        raise click.UsageError("nothing to upload: give FILE, or -F NAME=@FILE")
    if resumable and (file is None or attached):
        raise click.UsageError("--resumable uploads one FILE (-F KEY=VALUE is its metadata)")
    header = _request_header(header, user=user, user_agent=user_agent)
    hide_errors = silent and not show_error
    # Interrupt first: its handlers stay until the runtime has closed and removed its files.
    with (
        Interrupt() as interrupt,
        settings.build() as runtime,
        make_reporter(quiet or silent) as reporter,
    ):
        label = "upload " + ", ".join(os.path.basename(path) for _, path in files)
        tracker = reporter.track(label)

        def on_progress(p: UploadProgress) -> None:
            tracker.update(p.total_bytes_sent, p.total_bytes_expected_to_send)

        def listen(task: Task[Any, Any]) -> None:
            """Before the transfer starts: a retry event is not replayed to a late listener."""
            show_retries(task, tracker, label, robust)
            task.on_progress_update(on_progress)

        with before_start(listen):
            task: UploadTask
            if resumable:
                assert file is not None
                task = runtime.upload_resumable(
                    url, file, metadata=fields, header=header, **robust.kwargs()
                )
            else:
                task = runtime.upload_file(
                    url,
                    files=files,
                    header=header,
                    form_data=fields,
                    max_redirects=max_redirs,
                    **robust.kwargs(),
                )
        try:
            res = wait(task, interrupt)
        except errors.TransferError as exc:
            reporter.close()
            if resumable and not isinstance(exc, errors.InvalidArgumentError) and not silent:
                with contextlib.suppress(OSError):
                    click.echo(
                        "the server keeps what it received: run the same command again to "
                        "continue.",
                        err=True,
                    )
            if interrupt.interrupted:
                exit_interrupted(api, as_json=as_json, code=interrupt.exit_code, quiet=silent)
            exit_failure(exc, as_json=as_json, quiet=hide_errors)
        reporter.close()
    if interrupt.interrupted:
        exit_interrupted(api, as_json=as_json, code=interrupt.exit_code, quiet=silent)
    if fail_http and res.status_code >= 400:
        http_error(api, res.status_code, as_json=as_json, quiet=hide_errors)
    if as_json:
        print_json(res.to_dict())
    else:
        click.echo(res.data, nl=not res.data.endswith("\n"))
    if write_out is not None:
        outcome = Outcome(
            url,
            status=res.status_code,
            size=len(res.data.encode("utf-8")),
            header=res.header,
            profile=res.profile,
        )
        profile = res.profile or {}
        if profile.get("fetchStart") and profile.get("responseEnd"):
            outcome.seconds = max(0.0, (profile["responseEnd"] - profile["fetchStart"]) / 1000)
        click.echo(render_write_out(write_out, outcome), nl=False)


# --------------------------------------------------------------------------- download


def _read_url_list(source: str) -> list[str]:
    """``-i FILE``: one URL per line (``-`` for stdin); blank lines and ``#`` comments
    are skipped, as wget and aria2 read them."""
    try:
        if source == "-":
            text = sys.stdin.read()
        else:
            with open(source, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {source}: {exc.strerror or exc}", param_hint="'-i'"
        ) from None
    urls = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            urls.append(line.split()[0])
    return urls


def _targets(
    urls: list[str], order: list[str], outputs: tuple[str, ...], folder: str
) -> list[Target]:
    """curl's pairing: the n-th ``-o PATH`` or ``-O`` goes with the n-th URL; URLs past
    them get their remote name."""
    if len(order) > len(urls):
        if len(urls) == 1:
            raise click.UsageError("use -o PATH or -O, not both, for one URL")
        raise click.UsageError(
            f"{len(order)} -o/-O options for {len(urls)} URLs: one (at most) for each URL"
        )
    paths = iter(outputs)
    targets = []
    for i, url in enumerate(urls):
        output = next(paths) if i < len(order) and order[i] == "o" else None
        targets.append(Target(url, output, folder))
    return targets


@cli.command(cls=OrderedOutputs)
@click.argument("urls", nargs=-1, metavar="URL...")
@click.option(
    "-o",
    "--output",
    multiple=True,
    type=click.Path(path_type=str),
    help="Save the URL in the same place (1st -o/-O: 1st URL ...) to this path, or into "
    "this folder under the remote name; '-' writes the body to stdout.",
)
@click.option(
    "-O",
    "--remote-name",
    count=True,
    help="Save the URL in the same place under the name from Content-Disposition or the "
    "URL (the default).",
)
@click.option(
    "-i",
    "--input-file",
    metavar="FILE",
    default=None,
    help="Also download the URLs in FILE, one a line ('-': stdin; # starts a comment).",
)
@click.option(
    "-P",
    "--output-dir",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Save into DIR (made if missing): remote names and relative -o paths.",
)
@click.option(
    "-j",
    "--parallel",
    type=click.IntRange(1, 100),
    default=5,
    show_default=True,
    metavar="N",
    help="Download up to N URLs at once.",
)
@header_option
@_user_option
@_user_agent_option
@click.option(
    "-r",
    "--range",
    "byte_range_value",
    metavar="START-END",
    default=None,
    callback=converted(byte_range),
    help="Ask for these bytes only (0-499, 500-, -500): the server's 206 is the result.",
)
@click.option(
    "-z",
    "--time-cond",
    "time_cond",
    metavar="DATE|FILE",
    default=None,
    callback=converted(time_condition),
    help="Only if modified since DATE or FILE's mtime (-DATE: only if not); a 304 saves nothing.",
)
@click.option(
    "--compressed",
    is_flag=True,
    help="Ask for gzip, br, zstd or deflate (what libcurl decodes) and save the decoded bytes.",
)
@_location_option
@_max_redirs_option
@robustness_options
@click.option(
    "-C",
    "--continue",
    "resume",
    is_flag=True,
    help="Keep the bytes of a failed or interrupted download in PATH.wxpart and continue "
    "them with the same command (validated: a changed file starts over).",
)
@click.option(
    "--checksum",
    metavar="ALGO:HEX",
    default=None,
    help="Check the file against this digest (md5, sha1, sha256, sha512) before it takes its name.",
)
@_write_out_option
@json_option
@quiet_option
@_silent_option
@_show_error_option
@_verbose_option
@fail_option
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@runtime_options
@click.pass_context
def download(
    ctx: click.Context,
    urls: tuple[str, ...],
    output: tuple[str, ...],
    remote_name: int,
    input_file: str | None,
    output_dir: str | None,
    parallel: int,
    header: dict[str, str],
    user: str | None,
    user_agent: str | None,
    byte_range_value: str | None,
    time_cond: tuple[str, str, str | None] | None,
    compressed: bool,
    location: bool,
    max_redirs: int | None,
    robust: Robustness,
    resume: bool,
    checksum: str | None,
    write_out: str | None,
    as_json: bool,
    quiet: bool,
    silent: bool,
    show_error: bool,
    verbose: bool,
    fail_http: bool,
    force: bool,
    settings: RuntimeSettings,
) -> None:
    """Download each URL to a file (like wx.downloadFile), up to -j at once.

    A file is named after the response's Content-Disposition or the URL's path, made
    safe (a plain name in the current folder or -P DIR), unless -o names it. An existing
    file is never overwritten without --force. Each saved path is printed on stdout;
    with several URLs a summary table follows on stderr.
    """
    all_urls = list(urls) + (_read_url_list(input_file) if input_file is not None else [])
    if not all_urls:
        raise click.UsageError("Missing argument 'URL...' (or -i FILE).")
    order = ctx.meta.get(OUTPUT_ORDER, [])
    folder = output_dir or "."
    targets = _targets(all_urls, order, output, folder)
    if resume and any(t.output == "-" for t in targets):
        raise click.UsageError("-C keeps a file: not with -o -")
    if resume and byte_range_value is not None:
        raise click.UsageError("-r asks for a part, -C for the rest of the whole: not both")
    if resume and compressed:
        raise click.UsageError(
            "--compressed and -C do not go together (decoded bytes cannot be continued)"
        )
    if output_dir is not None:
        try:
            os.makedirs(output_dir, exist_ok=True)
        except OSError as exc:
            raise click.BadParameter(
                f"cannot make {output_dir}: {exc.strerror or exc}", param_hint="'-P'"
            ) from None
    header = _request_header(
        header,
        user=user,
        user_agent=user_agent,
        byte_range_value=byte_range_value,
        time_cond=time_cond,
    )
    shown = dict(header)  # -v: what is sent, with what libcurl adds by itself
    if not any(k.lower() == "user-agent" for k in header):
        shown["User-Agent"] = default_user_agent()
    if compressed:
        shown["Accept-Encoding"] = "(every encoding libcurl decodes)"
    opts = DownloadOptions(
        header=header,
        robust=robust,
        resume=resume,
        checksum=checksum,
        as_json=as_json,
        quiet=quiet,
        silent=silent,
        show_error=show_error,
        verbose=verbose,
        fail_http=fail_http,
        force=force,
        max_redirects=max_redirs,
        compressed=compressed,
        write_out=write_out,
        parallel=parallel,
        time_condition=time_cond is not None,
        shown_header=shown,
        update_path=os.path.abspath(time_cond[2]) if time_cond and time_cond[2] else None,
    )
    settings = dataclasses.replace(settings, max_downloads=max(parallel, 1))
    run_downloads(targets, opts, settings)


# --------------------------------------------------------------------------- serve, demo


@contextlib.contextmanager
def _server_extra(command: str) -> Iterator[None]:
    """Around the import of the dev server: without aiohttp (the ``server`` extra), a
    one-line error (exit 1) that says what to install instead of a traceback."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "aiohttp":
            raise
        raise click.ClickException(
            f"'wxtransfer {command}' needs aiohttp, which comes with the server extra: "
            "pip install 'wxtransfer[server]'"
        ) from None


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--root",
    default="wxtransfer-files",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder uploads are stored in (created if missing).",
)
@click.option("--max-size", type=SIZE, default=None, help="Largest upload body (e.g. 100MiB).")
@click.option("--token", default=None, help="Require 'Authorization: Bearer TOKEN'.")
def serve(host: str, port: int, root: Path, max_size: int | None, token: str | None) -> None:
    """Run the development server: POST /upload, GET /files/NAME, GET / lists files."""
    with _server_extra("serve"):
        from .. import _server

    if token is not None and not token:
        raise click.BadParameter("must not be empty", param_hint="--token")
    try:
        _server.serve(host, port, root=root, max_size=max_size, token=token)
    except OSError as exc:
        raise click.ClickException(
            f"cannot serve on {host}:{port}: {exc.strerror or exc}"
        ) from None


@contextlib.contextmanager
def demo_reporter() -> Iterator[Reporter]:
    """The demo's bars: live on a terminal, one plain line per 10 % otherwise (CI logs)."""
    if sys.stderr.isatty():
        reporter: Reporter = RichReporter(Console(stderr=True, force_terminal=True))
    else:
        reporter = PlainReporter()
    with reporter:
        yield reporter


def _demo_fail(exc: errors.TransferError) -> NoReturn:
    exit_failure(exc, as_json=False)


def _demo_interrupted(api: str, code: int) -> NoReturn:
    exit_interrupted(api, as_json=False, code=code)


@cli.command()
@click.option(
    "--size",
    type=SIZE,
    default="256MiB",
    show_default=True,
    help="Size of the sample file (256MiB, 10MB, 1048576 ...).",
)
def demo(size: int) -> None:
    """Round trip through a local dev server: upload a sample file, download it, compare."""
    with _server_extra("demo"):
        from .. import _demo

    # The demo sits below the command line (it imports none of it): the command lends it
    # its signal handling, bars and exits.
    tools = _demo.DemoTools(
        interrupt=Interrupt,
        wait=wait,
        reporter=demo_reporter,
        fail=_demo_fail,
        interrupted=_demo_interrupted,
        human_size=human_size,
    )
    _demo.run(size, tools)


def main(argv: list[str] | None = None) -> None:
    """The command line; the console script and ``python -m wxtransfer`` reach it through
    ``wxtransfer.__main__.main``, which says which extra to install when click or rich is
    missing."""
    # --timeout is documented in milliseconds: the library's warning is for Python callers.
    warnings.filterwarnings("ignore", category=TimeoutUnitWarning)
    cli.main(args=argv, prog_name="wxtransfer")
