"""Platform rules (issue 5, REFERENCE.md §5-§6): each rule tested both ways.

Every server is an HTTPS server on 127.0.0.1 (tests/servers/tls.py) reached under a real
name with ``Runtime(resolve={name: "127.0.0.1:PORT"}, ca_file=<trustme root>)``. Where the
platform refuses before sending, the server's connection count proves nothing was sent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pycurl
import pytest

import wxtransfer
from tests.helpers import leftovers
from tests.servers.tls import Pki, Received, Reply, TLSServer, tls11_unavailable
from wxtransfer._rules import Domain, configure_tls, parse_domain

APP_ID = "wx0123456789abcdef"
REFERER = f"https://servicewechat.com/{APP_ID}/devtools/page-frame.html"
MiB = 1024 * 1024
WAIT = 15  # seconds any single result may take

Serve = Callable[..., TLSServer]


def rules(**kw: Any) -> wxtransfer.WeChatRules:
    kw.setdefault("app_id", APP_ID)
    kw.setdefault("upload_domains", ["https://upload.example.com"])
    kw.setdefault("download_domains", ["https://download.example.com", "cdn.example.com"])
    return wxtransfer.WeChatRules(**kw)


def outcome(task: Any) -> Any:
    """The result, or the TransferError, of a task (bounded in time)."""
    try:
        return task.result(timeout=WAIT)
    except wxtransfer.TransferError as exc:
        return exc


def wait_until(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def good_context(pki: Pki) -> ssl.SSLContext:
    return pki.context()


@pytest.fixture
def serve(good_context: ssl.SSLContext) -> Iterator[Serve]:
    """``serve(handler=None, context=None) -> TLSServer``, started; stopped at teardown."""
    servers: list[TLSServer] = []

    def factory(
        handler: Callable[[Received, TLSServer], Reply] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> TLSServer:
        srv = TLSServer(context or good_context, handler).start()
        servers.append(srv)
        return srv

    yield factory
    for srv in servers:
        srv.stop()
    errors = [e for srv in servers for e in srv.errors]
    if errors:
        raise errors[0]


@pytest.fixture
def make_runtime(tmp_path: Path, pki: Pki) -> Iterator[Callable[..., wxtransfer.Runtime]]:
    """``make_runtime(rules, {name: server}, **options)``: names map to the servers."""
    made: list[wxtransfer.Runtime] = []

    def factory(
        the_rules: wxtransfer.WeChatRules | None,
        servers: dict[str, TLSServer] | None = None,
        **options: Any,
    ) -> wxtransfer.Runtime:
        rt = wxtransfer.Runtime(
            rules=the_rules,
            resolve={name: srv.address for name, srv in (servers or {}).items()},
            ca_file=pki.ca_file,
            home=tmp_path / "home",
            temp_dir=tmp_path / "tmp",
            **options,
        )
        made.append(rt)
        return rt

    yield factory
    for rt in made:
        rt.close()


@pytest.fixture
def upload_path(tmp_path: Path) -> str:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8" + b"x" * 1000)
    return str(path)


def kept(folder: Path) -> list[str]:
    """Files left under ``folder``, but for the runtime's CA bundle."""
    return [f for f in leftovers(folder) if not f.endswith(".ca-bundle.pem")]


def assert_refused(err: Any, *, errno: int = 600002, api: str = "downloadFile") -> str:
    assert isinstance(err, wxtransfer.RuleError), err
    assert err.errno == errno
    expected = "exceed max file size" if errno == 603301 else "url not in domain list"
    assert err.err_msg.startswith(f"{api}:fail {expected}")
    assert "[rule: " in err.err_msg and "Fix: " in err.err_msg
    return err.err_msg


# ---- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "domain"),
    [
        ("https://upload.example.com", Domain("upload.example.com")),
        ("https://upload.example.com:8443", Domain("upload.example.com", 8443)),
        ("upload.example.com", Domain("upload.example.com")),
        ("upload.example.com:8443", Domain("upload.example.com", 8443)),
        ("HTTPS://Upload.Example.COM/", Domain("upload.example.com")),
        ("https://上传.example.com", Domain("xn--fhq5z.example.com")),
    ],
)
def test_domain_entries_as_the_console_writes_them(entry: str, domain: Domain) -> None:
    assert parse_domain(entry) == domain


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("http://upload.example.com", "must be https"),
        ("wss://upload.example.com", "must be https"),
        ("https://upload.example.com/api", "without a path"),
        ("https://*.example.com", "wildcards"),
        ("https://127.0.0.1", "IP address or localhost"),
        ("https://[::1]:8443", "IP address or localhost"),
        ("localhost:8080", "IP address or localhost"),
        ("https://upload.example.com:0", "bad port"),
        ("https://upload.example.com:99999", "bad port"),
        ("https://upload.example.com:", "bad port"),
        ("https://api.weixin.qq.com", "cannot be configured"),
        ("https://intranet", "not a valid host name"),
        ("", "non-empty"),
    ],
)
def test_bad_domain_entries_are_refused_when_the_rules_are_made(entry: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        wxtransfer.WeChatRules(app_id=APP_ID, download_domains=[entry])


def test_rules_defaults_and_validation() -> None:
    r = wxtransfer.WeChatRules(app_id=APP_ID)
    assert r.max_download_bytes == 200 * MiB
    assert r.saved_quota_bytes == 200 * MiB
    assert r.max_concurrent == 10
    assert r.timeouts == {"uploadFile": 60000, "downloadFile": 60000}
    assert r.version == "devtools"
    assert r.referer == REFERER
    assert r.upload_domains == () and r.download_domains == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.app_id = "wxother"  # type: ignore[misc]
    assert hash(r) == hash(wxtransfer.WeChatRules(app_id=APP_ID))
    assert wxtransfer.WeChatRules(app_id=APP_ID, version="0").referer == (
        f"https://servicewechat.com/{APP_ID}/0/page-frame.html"
    )
    for bad in (
        {"app_id": ""},
        {"app_id": "wx/../x"},
        {"app_id": ".."},
        {"app_id": APP_ID, "version": "1.0/x"},
        {"app_id": APP_ID, "max_download_bytes": 0},
        {"app_id": APP_ID, "max_concurrent": 0},
        {"app_id": APP_ID, "saved_quota_bytes": -1},
        {"app_id": APP_ID, "network_timeout": {"uploadfile": 1000}},
        {"app_id": APP_ID, "network_timeout": {"uploadFile": -1}},
    ):
        with pytest.raises(ValueError):
            wxtransfer.WeChatRules(**bad)
    with pytest.raises(ValueError, match="WeChatRules"):
        wxtransfer.Runtime(rules={"app_id": APP_ID})  # type: ignore[arg-type]


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_from_project_reads_project_config_app_json_and_domains(tmp_path: Path) -> None:
    project = tmp_path / "project"
    _write_json(project / "project.config.json", {"appid": APP_ID, "miniprogramRoot": "mp/"})
    _write_json(
        project / "mp" / "app.json",
        {"pages": ["pages/index/index"], "networkTimeout": {"request": 5000, "uploadFile": 30000}},
    )
    _write_json(
        project / "domains.json",
        {
            "uploadFile": ["https://upload.example.com"],
            "downloadFile": ["https://download.example.com:8443"],
        },
    )
    r = wxtransfer.WeChatRules.from_project(project)
    assert r.app_id == APP_ID
    assert r.timeouts == {"uploadFile": 30000, "downloadFile": 60000}
    assert r.upload_domains == (Domain("upload.example.com"),)
    assert r.download_domains == (Domain("download.example.com", 8443),)

    # app.json given directly, another domain file, keyword overrides
    other = tmp_path / "other.json"
    _write_json(other, {"downloadFile": ["cdn.example.com"]})
    r = wxtransfer.WeChatRules.from_project(
        project / "mp" / "app.json", other, app_id="wxfedcba9876543210", version="0"
    )
    assert r.app_id == "wxfedcba9876543210" and r.version == "0"
    assert r.upload_domains == () and r.download_domains == (Domain("cdn.example.com"),)
    assert r.timeouts["uploadFile"] == 30000

    with pytest.raises(ValueError, match="AppID"):
        wxtransfer.WeChatRules.from_project(project / "mp" / "app.json")
    _write_json(other, {"upload": ["x.example.com"]})
    with pytest.raises(ValueError, match="unknown keys"):
        wxtransfer.WeChatRules.from_project(project, other)
    with pytest.raises(ValueError, match="neither"):
        wxtransfer.WeChatRules.from_project(tmp_path / "missing")


def test_from_project_timeouts_reach_the_runtime(
    tmp_path: Path, serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    _write_json(tmp_path / "p" / "app.json", {"networkTimeout": {"downloadFile": 300}})
    r = wxtransfer.WeChatRules.from_project(
        tmp_path / "p" / "app.json", app_id=APP_ID, download_domains=["download.example.com"]
    )
    srv = serve(_stall)
    rt = make_runtime(r, {"download.example.com": srv})
    start = time.monotonic()
    err = outcome(rt.download_file("https://download.example.com/stall"))
    assert isinstance(err, wxtransfer.TimeoutError) and err.errno == 5, err
    assert time.monotonic() - start < 5


# ---- routes ----------------------------------------------------------------------------


def _ok(req: Received, srv: TLSServer) -> Reply:
    return Reply(body=b"ok", headers=[("Content-Type", "text/plain")])


def _stall(req: Received, srv: TLSServer) -> Reply:
    srv.stopping.wait(10)
    return Reply(body=b"late")


def _redirect_to(location: str, status: int = 302) -> Callable[[Received, TLSServer], Reply]:
    return lambda req, srv: Reply(status, [("Location", location)], b"moved")


# ---- https only ------------------------------------------------------------------------


def test_https_only(serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]) -> None:
    srv = serve(_ok)
    rt = make_runtime(rules(), {"download.example.com": srv})
    err = outcome(rt.download_file("http://download.example.com/a.txt"))
    msg = assert_refused(err)
    assert "https only" in msg and "https://download.example.com/a.txt" in msg
    assert srv.connections == 0
    # allowed: the same host over https
    res = outcome(rt.download_file("https://download.example.com/a.txt"))
    assert res.status_code == 200, res
    assert srv.connections == 1


# ---- the allowlist ---------------------------------------------------------------------


def test_allowlist_exact_host(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    srv = serve(_ok)
    names = ("download.example.com", "evil.example.com", "cdn.example.com")
    rt = make_runtime(rules(), dict.fromkeys(names, srv))
    err = outcome(rt.download_file("https://evil.example.com/a.txt"))
    msg = assert_refused(err)
    assert "evil.example.com is not in download_domains" in msg
    assert "add https://evil.example.com to download_domains" in msg
    assert srv.connections == 0
    for allowed in ("https://download.example.com/a.txt", "https://cdn.example.com/a.txt"):
        assert outcome(rt.download_file(allowed)).status_code == 200
    assert srv.connections == 2


def test_a_parent_domain_does_not_cover_a_subdomain(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    srv = serve(_ok)
    r = rules(download_domains=["https://example.com"])
    rt = make_runtime(r, {"example.com": srv, "files.example.com": srv})
    msg = assert_refused(outcome(rt.download_file("https://files.example.com/a.txt")))
    assert "a parent domain does not cover files.example.com" in msg
    assert "add https://files.example.com to download_domains" in msg
    assert srv.connections == 0
    assert outcome(rt.download_file("https://example.com/a.txt")).status_code == 200


def test_each_api_has_its_own_list(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime], upload_path: str
) -> None:
    srv = serve(_ok)
    rt = make_runtime(rules(), {"upload.example.com": srv, "download.example.com": srv})
    msg = assert_refused(outcome(rt.download_file("https://upload.example.com/a.txt")))
    assert "upload.example.com is in upload_domains, which downloadFile does not use" in msg
    msg = assert_refused(
        outcome(rt.upload_file("https://download.example.com/up", upload_path, "file")),
        api="uploadFile",
    )
    assert "add https://download.example.com to upload_domains" in msg
    assert srv.connections == 0
    res = outcome(rt.upload_file("https://upload.example.com/up", upload_path, "file"))
    assert res.status_code == 200 and res.data == "ok"
    assert srv.connections == 1


# ---- ports -----------------------------------------------------------------------------


def test_no_port_configured_allows_no_explicit_port_not_even_443(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    srv = serve(_ok)
    rt = make_runtime(rules(), {"download.example.com": srv})
    for port, fix in (
        (443, "drop :443 from the URL"),
        (8443, "add https://download.example.com:8443"),
    ):
        msg = assert_refused(outcome(rt.download_file(f"https://download.example.com:{port}/a")))
        assert "[rule: port]" in msg and f"may not name one, not even :{port}" in msg
        assert fix in msg
    assert srv.connections == 0
    assert outcome(rt.download_file("https://download.example.com/a.txt")).status_code == 200


def test_a_configured_port_allows_only_that_port(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    srv = serve(_ok)
    r = rules(download_domains=["https://download.example.com:8443"])
    rt = make_runtime(r, {"download.example.com": srv})
    for url in ("https://download.example.com/a.txt", "https://download.example.com:9091/a"):
        msg = assert_refused(outcome(rt.download_file(url)))
        assert "[rule: port]" in msg and "8443" in msg
    assert srv.connections == 0
    res = outcome(rt.download_file("https://download.example.com:8443/a.txt"))
    assert res.status_code == 200, res
    assert srv.connections == 1


# ---- no IP, no localhost ---------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_no_ip_address_and_no_localhost(
    host: str, serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    srv = serve(_ok)
    rt = make_runtime(rules(), {"download.example.com": srv})
    # the URL points straight at the server: a connection would be counted
    msg = assert_refused(outcome(rt.download_file(f"https://{host}:{srv.port}/a.txt")))
    assert "[rule: no IP address or localhost]" in msg and "resolve=" in msg
    assert srv.connections == 0
    # allowed: the same server under a listed name
    assert outcome(rt.download_file("https://download.example.com/a.txt")).status_code == 200


# ---- the fixed Referer -----------------------------------------------------------------


def test_the_fixed_referer_is_sent_by_both_apis(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime], upload_path: str
) -> None:
    srv = serve(_ok)
    servers = {"upload.example.com": srv, "download.example.com": srv}
    rt = make_runtime(rules(), servers)
    assert outcome(rt.upload_file("https://upload.example.com/up", upload_path, "f")).data == "ok"
    assert outcome(rt.download_file("https://download.example.com/a.txt")).status_code == 200
    assert [r.headers.get("referer") for r in srv.requests] == [REFERER, REFERER]
    # the caller still may not set it
    err = outcome(rt.download_file("https://download.example.com/a", header={"Referer": "x"}))
    assert isinstance(err, wxtransfer.InvalidArgumentError)
    # without rules no Referer is sent
    plain = make_runtime(None, servers)
    outcome(plain.download_file("https://download.example.com/a.txt"))
    assert "referer" not in srv.requests[-1].headers
    # the version is the Referer's
    released = make_runtime(rules(version="1.2.0"), servers)
    outcome(released.download_file("https://download.example.com/a.txt"))
    assert srv.requests[-1].headers["referer"] == (
        f"https://servicewechat.com/{APP_ID}/1.2.0/page-frame.html"
    )


def test_the_referer_is_kept_across_redirects(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    cdn = serve(_ok)
    origin = serve(_redirect_to("https://cdn.example.com/a.txt"))
    rt = make_runtime(rules(), {"download.example.com": origin, "cdn.example.com": cdn})
    assert outcome(rt.download_file("https://download.example.com/a.txt")).status_code == 200
    assert cdn.requests[0].headers["referer"] == REFERER


# ---- TLS -------------------------------------------------------------------------------


def test_a_good_chain_verifies(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    srv = serve(_ok)
    rt = make_runtime(rules(), {"download.example.com": srv})
    res = outcome(rt.download_file("https://download.example.com/a.txt"))
    assert res.status_code == 200, res
    assert srv.handshake_errors == []


def _tls_failure(err: Any, rule: str) -> str:
    assert isinstance(err, wxtransfer.NetworkError), err
    assert err.errno == 600001
    assert err.err_msg.startswith("downloadFile:fail TLS")
    assert f"[rule: {rule}]" in err.err_msg and "Fix: " in err.err_msg
    return err.err_msg


def test_a_leaf_served_without_its_intermediate_fails(
    pki: Pki, serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    srv = serve(_ok, pki.context(chain=False))
    rt = make_runtime(rules(), {"download.example.com": srv})
    msg = _tls_failure(
        outcome(rt.download_file("https://download.example.com/a.txt")), "valid certificate"
    )
    assert "intermediate" in msg
    assert srv.requests == []  # the handshake failed: no request was read


def test_an_expired_leaf_fails(
    pki: Pki, serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    srv = serve(_ok, pki.context(pki.leaf(expired=True)))
    rt = make_runtime(rules(), {"download.example.com": srv})
    msg = _tls_failure(
        outcome(rt.download_file("https://download.example.com/a.txt")), "valid certificate"
    )
    assert "expired" in msg
    assert srv.requests == []


def test_a_certificate_for_another_name_fails(
    pki: Pki, serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    srv = serve(_ok, pki.context(pki.leaf("other.example.org")))
    rt = make_runtime(rules(), {"download.example.com": srv})
    _tls_failure(
        outcome(rt.download_file("https://download.example.com/a.txt")), "valid certificate"
    )
    assert srv.requests == []


def test_tls12_is_enough(
    pki: Pki, serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    ctx = pki.context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    srv = serve(_ok, ctx)
    rt = make_runtime(rules(), {"download.example.com": srv})
    res = outcome(rt.download_file("https://download.example.com/a.txt"))
    assert res.status_code == 200, res
    assert srv.versions == ["TLSv1.2"]


def test_configure_tls_sets_the_floor_at_tls12(pki: Pki) -> None:
    """libcurl's own OpenSSL refuses TLS 1.1 at its default security level anyway, so the
    rule is shown on a handle that would otherwise accept TLS 1.1."""
    reason = tls11_unavailable(pki)
    if reason is not None:
        pytest.skip(reason)

    def fetch(srv: TLSServer, *, rule: bool) -> int:
        c = pycurl.Curl()
        try:
            c.setopt(pycurl.URL, "https://download.example.com/a.txt")
            c.setopt(pycurl.CONNECT_TO, [f"download.example.com::{srv.address}"])
            c.setopt(pycurl.CAINFO, pki.ca_file)
            c.setopt(pycurl.TIMEOUT, 10)
            c.setopt(pycurl.WRITEFUNCTION, lambda data: None)
            c.setopt(pycurl.SSLVERSION, pycurl.SSLVERSION_TLSv1_1)
            c.setopt(pycurl.SSL_CIPHER_LIST, "DEFAULT:@SECLEVEL=0")
            if rule:
                configure_tls(c)
            try:
                c.perform()
            except pycurl.error as exc:
                return int(exc.args[0])
            return 0
        finally:
            c.close()

    srv = TLSServer(pki.context(tls11_only=True), _ok).start()
    try:
        assert fetch(srv, rule=False) == 0  # this handle speaks TLS 1.1...
        assert fetch(srv, rule=True) == 35  # ...until the rule sets TLS 1.2 as the floor
        assert srv.versions == ["TLSv1.1"]
    finally:
        srv.stop()


def test_a_tls11_only_server_fails(
    pki: Pki, serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    reason = tls11_unavailable(pki)
    if reason is not None:
        pytest.skip(reason)
    srv = serve(_ok, pki.context(tls11_only=True))
    rt = make_runtime(rules(), {"download.example.com": srv})
    err = outcome(rt.download_file("https://download.example.com/a.txt"))
    _tls_failure(err, "TLS 1.2 or newer")
    assert srv.connections == 1 and srv.requests == []


def test_verification_stays_on_without_rules(
    pki: Pki, serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    srv = serve(_ok, pki.context(chain=False))
    rt = make_runtime(None, {"download.example.com": srv})
    err = outcome(rt.download_file("https://download.example.com/a.txt"))
    assert isinstance(err, wxtransfer.NetworkError) and err.errno == 600001
    assert "[rule:" not in err.err_msg


# ---- redirects -------------------------------------------------------------------------


def test_a_redirect_to_an_allowed_host_is_followed(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    cdn = serve(_ok)
    origin = serve(_redirect_to("https://cdn.example.com/a.txt"))
    rt = make_runtime(rules(), {"download.example.com": origin, "cdn.example.com": cdn})
    res = outcome(rt.download_file("https://download.example.com/a.txt"))
    assert res.status_code == 200 and res.data_length == 2, res
    assert origin.connections == 1 and cdn.connections == 1


@pytest.mark.parametrize(
    ("location", "says"),
    [
        ("https://evil.example.com/a.txt", "evil.example.com is not in download_domains"),
        ("http://cdn.example.com/a.txt", "https only"),
        ("https://cdn.example.com:8443/a.txt", "[rule: port]"),
        ("https://127.0.0.1/a.txt", "no IP address or localhost"),
    ],
)
def test_a_redirect_to_a_refused_url_is_not_followed(
    location: str,
    says: str,
    serve: Serve,
    make_runtime: Callable[..., wxtransfer.Runtime],
    tmp_path: Path,
) -> None:
    target = serve(_ok)
    origin = serve(_redirect_to(location))
    servers = {
        "download.example.com": origin,
        "evil.example.com": target,
        "cdn.example.com": target,
    }
    rt = make_runtime(rules(), servers)
    msg = assert_refused(outcome(rt.download_file("https://download.example.com/a.txt")))
    assert f"redirect from https://download.example.com/a.txt to {location}" in msg
    assert says in msg
    assert origin.connections == 1
    assert target.connections == 0  # checked before the next host was contacted
    assert kept(tmp_path / "tmp") == []


def test_upload_redirects_follow_the_upload_list(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime], upload_path: str
) -> None:
    target = serve(_ok)
    origin = serve(_redirect_to("https://files.example.com/up", 307))
    servers = {"upload.example.com": origin, "files.example.com": target}
    rt = make_runtime(rules(), servers)
    msg = assert_refused(
        outcome(rt.upload_file("https://upload.example.com/up", upload_path, "file")),
        api="uploadFile",
    )
    assert "add https://files.example.com to upload_domains" in msg
    assert target.connections == 0
    allowed = rules(upload_domains=["upload.example.com", "files.example.com"])
    rt = make_runtime(allowed, servers)
    res = outcome(rt.upload_file("https://upload.example.com/up", upload_path, "file"))
    assert res.status_code == 200 and res.data == "ok", res
    assert target.connections == 1 and len(target.requests[0].body) > 1000


# ---- the download size cap -------------------------------------------------------------


def _announce(length: int) -> Callable[[Received, TLSServer], Reply]:
    """Announce ``length`` bytes, send a few, then stall (until the client leaves)."""

    def body(srv: TLSServer) -> Iterator[bytes]:
        yield b"x" * 1024
        srv.stopping.wait(10)

    return lambda req, srv: Reply(headers=[("Content-Length", str(length))], body=body(srv))


def _stream(total: int, *, stall_after: int | None = None, chunked: bool = True) -> Any:
    """Stream ``total`` bytes with no length; stall for up to 10 s after ``stall_after``."""

    def body(srv: TLSServer) -> Iterator[bytes]:
        sent, stalled = 0, False
        while sent < total:
            if stall_after is not None and not stalled and sent >= stall_after:
                stalled = True
                srv.stopping.wait(10)
            piece = min(64 * 1024, total - sent)
            yield b"y" * piece
            sent += piece

    return lambda req, srv: Reply(body=body(srv), chunked=chunked)


def test_default_cap_refuses_an_announced_length_over_200_mib(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime], tmp_path: Path
) -> None:
    srv = serve(_announce(200 * MiB + 1))
    rt = make_runtime(rules(), {"download.example.com": srv})
    assert rt.rules is not None and rt.rules.max_download_bytes == 200 * MiB
    start = time.monotonic()
    err = outcome(rt.download_file("https://download.example.com/big.bin"))
    msg = assert_refused(err, errno=603301)
    assert f"Content-Length {200 * MiB + 1}" in msg and "200 MiB" in msg
    assert time.monotonic() - start < 5  # at the headers, not after a 10 s stall
    assert kept(tmp_path / "tmp") == []


def test_default_cap_lets_exactly_200_mib_through_the_header_check(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime], tmp_path: Path
) -> None:
    srv = serve(_announce(200 * MiB))
    rt = make_runtime(rules(), {"download.example.com": srv})
    task = rt.download_file("https://download.example.com/big.bin")
    headers, progress = threading.Event(), threading.Event()
    task.on_headers_received(lambda h: headers.set())
    task.on_progress_update(lambda p: progress.set() if p.total_bytes_written else None)
    assert headers.wait(WAIT) and progress.wait(WAIT)
    assert not task.done()  # receiving, not refused
    task.abort()
    assert isinstance(outcome(task), wxtransfer.AbortError)
    assert kept(tmp_path / "tmp") == []


def test_a_configured_cap_refuses_an_announced_length_over_it(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime], tmp_path: Path
) -> None:
    srv = serve(lambda req, srv: Reply(body=b"z" * (MiB + 1)))
    rt = make_runtime(rules(max_download_bytes=MiB), {"download.example.com": srv})
    target = tmp_path / "out.bin"
    err = outcome(rt.download_file("https://download.example.com/f.bin", file_path=target))
    assert f"Content-Length {MiB + 1}" in assert_refused(err, errno=603301)
    assert not target.exists() and kept(tmp_path) == []


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
def test_a_stream_with_no_length_fails_as_soon_as_it_passes_the_cap(
    chunked: bool, serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime], tmp_path: Path
) -> None:
    # 3 MiB against a 1 MiB cap; the server stalls 10 s after 1 MiB + 256 KiB
    srv = serve(_stream(3 * MiB, stall_after=MiB + 256 * 1024, chunked=chunked))
    rt = make_runtime(rules(max_download_bytes=MiB), {"download.example.com": srv})
    start = time.monotonic()
    err = outcome(rt.download_file("https://download.example.com/stream"))
    msg = assert_refused(err, errno=603301)
    assert f"more than {MiB} bytes received" in msg and "1 MiB" in msg
    assert time.monotonic() - start < 5  # it did not wait for the stalled rest
    assert kept(tmp_path / "tmp") == []


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
def test_exactly_the_cap_is_allowed(
    chunked: bool, serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    srv = serve(_stream(MiB, chunked=chunked))
    rt = make_runtime(rules(max_download_bytes=MiB), {"download.example.com": srv})
    res = outcome(rt.download_file("https://download.example.com/stream"))
    assert res.status_code == 200 and res.data_length == MiB, res
    fixed = serve(lambda req, srv: Reply(body=b"z" * MiB))
    rt = make_runtime(rules(max_download_bytes=MiB), {"download.example.com": fixed})
    res = outcome(rt.download_file("https://download.example.com/f.bin"))
    assert res.status_code == 200 and res.data_length == MiB, res


def test_without_rules_there_is_no_cap(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    srv = serve(_stream(2 * MiB))
    rt = make_runtime(None, {"evil.example.com": srv})
    res = outcome(rt.download_file(f"https://evil.example.com:{srv.port}/stream"))
    assert res.data_length == 2 * MiB, res


# ---- the saved-file quota --------------------------------------------------------------


def test_saved_files_quota(serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]) -> None:
    srv = serve(lambda req, srv: Reply(body=b"s" * (600 * 1024)))
    servers = {"download.example.com": srv}
    assert make_runtime(rules(), servers)._store.quota_bytes == 200 * MiB
    assert make_runtime(None, servers)._store.quota_bytes is None
    rt = make_runtime(rules(saved_quota_bytes=MiB), servers)
    first = outcome(rt.download_file("https://download.example.com/a.bin"))
    second = outcome(rt.download_file("https://download.example.com/b.bin"))
    rt.save_file(first.temp_file_path)  # 600 KiB of 1 MiB: allowed
    with pytest.raises(wxtransfer.FileError) as info:
        rt.save_file(second.temp_file_path)  # 1200 KiB: over
    assert info.value.errno == 1300202
    assert "the maximum size of the file storage limit is exceeded" in info.value.err_msg
    assert os.path.exists(second.temp_file_path)
    assert len(rt.get_saved_file_list()) == 1


# ---- concurrency -----------------------------------------------------------------------


def _held(release: threading.Event) -> Callable[[Received, TLSServer], Reply]:
    def handler(req: Received, srv: TLSServer) -> Reply:
        release.wait(10)
        return Reply(body=b"ok")

    return handler


def test_at_most_ten_downloads_at_once(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    release = threading.Event()
    srv = serve(_held(release))
    rt = make_runtime(rules(), {"download.example.com": srv})
    tasks = [rt.download_file(f"https://download.example.com/{i}") for i in range(12)]
    try:
        assert wait_until(lambda: srv.active == 10)
        time.sleep(0.3)
        assert srv.connections == 10  # the 11th and 12th wait their turn
    finally:
        release.set()
    assert all(outcome(t).status_code == 200 for t in tasks)
    assert srv.max_active == 10 and srv.connections == 12


def test_the_limit_is_per_api(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime], upload_path: str
) -> None:
    release = threading.Event()
    srv = serve(_held(release))
    servers = {"download.example.com": srv, "upload.example.com": srv}
    rt = make_runtime(rules(max_concurrent=2), servers)
    tasks: list[Any] = [rt.download_file(f"https://download.example.com/{i}") for i in range(3)]
    tasks += [rt.upload_file("https://upload.example.com/up", upload_path, "f") for _ in range(3)]
    try:
        assert wait_until(lambda: srv.active == 4)
        time.sleep(0.3)
        assert srv.connections == 4
    finally:
        release.set()
    assert all(outcome(t).status_code == 200 for t in tasks)
    assert srv.max_active == 4


# ---- networkTimeout --------------------------------------------------------------------


def test_network_timeout_defaults_and_overrides(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime]
) -> None:
    srv = serve(_stall)
    servers = {"download.example.com": srv}
    assert make_runtime(rules(), servers)._timeouts == {"uploadFile": 60000, "downloadFile": 60000}
    rt = make_runtime(rules(network_timeout={"downloadFile": 300}), servers)
    start = time.monotonic()
    err = outcome(rt.download_file("https://download.example.com/stall"))
    assert isinstance(err, wxtransfer.TimeoutError) and err.errno == 5, err
    assert time.monotonic() - start < 5
    # a per-call timeout still wins, as on the platform; so does Runtime(network_timeout=)
    res = outcome(rt.download_file("https://download.example.com/stall", timeout=200))
    assert isinstance(res, wxtransfer.TimeoutError)
    rt2 = make_runtime(rules(), servers, network_timeout={"downloadFile": 200})
    assert rt2._timeouts["downloadFile"] == 200


# ---- without rules ---------------------------------------------------------------------


def test_without_rules_nothing_is_refused(
    serve: Serve, make_runtime: Callable[..., wxtransfer.Runtime], upload_path: str
) -> None:
    srv = serve(_ok)
    rt = make_runtime(None, {"evil.example.com": srv})
    assert rt.rules is None
    res = outcome(rt.download_file(f"https://evil.example.com:{srv.port}/a.txt"))
    assert res.status_code == 200, res
    res = outcome(rt.upload_file("https://evil.example.com:8443/up", upload_path, "f"))
    assert res.status_code == 200, res
    assert srv.connections == 2


# ---- docs/rules.md ---------------------------------------------------------------------


def _doc_examples() -> list[str]:
    text = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text("utf-8")
    section = text.split("## Runnable examples", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_runnable_examples_in_docs_rules_md_run(tmp_path: Path) -> None:
    offline, local_https = _doc_examples()
    env = dict(os.environ, WXTRANSFER_HOME=str(tmp_path / "home"))
    out = subprocess.run(
        [sys.executable, "-c", offline], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line]
    assert len(lines) == 5
    assert all(
        line.startswith("600002 downloadFile:fail url not in domain list: ") for line in lines
    )
    for rule in ("https only", "port", "domain allowlist", "domain allowlist", "no IP address"):
        assert f"[rule: {rule}" in lines.pop(0)
    out = subprocess.run(
        [sys.executable, "-c", local_https], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    full, alone = out.stdout.splitlines()
    assert full == f"full chain: 200 hello, Referer was {REFERER}"
    assert alone.startswith("leaf alone: 600001 downloadFile:fail TLS certificate verification")
    assert alone.endswith("with a certificate that is not expired and names this host.")
