"""The CLI under the platform rules: ``--rules wechat``, ``--app-id``, ``--app-version``,
``--upload-domain``, ``--download-domain``, ``--project``, ``--resolve``, ``--cacert``.

Every server is an HTTPS server on 127.0.0.1 (tests/servers/tls.py) with a trustme chain,
reached under a real-looking name with ``--resolve NAME:127.0.0.1:PORT``. Where a rule
refuses before sending, the server's connection count proves nothing was sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import wxtransfer
from tests.servers.tls import Pki, Received, Reply, TLSServer
from wxtransfer.cli import cli
from wxtransfer.cli.options import RuntimeSettings, parse_resolve

APP_ID = "wx0123456789abcdef"
REFERER = f"https://servicewechat.com/{APP_ID}/devtools/page-frame.html"
DL = "download.example.com"
UP = "upload.example.com"
BODY = bytes(range(256)) * 40  # 10 KiB, every byte value
SUBPROCESS_TIMEOUT = 60

Serve = Callable[..., TLSServer]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder; the runtime's saved files under tmp_path."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("WXTRANSFER_HOME", str(tmp_path / "home"))
    return folder


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def answer(req: Received, srv: TLSServer) -> Reply:
    """GET: BODY; POST: what was received, as JSON (for uploads)."""
    if req.method == "POST":
        return Reply(
            body=json.dumps(
                {
                    "length": len(req.body),
                    "has_file": BODY in req.body,
                    "referer": req.headers.get("referer"),
                }
            ).encode(),
            headers=[("Content-Type", "application/json")],
        )
    return Reply(body=BODY, headers=[("Content-Type", "application/octet-stream")])


@pytest.fixture
def server(pki: Pki) -> Iterator[TLSServer]:
    """A good-chain HTTPS server with a leaf for every test name."""
    srv = TLSServer(pki.context(), answer).start()
    try:
        yield srv
    finally:
        srv.stop()
        if srv.errors:
            raise srv.errors[0]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(BODY)
    return path


@pytest.fixture
def runtimes(monkeypatch: pytest.MonkeyPatch) -> list[wxtransfer.Runtime]:
    """Every runtime the CLI builds, to check it got the options and was closed."""
    made: list[wxtransfer.Runtime] = []
    build = RuntimeSettings.build

    def recording(self: RuntimeSettings) -> wxtransfer.Runtime:
        rt = build(self)
        made.append(rt)
        return rt

    monkeypatch.setattr(RuntimeSettings, "build", recording)
    return made


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), prog_name="wxtransfer")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.output
    return result


def rules_args(srv: TLSServer, *names: str, ca_file: str | None = None) -> list[str]:
    """``--rules wechat --app-id ... --resolve NAME:127.0.0.1:PORT... [--cacert CA]``."""
    args = ["--rules", "wechat", "--app-id", APP_ID, "-q"]
    for name in names:
        args += ["--resolve", f"{name}:{srv.address}"]
    if ca_file is not None:
        args += ["--cacert", ca_file]
    return args


# --------------------------------------------------------------------------- downloads


def test_download_allowed(
    server: TLSServer, pki: Pki, work: Path, runtimes: list[wxtransfer.Runtime]
) -> None:
    result = invoke(
        "download",
        f"https://{DL}/a.bin",
        "-o",
        "a.bin",
        "--download-domain",
        f"https://{DL}",
        *rules_args(server, DL, ca_file=pki.ca_file),
    )
    assert result.exit_code == 0, result.stderr
    assert (work / "a.bin").read_bytes() == BODY
    assert result.stdout.strip() == str(work / "a.bin")
    assert [r.headers.get("referer") for r in server.requests] == [REFERER]
    # the transfer ran on a runtime built from the options, closed at the end
    (rt,) = runtimes
    assert rt.closed
    assert rt._rules is not None and rt._rules.app_id == APP_ID
    assert rt._resolve == {DL: server.address}
    assert rt._ca_file == pki.ca_file


def test_download_refused_host_not_in_list(server: TLSServer, pki: Pki, work: Path) -> None:
    result = invoke(
        "download",
        "https://cdn.example.com/a.bin",
        "--download-domain",
        f"https://{DL}",
        *rules_args(server, DL, "cdn.example.com", ca_file=pki.ca_file),
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    msg = result.stderr
    assert msg.startswith("Error: downloadFile:fail url not in domain list")
    assert "[rule: domain allowlist]" in msg
    assert "Fix: add https://cdn.example.com to download_domains" in msg
    assert server.connections == 0
    assert os.listdir(work) == []


def test_download_refused_json(server: TLSServer, pki: Pki) -> None:
    result = invoke(
        "download",
        "https://cdn.example.com/a.bin",
        "--json",
        "--download-domain",
        f"https://{DL}",
        *rules_args(server, "cdn.example.com", ca_file=pki.ca_file),
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    report = json.loads(result.stderr)
    assert set(report) == {"errMsg", "errno"}
    assert report["errno"] == 600002
    assert report["errMsg"].startswith("downloadFile:fail url not in domain list")
    assert "Fix: add https://cdn.example.com to download_domains" in report["errMsg"]
    assert server.connections == 0


def test_download_refused_explicit_port(server: TLSServer, pki: Pki) -> None:
    """The port rule: a domain without a port allows no explicit port, not even :443."""
    result = invoke(
        "download",
        f"https://{DL}:443/a.bin",
        "--download-domain",
        DL,
        *rules_args(server, DL, ca_file=pki.ca_file),
    )
    assert result.exit_code == 1
    assert "url not in domain list" in result.stderr and "[rule: port]" in result.stderr
    assert server.connections == 0


def test_download_curl_resolve_form(server: TLSServer, pki: Pki, work: Path) -> None:
    """curl's HOST:PORT:ADDR, with the port in the domain and in the URL."""
    port = server.port
    result = invoke(
        "download",
        f"https://{DL}:{port}/a.bin",
        "-o",
        "a.bin",
        "--rules",
        "wechat",
        "--app-id",
        APP_ID,
        "--app-version",
        "0",
        "--download-domain",
        f"https://{DL}:{port}",
        "--resolve",
        f"{DL}:{port}:127.0.0.1",
        "--cacert",
        pki.ca_file,
        "-q",
    )
    assert result.exit_code == 0, result.stderr
    assert (work / "a.bin").read_bytes() == BODY
    assert server.requests[0].headers["referer"] == (
        f"https://servicewechat.com/{APP_ID}/0/page-frame.html"
    )


# --------------------------------------------------------------------------- uploads


def test_upload_allowed(
    server: TLSServer, pki: Pki, sample: Path, runtimes: list[wxtransfer.Runtime]
) -> None:
    result = invoke(
        "upload",
        f"https://{UP}/upload",
        str(sample),
        "--json",
        "--upload-domain",
        f"https://{UP}",
        *rules_args(server, UP, ca_file=pki.ca_file),
    )
    assert result.exit_code == 0, result.stderr
    res = json.loads(result.stdout)
    assert res["statusCode"] == 200
    data = json.loads(res["data"])
    assert data["has_file"] is True
    assert data["referer"] == REFERER
    (rt,) = runtimes
    assert rt.closed


def test_upload_refused_on_the_download_list_only(
    server: TLSServer, pki: Pki, sample: Path
) -> None:
    result = invoke(
        "upload",
        f"https://{DL}/upload",
        str(sample),
        "--upload-domain",
        f"https://{UP}",
        "--download-domain",
        f"https://{DL}",
        *rules_args(server, UP, DL, ca_file=pki.ca_file),
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: uploadFile:fail url not in domain list")
    assert f"Fix: add https://{DL} to upload_domains" in result.stderr
    assert server.connections == 0


def test_upload_refused_http(server: TLSServer, sample: Path) -> None:
    result = invoke(
        "upload",
        f"http://{UP}/upload",
        str(sample),
        "--upload-domain",
        UP,
        *rules_args(server, UP),
    )
    assert result.exit_code == 1
    assert "uploadFile:fail url not in domain list" in result.stderr
    assert "[rule: https only]" in result.stderr
    assert server.connections == 0


# --------------------------------------------------------------------------- --cacert


def test_cacert_is_needed_for_the_trustme_ca(server: TLSServer, pki: Pki, work: Path) -> None:
    common = ["download", f"https://{DL}/a.bin", "-o", "a.bin", "--download-domain", DL]
    without = invoke(*common, *rules_args(server, DL))
    assert without.exit_code == 60  # curl's "peer certificate cannot be authenticated"
    assert without.stderr.startswith("Error: downloadFile:fail TLS")
    assert "[rule: valid certificate]" in without.stderr
    assert os.listdir(work) == []
    assert server.requests == []  # the handshake failed: no request was read

    with_ca = invoke(*common, *rules_args(server, DL, ca_file=pki.ca_file))
    assert with_ca.exit_code == 0, with_ca.stderr
    assert (work / "a.bin").read_bytes() == BODY


def test_resolve_and_cacert_without_rules(server: TLSServer, pki: Pki, work: Path) -> None:
    """--resolve and --cacert are runtime options: they work without --rules too."""
    args = ["download", "https://files.example.com/b.bin", "-o", "b.bin", "-q"]
    args += ["--resolve", f"files.example.com:{server.address}"]
    without = invoke(*args)
    assert without.exit_code == 60
    assert "TLS" in without.stderr or "certificate" in without.stderr

    result = invoke(*args, "--cacert", pki.ca_file)
    assert result.exit_code == 0, result.stderr
    assert (work / "b.bin").read_bytes() == BODY
    assert "referer" not in server.requests[-1].headers  # no rules, no Referer


# --------------------------------------------------------------------------- --project


def make_project(root: Path, *, appid: str | None = APP_ID) -> Path:
    root.mkdir()
    config: dict[str, Any] = {"miniprogramRoot": "miniprogram/"}
    if appid:
        config["appid"] = appid
    (root / "project.config.json").write_text(json.dumps(config))
    (root / "miniprogram").mkdir()
    (root / "miniprogram" / "app.json").write_text(
        json.dumps({"pages": ["pages/index/index"], "networkTimeout": {"downloadFile": 20000}})
    )
    (root / "domains.json").write_text(
        json.dumps({"uploadFile": [f"https://{UP}"], "downloadFile": [f"https://{DL}"]})
    )
    return root


def test_project_rules(
    server: TLSServer, pki: Pki, tmp_path: Path, work: Path, runtimes: list[wxtransfer.Runtime]
) -> None:
    project = make_project(tmp_path / "mp")
    base = ["--rules", "wechat", "--project", str(project), "--cacert", pki.ca_file, "-q"]
    base += ["--resolve", f"{DL}:{server.address}"]
    result = invoke("download", f"https://{DL}/a.bin", "-o", "a.bin", *base)
    assert result.exit_code == 0, result.stderr
    assert (work / "a.bin").read_bytes() == BODY
    assert server.requests[0].headers["referer"] == REFERER
    assert runtimes[0]._timeouts["downloadFile"] == 20000  # app.json's networkTimeout

    # explicit flags override the project: the list is replaced, the AppID changed
    result = invoke(
        "download",
        f"https://{DL}/a.bin",
        "-o",
        "again.bin",
        "--download-domain",
        "https://cdn.example.com",
        *base,
    )
    assert result.exit_code == 1
    assert f"Fix: add https://{DL} to download_domains" in result.stderr
    assert server.connections == 1

    result = invoke("download", f"https://{DL}/a.bin", "-o", "c.bin", "--app-id", "wxother", *base)
    assert result.exit_code == 0, result.stderr
    assert server.requests[-1].headers["referer"] == (
        "https://servicewechat.com/wxother/devtools/page-frame.html"
    )


def test_project_without_appid_needs_app_id(tmp_path: Path) -> None:
    project = make_project(tmp_path / "mp", appid=None)
    args = ["download", f"https://{DL}/a.bin", "--rules", "wechat", "--project", str(project)]
    result = invoke(*args)
    assert result.exit_code == 2
    assert "no AppID there (project.config.json's appid); add --app-id wx..." in result.stderr


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--app-id", APP_ID],
            "--app-id only applies under the platform's rules: add --rules wechat",
        ),
        (
            ["--upload-domain", UP, "--download-domain", DL],
            "--upload-domain, --download-domain only apply under the platform's rules",
        ),
        (["--app-version", "0"], "--app-version only applies"),
        (["--project", "."], "--project only applies"),
        (["--rules", "wechat"], "--rules wechat needs the mini program's AppID: add --app-id"),
        (["--rules", "wechat", "--download-domain", DL], "needs the mini program's AppID"),
        (["--rules", "alipay", "--app-id", APP_ID], "'alipay' is not 'wechat'"),
        (["--rules", "wechat", "--app-id", "wx 1"], "--app-id should be the mini program's AppID"),
        (["--rules", "wechat", "--app-id", APP_ID, "--app-version", "a/b"], "--app-version"),
        (
            ["--rules", "wechat", "--app-id", APP_ID, "--download-domain", "http://x.example.com"],
            "--download-domain: domain 'http://x.example.com': uploadFile and downloadFile "
            "domains must be https",
        ),
        (
            ["--rules", "wechat", "--app-id", APP_ID, "--upload-domain", "127.0.0.1"],
            "an IP address or localhost cannot be a domain",
        ),
        (["--resolve", "cdn.example.com"], "should be HOST:ADDR"),
        (["--resolve", "cdn.example.com:nowhere"], "'nowhere' is not an IP address"),
        (["--resolve", "cdn.example.com:127.0.0.1:99999"], "bad port"),
        (["--resolve", "cdn.example.com:::1"], "cdn.example.com:[::1]"),
        (
            ["--resolve", "cdn.example.com:127.0.0.1", "--resolve", "cdn.example.com:127.0.0.2"],
            "given twice",
        ),
        (["--cacert", "no-such-ca.pem"], "'no-such-ca.pem' does not exist"),
    ],
)
@pytest.mark.parametrize("command", ["download", "upload"])
def test_usage_errors(
    command: str, args: list[str], message: str, sample: Path, server: TLSServer
) -> None:
    target = [f"https://{DL}/a.bin"] if command == "download" else [f"https://{UP}/u", str(sample)]
    result = invoke(command, *target, *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Usage: wxtransfer" in result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    assert server.connections == 0


@pytest.mark.parametrize(
    ("entry", "host", "value"),
    [
        ("cdn.example.com:127.0.0.1", "cdn.example.com", "127.0.0.1"),
        ("CDN.Example.com:127.0.0.1:8443", "cdn.example.com", "127.0.0.1:8443"),
        ("cdn.example.com:443:127.0.0.1", "cdn.example.com", "127.0.0.1"),  # curl's form
        ("cdn.example.com:[::1]", "cdn.example.com", "::1"),
        ("cdn.example.com:[::1]:8443", "cdn.example.com", "[::1]:8443"),
        ("cdn.example.com:443:[::1]", "cdn.example.com", "::1"),
        ("cdn.example.com:443:::1", "cdn.example.com", "::1"),
    ],
)
def test_parse_resolve(entry: str, host: str, value: str) -> None:
    assert parse_resolve(entry) == (host, value)


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "host",
        ":127.0.0.1",
        "h:127.0.0.1:0",
        "h:[127.0.0.1]",
        "h:[::1]x",
        "+h:443:1.2.3.4",
        "h:443:1.2.3.4,5.6.7.8",
        "h:localhost",
    ],
)
def test_parse_resolve_rejects(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_resolve(entry)


def test_help_lists_the_runtime_options() -> None:
    for command in ("upload", "download"):
        text = invoke(command, "--help").stdout
        for flag in (
            "--rules [wechat]",
            "--app-id ID",
            "--app-version V",
            "--upload-domain D",
            "--download-domain D",
            "--project DIR",
            "--resolve HOST:ADDR[:PORT]",
            "--cacert FILE",
        ):
            assert flag in text, (command, flag)


# --------------------------------------------------------------------------- a real process


def test_subprocess_download_under_rules(server: TLSServer, pki: Pki, work: Path) -> None:
    options = [
        "--rules", "wechat", "--app-id", APP_ID, "--download-domain", f"https://{DL}",
        "--resolve", f"{DL}:{server.address}", "--cacert", pki.ca_file,
    ]  # fmt: skip
    command = [sys.executable, "-m", "wxtransfer", "download"]
    proc = subprocess.run(
        [*command, f"https://{DL}/a.bin", "-o", "a.bin", *options],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (work / "a.bin").read_bytes() == BODY
    refused = subprocess.run(
        [*command, "https://evil.example.com/b.bin", "-o", "b.bin", *options],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert refused.returncode == 1
    assert "downloadFile:fail url not in domain list: https://evil.example.com/b.bin" in (
        refused.stderr
    )
    assert server.connections == 1
    assert sorted(os.listdir(work)) == ["a.bin"]
