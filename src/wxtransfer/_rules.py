"""Platform rules: make a runtime refuse what a WeChat mini program's network layer refuses.

``Runtime(rules=WeChatRules(...))`` applies REFERENCE.md §5 and §6 so that a backend can be
checked before release. Each rule is one check function below; each refusal is a
``RuleError`` whose errMsg starts as the platform's (``downloadFile:fail url not in domain
list``, errno 600002; ``downloadFile:fail exceed max file size``, errno 603301) and goes on
to say which rule refused and how to fix it.

Where the checks run:

- at call time, before anything is sent: :meth:`WeChatRules.check_url` (``check_https``,
  ``check_not_ip_or_localhost``, ``check_domain_allowed``, ``check_port``), and the fixed
  ``Referer`` is added to the request (:meth:`WeChatRules.admit`);
- in the engine, hop by hop, before the next host is contacted: ``check_redirect``;
- on each hop's easy handle: ``configure_tls`` (TLS 1.2 or newer, verification on);
- while a download arrives: ``check_download_size`` (announced length, then bytes received);
- by the runtime: the saved-file quota, the concurrency limit and ``networkTimeout``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import pycurl

from ._errors import Errno, NetworkError, RuleError, TransferError
from ._options import Api, Request

__all__ = [
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "DEFAULT_NETWORK_TIMEOUT_MS",
    "DEFAULT_SAVED_QUOTA_BYTES",
    "Domain",
    "WeChatRules",
    "check_domain_allowed",
    "check_download_size",
    "check_https",
    "check_not_ip_or_localhost",
    "check_port",
    "check_redirect",
    "configure_tls",
    "explain_failure",
    "parse_domain",
    "referer",
]

DEFAULT_MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024  # "200MB" per download ([DL])
DEFAULT_SAVED_QUOTA_BYTES = 200 * 1024 * 1024  # cache + user files together ([FS])
DEFAULT_MAX_CONCURRENT = 10  # wx.request / uploadFile / downloadFile ([NET])
DEFAULT_NETWORK_TIMEOUT_MS = 60000  # app.json networkTimeout default ([NET])

_LIST_NAME: dict[Api, str] = {"uploadFile": "upload_domains", "downloadFile": "download_domains"}
_OTHER_API: dict[Api, Api] = {"uploadFile": "downloadFile", "downloadFile": "uploadFile"}
_NOT_IN_LIST = "url not in domain list"
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_TOKEN = re.compile(r"^[A-Za-z0-9._-]+$")
_APP_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_FORBIDDEN_DOMAINS = frozenset({"api.weixin.qq.com"})  # "api.weixin.qq.com cannot be configured"
_TIMEOUT_KEYS = ("request", "connectSocket", "uploadFile", "downloadFile")
_TLS_CODES = frozenset({35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91, 98})


# ---- domains -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Domain:
    """One allowlist entry: a host name and the one port it allows (None: no port at all)."""

    host: str
    port: int | None = None

    def __str__(self) -> str:
        return f"https://{self.host}" + (f":{self.port}" if self.port is not None else "")


def _normalize_host(host: str) -> str:
    host = host.strip().lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return host
    return host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def parse_domain(entry: str | Domain) -> Domain:
    """Read an allowlist entry as the console shows it: ``https://host`` or
    ``https://host:port``; a bare ``host`` or ``host:port`` is accepted too.

    Raises ``ValueError`` for anything the console would not accept: another scheme, a path,
    a wildcard, an IP address, ``localhost``, a bad port.
    """
    if isinstance(entry, Domain):
        return entry
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError(f"a domain entry should be a non-empty str, not {entry!r}")
    text = entry.strip()
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme.lower() != "https":
            raise ValueError(
                f"domain {entry!r}: uploadFile and downloadFile domains must be https "
                f"(write https://{rest.rstrip('/')})"
            )
    else:
        rest = text
    rest = rest.rstrip("/")
    if any(c in rest for c in "/?#@ \t"):
        raise ValueError(
            f"domain {entry!r}: write only https://host or https://host:port, "
            "without a path, query or user"
        )
    if "*" in rest:
        raise ValueError(f"domain {entry!r}: wildcards are not supported; list each host")
    try:
        parts = urllib.parse.urlsplit("https://" + rest)
        port = parts.port
    except ValueError:
        raise ValueError(f"domain {entry!r}: bad port (1-65535)") from None
    host = _normalize_host(parts.hostname or "")
    if rest.endswith(":") or (port is not None and not 0 < port < 65536):
        raise ValueError(f"domain {entry!r}: bad port (1-65535)")
    if not host:
        raise ValueError(f"domain {entry!r}: no host name")
    if _is_ip(host) or _is_localhost(host):
        raise ValueError(
            f"domain {entry!r}: an IP address or localhost cannot be a domain; use a host "
            "name (and Runtime(resolve={...}) to reach it on a local address)"
        )
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"domain {entry!r}: {host!r} is not a valid host name")
    if host in _FORBIDDEN_DOMAINS:
        raise ValueError(f"domain {entry!r}: {host} cannot be configured on the platform")
    return Domain(host, port)


def _parse_domains(what: str, entries: Iterable[str | Domain] | str | None) -> tuple[Domain, ...]:
    if entries is None:
        return ()
    if isinstance(entries, str | Domain):
        entries = [entries]
    out: list[Domain] = []
    for entry in entries:
        try:
            domain = parse_domain(entry)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
        if domain not in out:
            out.append(domain)
    return tuple(out)


# ---- the checks ----------------------------------------------------------------------


def _refuse(api: Api, url: str, rule: str, why: str, fix: str) -> RuleError:
    return RuleError(
        f"{api}:fail {_NOT_IN_LIST}: {url} [rule: {rule}] {why}. Fix: {fix}.",
        Errno.URL_NOT_IN_DOMAIN_LIST,
    )


def _explicit_port(parts: urllib.parse.SplitResult) -> int | None:
    port = parts.port
    if port is None and parts.netloc.rpartition("@")[2].endswith(":"):
        return 0  # "https://host:/" names an (empty) port
    return port


def check_https(api: Api, url: str) -> None:
    """Rule "https only": uploadFile and downloadFile may use only https URLs."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "https":
        fixed = urllib.parse.urlunsplit(("https", *parts[1:]))
        raise _refuse(
            api,
            url,
            "https only",
            f"the platform sends uploadFile/downloadFile only over https, not {parts.scheme}",
            f"serve it over https with a valid certificate and call {fixed}",
        )


def check_not_ip_or_localhost(api: Api, url: str) -> None:
    """Rule "no IP address, no localhost": the host must be a domain name."""
    host = _normalize_host(urllib.parse.urlsplit(url).hostname or "")
    if _is_ip(host) or _is_localhost(host):
        kind = "localhost" if _is_localhost(host) else "an IP address"
        raise _refuse(
            api,
            url,
            "no IP address or localhost",
            f"{host} is {kind}, and only configured domain names may be used",
            "give the server a domain name, list it in "
            f"{_LIST_NAME[api]} and, to test locally, map it with "
            f'Runtime(resolve={{"your.domain": "{host}"}})',
        )


def check_domain_allowed(
    api: Api, url: str, allowed: Iterable[Domain], other: Iterable[Domain] = ()
) -> None:
    """Rule "domain allowlist": the host must be on that API's list, exactly.

    A parent domain does not cover its subdomains, and the other API's list does not count.
    """
    host = _normalize_host(urllib.parse.urlsplit(url).hostname or "")
    allowed = tuple(allowed)
    if any(d.host == host for d in allowed):
        return
    list_name = _LIST_NAME[api]
    notes: list[str] = []
    parents = sorted({d.host for d in allowed if host.endswith("." + d.host)})
    if parents:
        notes.append(f"{', '.join(parents)} is listed, but a parent domain does not cover {host}")
    if any(d.host == host for d in other):
        other_list = _LIST_NAME[_OTHER_API[api]]
        notes.append(f"{host} is in {other_list}, which {api} does not use")
    why = f"{host} is not in {list_name}" + ("; " + "; ".join(notes) if notes else "")
    port = _explicit_port(urllib.parse.urlsplit(url))
    entry = f"https://{host}" + (f":{port}" if port else "")
    raise _refuse(
        api,
        url,
        "domain allowlist",
        why,
        f"add {entry} to {list_name} and to the {api} server domains in the mini program "
        "console (Development > Development Settings > Server Domain)",
    )


def check_port(api: Api, url: str, allowed: Iterable[Domain]) -> None:
    """Rule "port": a configured port allows only that port; an entry without a port allows
    no explicit port in the URL, not even :443."""
    parts = urllib.parse.urlsplit(url)
    host = _normalize_host(parts.hostname or "")
    port = _explicit_port(parts)
    entries = [d for d in allowed if d.host == host]
    if any(d.port == port for d in entries) or not entries:
        return
    list_name = _LIST_NAME[api]
    configured = sorted(d.port for d in entries if d.port is not None)
    bare = any(d.port is None for d in entries)
    if port is None:
        why = f"{host} is listed only with port {', '.join(map(str, configured))}"
        fix = (
            f"call it with the port (https://{host}:{configured[0]}/...), or add "
            f"https://{host} to {list_name}"
        )
    else:
        shown = port if port else "(empty)"
        if bare and not configured:
            why = f"{host} is listed without a port, so the URL may not name one, not even :{shown}"
        else:
            listed = ", ".join(map(str, configured)) + (" or no port" if bare else "")
            why = f"{host} is listed with port {listed}, not {shown}"
        if port == 443:
            fix = f"drop :443 from the URL, or add https://{host}:443 to {list_name}"
        else:
            fix = f"add https://{host}:{shown} to {list_name}, or serve on the listed port"
    raise _refuse(api, url, "port", why, fix)


def check_redirect(api: Api, url: str, target: str, rules: WeChatRules) -> None:
    """Rule "redirects stay on allowed hosts": a redirect target must pass every URL rule
    before it is contacted."""
    try:
        rules.check_url(api, target)
    except RuleError as exc:
        detail = exc.err_msg.partition(f"{_NOT_IN_LIST}: ")[2]
        raise RuleError(
            f"{api}:fail {_NOT_IN_LIST}: redirect from {url} to {detail}", exc.errno
        ) from None


def check_download_size(api: Api, size: int, limit: int, *, announced: bool) -> None:
    """Rule "200 MB per download": refuse as soon as the announced Content-Length, or the
    bytes received so far, pass the limit."""
    if size <= limit:
        return
    what = f"Content-Length {size}" if announced else f"more than {limit} bytes received"
    raise RuleError(
        f"{api}:fail exceed max file size: {what} [rule: max download size] a download may "
        f"be at most {_human(limit)} ({limit} bytes). Fix: serve a smaller file, or split "
        "it into parts.",
        Errno.EXCEED_MAX_FILE_SIZE,
    )


def configure_tls(curl: Any) -> None:
    """Rule "TLS 1.2 or newer, certificates verified": set on every hop's easy handle."""
    curl.setopt(pycurl.SSLVERSION, pycurl.SSLVERSION_TLSv1_2)
    curl.setopt(pycurl.SSL_VERIFYPEER, 1)
    curl.setopt(pycurl.SSL_VERIFYHOST, 2)


def explain_failure(error: TransferError, code: int) -> TransferError:
    """Say which rule a TLS failure breaks and how to fix it; other errors pass unchanged."""
    if not isinstance(error, NetworkError) or code not in _TLS_CODES:
        return error
    if code == 60:
        hint = (
            "[rule: valid certificate] the certificate must verify as on phones. Fix: serve "
            "the full chain including intermediate certificates, with a certificate that is "
            "not expired and names this host."
        )
    else:
        hint = (
            "[rule: TLS 1.2 or newer] the handshake failed with TLS 1.2+ and verification "
            "on. Fix: enable TLS 1.2 or 1.3 on the server and serve a chain that verifies."
        )
    explained = NetworkError(f"{error.err_msg} {hint}", error.errno, curl_code=error.curl_code)
    explained.__cause__ = error.__cause__
    return explained


def referer(app_id: str, version: str) -> str:
    """The fixed Referer of every request: ``https://servicewechat.com/{appid}/{version}/page-frame.html``."""
    return f"https://servicewechat.com/{app_id}/{version}/page-frame.html"


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


# ---- the rules object ----------------------------------------------------------------


def _check_int(what: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} should be an int >= {minimum}, not {value!r}")
    return value


def _check_timeouts(value: Mapping[str, Any] | None) -> Mapping[str, int]:
    timeouts = {
        "uploadFile": DEFAULT_NETWORK_TIMEOUT_MS,
        "downloadFile": DEFAULT_NETWORK_TIMEOUT_MS,
    }
    if value is None:
        return MappingProxyType(timeouts)
    if not isinstance(value, Mapping):
        raise ValueError(f"network_timeout should be a dict, not {type(value).__name__}")
    for key, ms in value.items():
        if key not in _TIMEOUT_KEYS:
            raise ValueError(f"network_timeout has an unknown key {key!r}")
        if isinstance(ms, float) and ms.is_integer():
            ms = int(ms)
        if key in timeouts:
            timeouts[key] = _check_int(f"network_timeout[{key!r}] (ms)", ms, 0)
    return MappingProxyType(timeouts)


@dataclass(frozen=True)
class WeChatRules:
    """The platform's network rules for one mini program (REFERENCE.md §5, §6).

    ``upload_domains`` / ``download_domains`` are the console's "uploadFile合法域名" and
    "downloadFile合法域名" lists: ``https://host`` or ``https://host:port`` (a bare ``host``
    or ``host:port`` is accepted too). ``version`` is the Referer's: ``devtools``, ``0``
    (development, trial and review versions) or the release version.
    ``network_timeout`` is app.json's ``networkTimeout`` (ms; 60000 by default).
    """

    app_id: str
    version: str = "devtools"
    upload_domains: Sequence[str | Domain] = ()
    download_domains: Sequence[str | Domain] = ()
    network_timeout: Mapping[str, int] | None = field(default=None, hash=False)
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
    saved_quota_bytes: int = DEFAULT_SAVED_QUOTA_BYTES
    max_concurrent: int = DEFAULT_MAX_CONCURRENT

    def __post_init__(self) -> None:
        if not isinstance(self.app_id, str) or not _APP_ID.match(self.app_id):
            raise ValueError(
                f"app_id should be the mini program's AppID (wx...), not {self.app_id!r}"
            )
        if not isinstance(self.version, str) or not _TOKEN.match(self.version):
            raise ValueError(
                f"version should be 'devtools', '0' or a release version, not {self.version!r}"
            )
        set_ = object.__setattr__
        set_(self, "upload_domains", _parse_domains("upload_domains", self.upload_domains))
        set_(self, "download_domains", _parse_domains("download_domains", self.download_domains))
        set_(self, "network_timeout", _check_timeouts(self.network_timeout))
        _check_int("max_download_bytes", self.max_download_bytes, 1)
        _check_int("saved_quota_bytes", self.saved_quota_bytes, 0)
        _check_int("max_concurrent", self.max_concurrent, 1)

    # ---- what the runtime and the engine call ----------------------------------------

    @property
    def referer(self) -> str:
        """``https://servicewechat.com/{app_id}/{version}/page-frame.html``."""
        return referer(self.app_id, self.version)

    @property
    def timeouts(self) -> dict[str, int]:
        """``networkTimeout`` for ``uploadFile`` and ``downloadFile``, in ms."""
        return dict(self.network_timeout or {})

    def domains(self, api: Api) -> tuple[Domain, ...]:
        """That API's allowlist, parsed (a tuple of :class:`Domain`)."""
        domains = self.upload_domains if api == "uploadFile" else self.download_domains
        return cast("tuple[Domain, ...]", domains)

    def check_url(self, api: Api, url: str) -> None:
        """Every URL rule, in the order the platform's messages suggest; raises RuleError."""
        allowed = self.domains(api)
        check_https(api, url)
        check_not_ip_or_localhost(api, url)
        check_domain_allowed(api, url, allowed, self.domains(_OTHER_API[api]))
        check_port(api, url, allowed)

    def admit(self, request: Request) -> None:
        """At call time: refuse a URL the platform refuses, else add the fixed Referer."""
        self.check_url(request.api, request.url)
        request.headers.append(("Referer", self.referer))

    def check_redirect(self, api: Api, url: str, target: str) -> None:
        check_redirect(api, url, target, self)

    def check_download_size(self, api: Api, size: int, *, announced: bool) -> None:
        check_download_size(api, size, self.max_download_bytes, announced=announced)

    # ---- from a mini program project -------------------------------------------------

    @classmethod
    def from_project(
        cls,
        project: str | os.PathLike[str],
        domains_file: str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> WeChatRules:
        """Rules from the files a mini program project already has.

        ``project`` is the project folder (with ``project.config.json``, whose ``appid`` and
        ``miniprogramRoot`` are read) or an ``app.json`` file. ``app.json``'s
        ``networkTimeout`` gives the timeouts. ``domains_file`` is a JSON file
        ``{"uploadFile": ["https://..."], "downloadFile": ["https://..."]}``; by default
        ``domains.json`` beside ``project.config.json`` (or ``app.json``) when it exists.
        Keyword arguments (``app_id=``, ``version=``, ``upload_domains=`` ...) override what
        the files say.
        """
        path = Path(project)
        config: dict[str, Any] = {}
        if path.is_dir():
            root = path
            config_path = path / "project.config.json"
            if config_path.is_file():
                config = _read_json(config_path)
            mp_root = config.get("miniprogramRoot") or ""
            if not isinstance(mp_root, str):
                raise ValueError(f"{config_path}: miniprogramRoot should be a str")
            app_json = path / mp_root / "app.json"
            if not app_json.is_file():
                raise ValueError(f"no app.json in {path / mp_root}")
        elif path.is_file():
            root, app_json = path.parent, path
        else:
            raise ValueError(f"{os.fspath(project)!r} is neither a project folder nor app.json")
        app = _read_json(app_json)
        values: dict[str, Any] = {}
        if config.get("appid"):
            values["app_id"] = config["appid"]
        timeout = app.get("networkTimeout")
        if timeout is not None:
            if not isinstance(timeout, dict):
                raise ValueError(f"{app_json}: networkTimeout should be an object")
            values["network_timeout"] = {k: v for k, v in timeout.items() if k in _TIMEOUT_KEYS}
        if domains_file is None and (root / "domains.json").is_file():
            domains_file = root / "domains.json"
        if domains_file is not None:
            domains = _read_json(Path(domains_file))
            unknown = set(domains) - {"uploadFile", "downloadFile", "request", "socket"}
            if unknown:
                raise ValueError(
                    f"{os.fspath(domains_file)}: unknown keys {sorted(unknown)} "
                    '(expected {"uploadFile": [...], "downloadFile": [...]})'
                )
            for key, name in (
                ("uploadFile", "upload_domains"),
                ("downloadFile", "download_domains"),
            ):
                entries = domains.get(key, [])
                if not isinstance(entries, list):
                    raise ValueError(f"{os.fspath(domains_file)}: {key} should be a list")
                values[name] = entries
        values.update(overrides)
        if "app_id" not in values:
            raise ValueError(
                "no AppID: pass app_id= or give the project folder with project.config.json"
            )
        return cls(**values)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} should hold a JSON object")
    return data
