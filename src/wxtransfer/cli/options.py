"""The command line's options: sizes, headers, forms, ``--resolve``, the runtime and
robustness options, and curl's request options (``-r``, ``-z``, ``-u``, ``-A``, ``-w``).

Each parser raises ``click.BadParameter`` / ``click.UsageError`` (exit 2) with what is
wrong, before anything is sent.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import ipaddress
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import click

from .._retry import Retry
from .._rules import WeChatRules
from .._runtime import Runtime

__all__ = [
    "OUTPUT_ORDER",
    "SIZE",
    "OrderedOutputs",
    "Robustness",
    "RuntimeSettings",
    "basic_auth",
    "byte_range",
    "fail_option",
    "header_option",
    "json_option",
    "parse_form",
    "parse_resolve",
    "parse_size",
    "quiet_option",
    "robustness_options",
    "runtime_options",
    "runtime_settings",
    "split_form",
    "time_condition",
    "write_out_format",
]

# --------------------------------------------------------------------------- sizes

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(i?)(b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_size(text: str) -> int:
    """Bytes in ``text``: ``1048576``, ``256MiB``, ``10MB`` (10**7), ``4k`` (4096), ``1.5GiB``.

    ``KiB``/``MiB``/``K``/``M`` are powers of 1024, ``kB``/``MB`` powers of 1000.
    """
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size (examples: 1048576, 256MiB, 10MB)")
    number, prefix, binary, byte = match.groups()
    power = _POWERS[prefix.lower()]
    if binary and not prefix:
        raise ValueError(f"{text!r} is not a size (examples: 1048576, 256MiB, 10MB)")
    base = 1000 if (prefix and byte and not binary) else 1024
    value = float(number) * base**power
    if value != int(value) and power == 0:
        raise ValueError(f"{text!r}: a byte count must be a whole number")
    return int(value)


class SizeType(click.ParamType[int]):
    """A click parameter taking sizes like ``256MiB``, ``10MB`` or ``1048576``."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeType()


# --------------------------------------------------------------------------- headers, forms


def _parse_headers(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    header: dict[str, str] = {}
    for raw in values:
        name, sep, value = raw.partition(":")
        name = name.strip()
        if not sep or not name:
            raise click.BadParameter(f"{raw!r} should look like 'Name: value'", ctx, param)
        header[name] = value.strip()
    return header


def parse_form(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[tuple[str, str]]:
    """``KEY=VALUE`` pairs, in order (``-F``'s ``KEY=@PATH`` is told apart later)."""
    form: list[tuple[str, str]] = []
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{raw!r} should look like key=value", ctx, param)
        form.append((key, value))
    return form


def split_form(
    form: list[tuple[str, str]], literal: list[tuple[str, str]]
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """curl's ``-F``: ``name=@path`` attaches a file, anything else is a text field;
    ``--form-string`` values are text whatever they start with."""
    fields: dict[str, str] = {}
    files: list[tuple[str, str]] = []
    for key, value in form:
        if value.startswith("@"):
            path = value[1:]
            if not path:
                raise click.BadParameter(f"{key}=@ names no file", param_hint="'-F'")
            if ";" in path and not os.path.exists(path):
                raise click.BadParameter(
                    f"{key}={value}: curl's ;type= and ;filename= are not supported (the "
                    "file's name and type are sent as the platform does)",
                    param_hint="'-F'",
                )
            files.append((key, path))
        else:
            fields[key] = value
    for key, value in literal:
        fields[key] = value
    return fields, files


# --------------------------------------------------------------------------- --resolve

_RESOLVE_FORMS = (
    "HOST:ADDR, HOST:ADDR:PORT, HOST:[IPV6] or HOST:[IPV6]:PORT (or curl's HOST:PORT:ADDR)"
)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _port(text: str) -> int | None:
    if text.isascii() and text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    return None


def _runtime_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int | None) -> str:
    """The value ``Runtime(resolve={host: ...})`` takes: ``addr`` or ``addr:port``."""
    if port is None:
        return str(addr)
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


def parse_resolve(entry: str) -> tuple[str, str]:
    """One ``--resolve`` value -> ``(host, value for Runtime(resolve=...))``.

    ``HOST:ADDR`` connects to ADDR on the URL's port; ``HOST:ADDR:PORT`` connects to
    ADDR:PORT whatever the URL's port (like curl's ``--connect-to``); an IPv6 ADDR is
    written in brackets. curl's own ``HOST:PORT:ADDR`` is accepted too and means
    ``HOST:ADDR`` (the mapping then holds for every port of HOST). ADDR is an IP address.
    Raises ``ValueError`` with what is wrong.
    """
    text = entry.strip()
    host, sep, rest = text.partition(":")
    host = host.strip().lower().rstrip(".")
    if not sep or not host or not rest or any(c in host for c in "[]/ \t"):
        raise ValueError(f"{entry!r} should be {_RESOLVE_FORMS}")
    if host.startswith(("-", "+")):
        raise ValueError(f"{entry!r}: curl's '+' and '-' prefixes are not supported")
    if rest.startswith("["):  # HOST:[IPV6] or HOST:[IPV6]:PORT
        inside, close, after = rest[1:].partition("]")
        addr = _ip(inside) if close else None
        if addr is None or addr.version != 6:
            raise ValueError(f"{entry!r}: {rest!r} is not a bracketed IPv6 address")
        if not after:
            return host, _runtime_address(addr, None)
        port = _port(after[1:]) if after.startswith(":") else None
        if port is None:
            raise ValueError(f"{entry!r}: bad port after {inside!r} (1-65535)")
        return host, _runtime_address(addr, port)
    first, sep2, second = rest.partition(":")
    if not sep2:  # HOST:ADDR
        addr = _ip(first)
        if addr is None:
            raise ValueError(f"{entry!r}: {first!r} is not an IP address")
        return host, _runtime_address(addr, None)
    if _port(first) is not None:  # curl's HOST:PORT:ADDR
        addr = _ip(second[1:-1] if second.startswith("[") and second.endswith("]") else second)
        if addr is not None:
            return host, _runtime_address(addr, None)
        if "," in second:
            raise ValueError(f"{entry!r}: give one address, not a list")
        if _ip(rest) is None:
            raise ValueError(f"{entry!r}: {second!r} is not an IP address")
    addr = _ip(first)
    if addr is None:
        if _ip(rest) is not None:
            raise ValueError(f"{entry!r}: write an IPv6 address in brackets: {host}:[{rest}]")
        raise ValueError(f"{entry!r} should be {_RESOLVE_FORMS}")
    port = _port(second)
    if port is None:
        raise ValueError(f"{entry!r}: bad port {second!r} (1-65535)")
    return host, _runtime_address(addr, port)


def _parse_resolve_option(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    resolve: dict[str, str] = {}
    for raw in values:
        try:
            host, addr = parse_resolve(raw)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
        if host in resolve and resolve[host] != addr:
            raise click.BadParameter(f"{host} is given twice ({resolve[host]}, {addr})", ctx, param)
        resolve[host] = addr
    return resolve


# --------------------------------------------------------------------------- runtime options


@dataclass(frozen=True)
class RuntimeSettings:
    """What ``--rules``/``--resolve``/``--cacert`` ask for; :meth:`build` makes the runtime."""

    rules: WeChatRules | None = None
    resolve: Mapping[str, str] = field(default_factory=dict)
    ca_file: str | None = None
    #: downloads run at once (``-j``); the runtime queues the others
    max_downloads: int = 10

    def build(self) -> Runtime:
        return Runtime(
            rules=self.rules,
            resolve=dict(self.resolve),
            ca_file=self.ca_file,
            max_concurrent_downloads=self.max_downloads,
        )


#: The options that only mean something under ``--rules wechat``.
_RULE_FLAGS = (
    ("app_id", "--app-id"),
    ("app_version", "--app-version"),
    ("upload_domains", "--upload-domain"),
    ("download_domains", "--download-domain"),
    ("project", "--project"),
)


def runtime_settings(
    *,
    rules_name: str | None,
    app_id: str | None = None,
    app_version: str | None = None,
    upload_domains: tuple[str, ...] = (),
    download_domains: tuple[str, ...] = (),
    project: str | None = None,
    resolve: Mapping[str, str] | None = None,
    ca_file: str | None = None,
) -> RuntimeSettings:
    """Check the runtime options together; ``click.UsageError`` (exit 2) when they clash."""
    given = {
        "app_id": app_id is not None,
        "app_version": app_version is not None,
        "upload_domains": bool(upload_domains),
        "download_domains": bool(download_domains),
        "project": project is not None,
    }
    rules: WeChatRules | None = None
    if rules_name is None:
        stray = [flag for key, flag in _RULE_FLAGS if given[key]]
        if stray:
            raise click.UsageError(
                f"{', '.join(stray)} only {'applies' if len(stray) == 1 else 'apply'} "
                "under the platform's rules: add --rules wechat"
            )
    else:
        overrides: dict[str, Any] = {}
        if app_id is not None:
            overrides["app_id"] = app_id
        if app_version is not None:
            overrides["version"] = app_version
        if upload_domains:
            overrides["upload_domains"] = list(upload_domains)
        if download_domains:
            overrides["download_domains"] = list(download_domains)
        if project is None and app_id is None:
            raise click.UsageError(
                "--rules wechat needs the mini program's AppID: add --app-id wx... "
                "(or --project DIR, whose project.config.json names it)"
            )
        try:
            if project is not None:
                rules = WeChatRules.from_project(project, **overrides)
            else:
                rules = WeChatRules(**overrides)
        except ValueError as exc:
            message = str(exc)
            for key, flag in (
                ("upload_domains", "--upload-domain"),
                ("download_domains", "--download-domain"),
                ("app_id", "--app-id"),
                ("version", "--app-version"),
            ):
                if message.startswith(key) and key in overrides:
                    message = flag + message[len(key) :]
            if message.startswith("no AppID"):
                message = (
                    f"--project {project}: no AppID there (project.config.json's appid); "
                    "add --app-id wx..."
                )
            raise click.UsageError(message) from None
    return RuntimeSettings(rules=rules, resolve=dict(resolve or {}), ca_file=ca_file)


_runtime_option_decorators: tuple[Callable[[Callable[..., Any]], Callable[..., Any]], ...] = (
    click.option(
        "--rules",
        "rules_name",
        type=click.Choice(["wechat"]),
        default=None,
        help="Apply the mini program platform's network rules (docs/rules.md): https only, "
        "the domain allowlists, ports, the fixed Referer, TLS 1.2+, 200 MB per download ...",
    ),
    click.option(
        "--app-id",
        metavar="ID",
        default=None,
        help="(--rules) The mini program's AppID, used in the Referer.",
    ),
    click.option(
        "--app-version",
        metavar="V",
        default=None,
        help="(--rules) The Referer's version: devtools (the default), 0 or a release version.",
    ),
    click.option(
        "--upload-domain",
        "upload_domains",
        multiple=True,
        metavar="D",
        help="(--rules) An uploadFile server domain, https://host[:port] as the console shows "
        "it (repeatable; replaces the --project list).",
    ),
    click.option(
        "--download-domain",
        "download_domains",
        multiple=True,
        metavar="D",
        help="(--rules) A downloadFile server domain, https://host[:port] (repeatable; "
        "replaces the --project list).",
    ),
    click.option(
        "--project",
        metavar="DIR",
        type=click.Path(exists=True, path_type=str),
        default=None,
        help="(--rules) Read the AppID, networkTimeout and domains.json from a mini program "
        "project folder (or its app.json); the flags above override it.",
    ),
    click.option(
        "--resolve",
        multiple=True,
        metavar="HOST:ADDR[:PORT]",
        callback=_parse_resolve_option,
        help="Connect to ADDR (an IP address; IPv6 in brackets) for HOST, on PORT if given, "
        "else the URL's port; TLS still checks HOST. curl's HOST:PORT:ADDR works too "
        "(repeatable).",
    ),
    click.option(
        "--cacert",
        "ca_file",
        metavar="FILE",
        type=click.Path(exists=True, dir_okay=False, path_type=str),
        default=None,
        help="Also trust the CA certificates in this PEM file (staging or company CAs).",
    ),
)


def runtime_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--rules``, ``--app-id`` ... ``--resolve``, ``--cacert`` to a command, which then
    receives them as one ``settings: RuntimeSettings`` (checked: usage errors come first)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = runtime_settings(
            rules_name=kwargs.pop("rules_name"),
            app_id=kwargs.pop("app_id"),
            app_version=kwargs.pop("app_version"),
            upload_domains=kwargs.pop("upload_domains"),
            download_domains=kwargs.pop("download_domains"),
            project=kwargs.pop("project"),
            resolve=kwargs.pop("resolve"),
            ca_file=kwargs.pop("ca_file"),
        )
        return command(*args, settings=settings, **kwargs)

    decorated: Callable[..., Any] = wrapper
    for option in reversed(_runtime_option_decorators):
        decorated = option(decorated)
    return decorated


# --------------------------------------------------------------------------- common options

header_option = click.option(
    "-H",
    "--header",
    "header",
    multiple=True,
    metavar="'NAME: VALUE'",
    callback=_parse_headers,
    help="Request header (repeatable).",
)
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the result object (statusCode, data/filePath, header, profile, errMsg) "
    "as one line of JSON on stdout; a failure as {errMsg, errno} on stderr (several URLs: "
    "every result on stdout, one per line, with its url).",
)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")

#: The CLI's defaults are curl's, not the platform's: no overall deadline, and a stall
#: (no byte moving) of 30 s ends a transfer, so a dead connection never hangs for ever.
_DEFAULT_STALL_S = 30.0


@dataclass(frozen=True)
class Robustness:
    """``--retry``, ``--retry-delay``, ``--stall-timeout``, ``--limit-rate`` and
    ``--max-time`` / ``--timeout``, as the library's keyword arguments."""

    timeout: int
    retry: Retry | None
    stall_timeout: int
    max_speed: int | None
    connect_timeout: int | None

    def kwargs(self) -> dict[str, Any]:
        return {
            "timeout": self.timeout,
            "retry": self.retry,
            "stall_timeout": self.stall_timeout,
            "max_speed": self.max_speed,
            "connect_timeout": self.connect_timeout,
        }


def robustness_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add curl's options for bad networks; the command receives ``robust: Robustness``."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        timeout_ms: int | None = kwargs.pop("timeout")
        max_time: float | None = kwargs.pop("max_time")
        retries: int = kwargs.pop("retries")
        retry_delay: float | None = kwargs.pop("retry_delay")
        retry_max_time: float | None = kwargs.pop("retry_max_time")
        connect: float | None = kwargs.pop("connect_timeout")
        stall: float | None = kwargs.pop("stall_timeout")
        rate: int | None = kwargs.pop("limit_rate")
        if timeout_ms is not None and max_time is not None:
            raise click.UsageError("use --timeout MS or --max-time SECONDS, not both")
        if max_time is not None:
            timeout_ms = math.ceil(max_time * 1000)
        retry = None
        if retries:
            delay = retry_delay if retry_delay is not None else 1.0
            retry = Retry(
                total=retries,
                backoff=delay,
                max_backoff=delay if retry_delay is not None else 30.0,
                max_time=retry_max_time or None,
            )
        robust = Robustness(
            timeout=timeout_ms if timeout_ms is not None else 0,
            retry=retry,
            stall_timeout=math.ceil((_DEFAULT_STALL_S if stall is None else stall) * 1000),
            max_speed=rate or None,
            connect_timeout=math.ceil(connect * 1000) if connect else None,
        )
        return command(*args, robust=robust, **kwargs)

    decorated: Callable[..., Any] = wrapper
    for option in reversed(_robustness_option_decorators):
        decorated = option(decorated)
    return decorated


_robustness_option_decorators = [
    click.option(
        "--timeout",
        type=click.IntRange(min=0),
        metavar="MS",
        default=None,
        help="Limit for the whole transfer in milliseconds, as on the platform (0: none; "
        "default: none, as curl).",
    ),
    click.option(
        "-m",
        "--max-time",
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        default=None,
        help="The same limit in seconds, as curl's --max-time.",
    ),
    click.option(
        "--retry",
        "retries",
        type=click.IntRange(min=0),
        metavar="N",
        default=0,
        help="Try again up to N times after a failure worth it (cannot connect, reset, "
        "cut, stall, 408/429/500/502/503/504); a download continues where it stopped.",
    ),
    click.option(
        "--retry-delay",
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        default=None,
        help="Wait up to this long between attempts (default: a doubling backoff from 1 s).",
    ),
    click.option(
        "--retry-max-time",
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        default=None,
        help="Start no retry later than this after the first attempt began.",
    ),
    click.option(
        "--connect-timeout",
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        default=None,
        help="Give up connecting after this long (each attempt; retried with --retry).",
    ),
    click.option(
        "--stall-timeout",
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        default=None,
        help=f"End (or retry) a transfer once no byte moved for this long (default "
        f"{_DEFAULT_STALL_S:g}; 0: never).",
    ),
    click.option(
        "--limit-rate",
        type=SIZE,
        metavar="RATE",
        default=None,
        help="At most this many bytes per second, curl's suffixes (500K, 1M).",
    ),
]
fail_option = click.option(
    "-f",
    "--fail",
    "fail_http",
    is_flag=True,
    help="Exit 22 when the server answers with a status >= 400 (a download is removed).",
)


# --------------------------------------------------------------------------- curl's options

_RANGE_RE = re.compile(r"^(\d+-\d*|-\d+)(,(\d+-\d*|-\d+))*$")


def byte_range(text: str) -> str:
    """``-r START-END`` (curl's forms: ``0-499``, ``500-``, ``-500``, ``0-1,5-6``) -> the
    ``Range`` header's value. Raises ``ValueError`` with what is wrong."""
    spec = text.strip()
    if not _RANGE_RE.match(spec):
        raise ValueError(f"{text!r} should be START-END, START- or -LAST (bytes), e.g. 0-499")
    for part in spec.split(","):
        first, _, last = part.partition("-")
        if first and last and int(last) < int(first):
            raise ValueError(f"{text!r}: {part} ends before it starts")
    return f"bytes={spec}"


def time_condition(text: str) -> tuple[str, str, str | None]:
    """``-z DATE|FILE`` -> (header name, HTTP date, the file or None): ``If-Modified-Since``
    the date, or the file's mtime when ``text`` names a file; a leading ``-`` asks
    ``If-Unmodified-Since``,
    as curl's ``-z -DATE``. Dates: RFC 1123 (``Sun, 06 Nov 1994 08:49:37 GMT``), ISO 8601
    (``2024-05-01``, ``2024-05-01T12:00:00+02:00``; UTC without a zone)."""
    unmodified = text.startswith("-")
    value = text[1:] if unmodified else text
    name = "If-Unmodified-Since" if unmodified else "If-Modified-Since"
    import email.utils  # only -z needs it: not every command's start-up

    if os.path.exists(value):
        return name, email.utils.formatdate(os.stat(value).st_mtime, usegmt=True), value
    when: dt.datetime | None = None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            when = None
    if when is None:
        raise ValueError(
            f"{value!r} is neither a file nor a date (e.g. 2024-05-01 or "
            "'Wed, 01 May 2024 12:00:00 GMT')"
        )
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return name, email.utils.format_datetime(when.astimezone(dt.timezone.utc), usegmt=True), None


def basic_auth(text: str) -> str:
    """``-u user:password`` -> the ``Authorization`` header's value (Basic, UTF-8)."""
    user, sep, password = text.partition(":")
    if not sep:
        raise ValueError("give user:password (wxtransfer does not prompt for a password)")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def write_out_format(text: str) -> str:
    """``-w FORMAT``, ``-w @FILE`` or ``-w @-`` (stdin), as curl reads it."""
    if not text.startswith("@"):
        return text
    source = text[1:]
    if source == "-":
        return sys.stdin.read()
    try:
        with open(source, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise ValueError(f"cannot read {source}: {exc.strerror or exc}") from None


def converted(parse: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback that runs ``parse`` on the value (None passes), as a usage error."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None

    return callback


#: ``ctx.meta`` key: ``"o"`` or ``"O"`` for each ``-o`` / ``-O`` given, in their order.
OUTPUT_ORDER = "wxtransfer.output_order"


class OrderedOutputs(click.Command):
    """A command that remembers in which order ``-o`` and ``-O`` came, as curl pairs them
    with the URLs in order: ``URL1 URL2 -O -o two.bin``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            _, _, order = self.make_parser(ctx).parse_args(args=list(args))
        except click.UsageError:  # the real parse below reports it
            order = []
        names = {"output": "o", "remote_name": "O"}
        ctx.meta[OUTPUT_ORDER] = [names[p.name] for p in order if p.name in names]
        return super().parse_args(ctx, args)
