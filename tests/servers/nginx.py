"""A private nginx on 127.0.0.1 serving a folder of static files: its own Range, If-Range,
ETag and Last-Modified, for byte-identity tests against a server we did not write.

``NginxProcess(root).start()``; ``.url``; ``.log()`` gives the access log's records (method,
URI, status, Range and If-Range asked, body bytes sent); ``.stop()`` ends it by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TypeVar

from tests.servers import free_port

CONF = """\
daemon off;
worker_processes 1;
{user}
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format t '$request_method\\t$uri\\t$status\\t$http_range\\t$http_if_range'
                 '\\t$body_bytes_sent';
    access_log {work}/access.log t;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


_N = TypeVar("_N", bound="NginxProcess")


class NginxProcess:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = Path(tempfile.mkdtemp(prefix="wxtransfer-nginx-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self, user: str) -> str:
        """nginx.conf's text; ``user`` is the ``user`` directive (empty unless root)."""
        return CONF.format(user=user, work=self.work, port=self.port, root=self.root)

    def start(self: _N) -> _N:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(binary):
            raise FileNotFoundError("nginx is not installed (make test installs nginx-light)")
        user = ""
        if os.geteuid() == 0:  # workers must read our files
            import pwd

            user = f"user {pwd.getpwuid(0).pw_name};"
        conf = self.work / "nginx.conf"
        conf.write_text(self.config(user))
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(self.work)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"nginx did not start: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not listen within 10 s")

    def log(self) -> list[dict[str, str]]:
        path = self.work / "access.log"
        if not path.exists():
            return []
        keys = ("method", "uri", "status", "range", "if_range", "sent")
        return [
            dict(zip(keys, line.split("\t"), strict=True)) for line in path.read_text().splitlines()
        ]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.work, ignore_errors=True)
