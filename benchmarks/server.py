"""Starts and stops a private nginx on 127.0.0.1 for the benchmarks.

HTTP/1.1 on ``base_url``; with ``tls=True`` also HTTPS with HTTP/2 offered by ALPN on
``tls_base_url`` (the same files and ``/upload``), its certificate a trustme leaf for
127.0.0.1 made at start, its CA in ``ca_file``. Debian's nginx is 1.22: HTTP/2 is turned
on with ``listen ... ssl http2`` (``http2 on;`` came with 1.25.1).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ECHO_MODULE_CANDIDATES = (
    "/usr/lib/nginx/modules/ngx_http_echo_module.so",
    "/usr/lib64/nginx/modules/ngx_http_echo_module.so",
    "/usr/share/nginx/modules/ngx_http_echo_module.so",
)

LOG_FORMAT = (
    "$request_method $uri $status $request_length $content_length $bytes_sent $request_time"
    " $server_protocol $connection"
)

CONF_TEMPLATE = """\
{load_module}
worker_processes 1;
{user}
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format bench '{log_format}';
    access_log {work}/access.log bench;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    types {{ application/octet-stream bin; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
        location = /upload {{
            client_max_body_size 0;
            client_body_buffer_size 128k;
{upload_body}
        }}
    }}
{tls_server}}}
"""

# The same site over TLS with HTTP/2 offered by ALPN (nginx 1.22 syntax).
TLS_SERVER_TEMPLATE = """\
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {work}/tls-cert.pem;
        ssl_certificate_key {work}/tls-key.pem;
        root {root};
        location / {{ }}
        location = /upload {{
            client_max_body_size 0;
            client_body_buffer_size 128k;
{upload_body}
        }}
    }}
"""

# With the echo module nginx reads the whole body (spilling past 128 KiB into a temp
# file that it deletes at once) before it answers, so the client cannot get an early 200.
UPLOAD_ECHO = """\
            echo_read_request_body;
            echo ok;"""

# Core-only fallback: nginx answers at once and drains the body afterwards (discard).
UPLOAD_RETURN = """\
            return 200 "ok\\n";"""


def find_echo_module() -> str | None:
    """Path of the nginx echo module if installed (Debian's nginx-light ships it)."""
    for cand in ECHO_MODULE_CANDIDATES:
        if os.path.exists(cand):
            return cand
    return None


def wait_listening(proc: subprocess.Popen[bytes], ports: tuple[int, ...], timeout: float) -> bool:
    """Wait until every port of ``ports`` on 127.0.0.1 accepts a connection: True, or
    False when ``proc`` ended or ``timeout`` (seconds) ran out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            for port in ports:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    pass
            return True
        except OSError:
            time.sleep(0.05)
    return False


def stop_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Stop a server started in its own session: ``sig`` to its PID, then SIGKILL to
    its process group if it still runs after 5 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AccessRecord:
    """One parsed line of the access log."""

    method: str
    uri: str
    status: int
    request_length: int
    content_length: int | None
    bytes_sent: int
    request_time: float
    protocol: str  # HTTP/1.1, HTTP/2.0
    connection: int  # nginx's serial number of the connection


@dataclass
class Nginx:
    """A private nginx serving ``root`` with a discarding ``/upload`` endpoint."""

    work: Path
    root: Path
    nginx_bin: str = "nginx"
    force_core_upload: bool = False
    tls: bool = False  # also serve HTTPS with HTTP/2 on tls_port
    port: int = 0
    tls_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    upload_mode: str = ""
    _log_offset: int = field(default=0, repr=False)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def body_verified(self) -> bool:
        """True when /upload reads the whole body before answering (echo module)."""
        return self.upload_mode == "echo_read_request_body"

    @property
    def upload_url(self) -> str:
        """URL of the discarding upload endpoint."""
        return f"{self.base_url}/upload"

    @property
    def tls_base_url(self) -> str:
        """``https://127.0.0.1:TLS_PORT`` (HTTP/2 offered by ALPN)."""
        return f"https://127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        """The CA (PEM) that signed the TLS server's certificate."""
        return self.work / "tls-ca.pem"

    def _make_cert(self) -> None:
        """A fresh trustme CA and a leaf for 127.0.0.1 (the key and chain for nginx)."""
        import trustme

        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(self.ca_file))
        leaf.private_key_pem.write_to_path(str(self.work / "tls-key.pem"))
        chain = b"".join(p.bytes() for p in leaf.cert_chain_pems)
        (self.work / "tls-cert.pem").write_bytes(chain)

    @property
    def access_log(self) -> Path:
        """Path of the access log."""
        return self.work / "access.log"

    def _write_conf(self) -> Path:
        echo = None if self.force_core_upload else find_echo_module()
        self.upload_mode = "echo_read_request_body" if echo else "return 200 (discard)"
        user = ""
        if os.geteuid() == 0:  # workers must read our files and write our temp dirs
            import pwd

            user = f"user {pwd.getpwuid(0).pw_name};"
        upload_body = UPLOAD_ECHO if echo else UPLOAD_RETURN
        tls_server = ""
        if self.tls:
            tls_server = TLS_SERVER_TEMPLATE.format(
                port=self.tls_port, work=self.work, root=self.root, upload_body=upload_body
            )
        conf = CONF_TEMPLATE.format(
            load_module=f"load_module {echo};" if echo else "",
            user=user,
            work=self.work,
            root=self.root,
            port=self.port,
            log_format=LOG_FORMAT,
            upload_body=upload_body,
            tls_server=tls_server,
        )
        path = self.work / "nginx.conf"
        path.write_text(conf)
        return path

    def start(self, timeout: float = 10.0) -> None:
        """Start nginx in the foreground (``daemon off``) on a free port."""
        if shutil.which(self.nginx_bin) is None:
            raise RuntimeError(f"{self.nginx_bin} not found (apt-get install nginx-light)")
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "tmp").mkdir(exist_ok=True)
        if self.tls:
            self._make_cert()
        last_err = ""
        for _ in range(5):
            self.port = free_port()
            self.tls_port = free_port() if self.tls else 0
            conf = self._write_conf()
            self.access_log.write_bytes(b"")
            self._log_offset = 0
            err = open(self.work / "stderr.log", "wb")
            self.proc = subprocess.Popen(
                [self.nginx_bin, "-p", str(self.work), "-c", str(conf), "-g", "daemon off;"],
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
            err.close()
            ports = (self.port, self.tls_port) if self.tls else (self.port,)
            if wait_listening(self.proc, ports, timeout):
                return
            last_err = (self.work / "stderr.log").read_text(errors="replace")
            self.stop()
        raise RuntimeError(f"nginx did not start: {last_err}")

    def stop(self) -> None:
        """Stop the nginx we started (SIGQUIT to its master, then SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_group(proc, signal.SIGQUIT)

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def new_log_records(self) -> list[AccessRecord]:
        """Access-log records written since the previous call."""
        with open(self.access_log, "rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._log_offset += end
        out = []
        for line in data[:end].decode().splitlines():
            m, uri, st, rl, cl, bs, rt, proto, conn = line.split()
            out.append(
                AccessRecord(
                    m,
                    uri,
                    int(st),
                    int(rl),
                    None if cl == "-" else int(cl),
                    int(bs),
                    float(rt),
                    proto,
                    int(conn),
                )
            )
        return out

    def version(self) -> str:
        """``nginx -v`` output."""
        r = subprocess.run([self.nginx_bin, "-v"], capture_output=True, text=True, timeout=10)
        return (r.stderr or r.stdout).strip().removeprefix("nginx version: ")
