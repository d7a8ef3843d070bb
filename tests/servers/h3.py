"""A private Caddy on 127.0.0.1 that serves HTTP/3 (QUIC, on UDP) beside HTTP/2 and 1.1 on
TCP, the same port number, for the protocol tests against a server we did not write.

``CaddyH3Process(root, upstream=...).start()``; ``.url`` (``https://127.0.0.1:PORT``) serves
``root``'s files; ``/upload`` goes to ``upstream`` by ``reverse_proxy`` (the aiohttp test
app, which answers the size and sha256 of each file it got). The certificate is a trustme
leaf for 127.0.0.1 and localhost; ``.ca_file`` is its CA (PEM) for ``Runtime(ca_file=...)``.
No admin endpoint, no automatic HTTPS (no redirects, no ACME, no trust-store install), its
config and data under a private folder. ``.log()`` gives the access log's records (protocol,
method, URI, status, body bytes sent, the client's port). ``.stop()`` ends it by its PID.

Caddy is Debian's ``caddy`` (2.6): ``protocols h1 h2 h3`` is its default, spelt out here.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers import stop_process
from tests.servers.tls import loopback_pems

__all__ = ["CaddyH3Process", "free_tcp_udp_port"]

CADDYFILE = """\
{{
    admin off
    auto_https off
    skip_install_trust
    grace_period 1s
    storage file_system {work}/data
    servers {{
        protocols h1 h2 h3
    }}
}}
https://127.0.0.1:{port} {{
    bind 127.0.0.1
    tls {work}/cert.pem {work}/key.pem
    log {{
        output file {work}/access.log
        format json
    }}
    handle /upload {{
        {upload}
    }}
    handle {{
        root * {root}
        file_server
    }}
}}
"""


def free_tcp_udp_port() -> int:
    """A port on 127.0.0.1 free for both TCP and UDP a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both TCP and UDP")


def _udp_bound(port: int) -> bool:
    """True once something holds UDP 127.0.0.1:``port`` (read from /proc, sends nothing)."""
    wanted = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return True  # no /proc: the TCP check alone
    return any(line.split()[1] == wanted for line in lines if line.strip())


class CaddyH3Process:
    """Caddy on ``https://127.0.0.1:<free port>``: HTTP/3 on UDP, HTTP/2 and 1.1 on TCP."""

    def __init__(self, root: Path, *, upstream: str | None = None) -> None:
        self.root = root
        self.upstream = upstream.removeprefix("http://").rstrip("/") if upstream else None
        self.work = Path(tempfile.mkdtemp(prefix="wxtransfer-caddy-"))
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.ca_file = loopback_pems(self.work)[0]  # and cert.pem, key.pem beside it

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> CaddyH3Process:
        binary = shutil.which("caddy")
        if binary is None:
            raise FileNotFoundError(
                "caddy is not installed (make test installs it: scripts/system-deps.sh caddy:caddy)"
            )
        self.port = free_tcp_udp_port()
        upload = f"reverse_proxy {self.upstream}" if self.upstream else 'respond "ok" 200'
        conf = self.work / "Caddyfile"
        conf.write_text(
            CADDYFILE.format(work=self.work, port=self.port, root=self.root, upload=upload)
        )
        home = str(self.work / "home")
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=home, XDG_DATA_HOME=home)
        stderr = self.work / "stderr.log"
        with open(stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [binary, "run", "--config", str(conf), "--adapter", "caddyfile"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
                cwd=self.work,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"caddy did not start: {stderr.read_text(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            if _udp_bound(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("caddy did not listen on TCP and UDP within 10 s")

    def log(self) -> list[dict[str, str]]:
        """The access log's records so far: protocol, method, uri, status, sent, remote_port
        (the client's; one UDP port is one QUIC connection here)."""
        path = self.work / "access.log"
        if not path.exists():
            return []
        records = []
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            request = entry.get("request", {})
            records.append(
                {
                    "protocol": str(request.get("proto", "")),
                    "method": str(request.get("method", "")),
                    "uri": str(request.get("uri", "")),
                    "status": str(entry.get("status", "")),
                    "sent": str(entry.get("size", "")),
                    "remote_port": str(request.get("remote_port", "")),
                }
            )
        return records

    def wait_log(self, count: int, timeout: float = 5.0) -> list[dict[str, str]]:
        """The records once there are at least ``count``, or after ``timeout``."""
        deadline = time.monotonic() + timeout
        records = self.log()
        while len(records) < count and time.monotonic() < deadline:
            time.sleep(0.02)
            records = self.log()
        return records

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10, kill_wait=10)
        shutil.rmtree(self.work, ignore_errors=True)
