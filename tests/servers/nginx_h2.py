"""A private nginx over TLS on 127.0.0.1 that offers HTTP/2 by ALPN (or HTTP/1.1 only), for
the protocol tests against a server we did not write.

``NginxTLSProcess(root, upstream=...).start()``; ``.url`` (``https://127.0.0.1:PORT``) serves
``root``'s files; ``POST /upload`` goes to ``upstream + "/upload"`` by ``proxy_pass`` (the
aiohttp test app, which answers the size and sha256 of each file it got), or without an
upstream nginx answers ``200 ok`` itself and drains the body. ``http2=False`` serves
HTTP/1.1 only. The certificate is a trustme leaf for 127.0.0.1 and localhost; ``.ca_file``
is its CA (PEM) for ``Runtime(ca_file=...)``. ``.log()`` gives the access log's records:
nginx's connection serial number, the request's number on it, the protocol, status, URI,
request length, Content-Length, body bytes sent, the time it ended (``$msec``) and how long
it took (``$request_time``), in seconds. ``.stop()`` ends it by its PID.

Debian's nginx is 1.22: HTTP/2 is turned on with ``listen ... ssl http2`` (``http2 on;``
came with 1.25.1).
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.servers.nginx import NginxProcess
from tests.servers.tls import loopback_pems

__all__ = ["NginxTLSProcess"]

CONF = """\
daemon off;
worker_processes 1;
{user}
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format t '$connection\\t$connection_requests\\t$server_protocol\\t$status'
                 '\\t$request_uri\\t$request_length\\t$content_length\\t$body_bytes_sent'
                 '\\t$msec\\t$request_time';
    access_log {work}/access.log t;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} ssl{http2};
        ssl_certificate {work}/cert.pem;
        ssl_certificate_key {work}/key.pem;
        root {root};
        location / {{ }}
        location = /upload {{
            client_max_body_size 0;
{upload}
        }}
    }}
}}
"""

UPLOAD_PROXY = """\
            proxy_http_version 1.1;
            proxy_pass {upstream}/upload;"""

UPLOAD_RETURN = """\
            return 200 "ok\\n";"""

LOG_KEYS = (
    "connection",
    "connection_requests",
    "protocol",
    "status",
    "uri",
    "request_length",
    "content_length",
    "sent",
    "msec",
    "request_time",
)


class NginxTLSProcess(NginxProcess):
    """nginx on ``https://127.0.0.1:<free port>``, HTTP/2 offered unless ``http2=False``."""

    def __init__(self, root: Path, *, http2: bool = True, upstream: str | None = None) -> None:
        super().__init__(root)
        self.http2 = http2
        self.upstream = upstream.rstrip("/") if upstream else None
        self.ca_file = loopback_pems(self.work)[0]  # and cert.pem, key.pem beside it

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def config(self, user: str) -> str:
        upload = UPLOAD_PROXY.format(upstream=self.upstream) if self.upstream else UPLOAD_RETURN
        return CONF.format(
            user=user,
            work=self.work,
            port=self.port,
            root=self.root,
            http2=" http2" if self.http2 else "",
            upload=upload,
        )

    def log(self) -> list[dict[str, str]]:
        """The access log's records so far, keys as in ``LOG_KEYS``."""
        path = self.work / "access.log"
        if not path.exists():
            return []
        return [
            dict(zip(LOG_KEYS, line.split("\t"), strict=True))
            for line in path.read_text().splitlines()
        ]

    def wait_log(self, count: int, timeout: float = 5.0) -> list[dict[str, str]]:
        """The records once there are at least ``count`` (nginx writes one when a request
        ends, which may be just after its client saw the last byte), or after ``timeout``."""
        deadline = time.monotonic() + timeout
        records = self.log()
        while len(records) < count and time.monotonic() < deadline:
            time.sleep(0.02)
            records = self.log()
        return records
