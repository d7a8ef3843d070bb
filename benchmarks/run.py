"""Benchmark harness: wxtransfer against curl, pycurl, requests, httpx and aiohttp (and aria2).

Starts a private nginx on 127.0.0.1, makes the test files, runs every scenario for every tool
as a separate measured subprocess, interleaved over several rounds, and writes the medians to
``docs/benchmarks.md`` plus a chart ``docs/benchmarks.png``. D2 (a download through a server
that cuts every connection) runs wxtransfer, curl and aria2c against ``cutserver.py``; U2 (a
resumable tus upload through a proxy that cuts every connection) runs wxtransfer and tuspy
against the tus reference server ``@tus/server`` (``tests/servers/tus.py``) behind
``tests/servers/cutproxy.py``, both started anew for each run in this process. S3 is S1 and
S2 over HTTP/2 with TLS to the same nginx (S3-down, S3-up); S4 is S1 through
``delayproxy.py``, a proxy (threads in this process, fresh for each run) that delays each
direction by 10 ms, over HTTP/1.1 (S4-h1) and HTTP/2 (S4-h2). S1 to S3 also run
``threaded``, a reference rather than a peer: pycurl's loop split over three threads the way
wxtransfer splits it (``clients/threaded.py``).

    python benchmarks/run.py                 # full run (5 rounds, 1024 MiB for D1/U1)
    python benchmarks/run.py --smoke         # tiny sizes, one round, writes under .work/
    python benchmarks/run.py --only D1,U1 --tools curl,pycurl --rounds 3
    python benchmarks/run.py --only D2 --rounds 3 --out /tmp/d2/benchmarks.md
    python benchmarks/run.py --only U2 --rounds 3 --out /tmp/u2/benchmarks.md
    python benchmarks/run.py --only S3,S4 --rounds 3 --out /tmp/s34/benchmarks.md

Exit status: 0 when every run of every available tool succeeded (unavailable tools are
reported as skipped), 1 when a run failed, 2 when the harness itself could not run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from clients import aria2 as aria2_client
from clients import curl as curl_client
from clients._common import (
    D2_RETRIES,
    U2_RETRIES,
    Args,
    Failure,
    check,
    check_file,
    small_name,
)
from cutserver import CutServer
from delayproxy import DelayProxy
from measure import Measurement, rss_method, run_measured
from server import Nginx

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:  # U2's tus server and cutting proxy are the tests' own
    sys.path.append(str(REPO))
import tests.servers.cutproxy  # noqa: E402
from tests.servers.cutproxy import CutProxy  # noqa: E402
from tests.servers.tus import TUS_DIR, TusServer, ensure_node_packages  # noqa: E402

WORK = BENCH_DIR / ".work"
DOC = REPO / "docs" / "benchmarks.md"
SMOKE_DOC = WORK / "benchmarks-smoke.md"

ALL_TOOLS = ("curl", "pycurl", "requests", "httpx", "aiohttp", "wxtransfer")
PEERS = ("pycurl", "requests", "httpx", "aiohttp")
D2_TOOLS = ("curl", "aria2", "wxtransfer")
U2_TOOLS = ("tuspy", "wxtransfer")
H2_TOOLS = ("curl", "pycurl", "httpx", "wxtransfer")  # S3 and S4-h2: the tools with HTTP/2
# A reference, not a peer (never "the best peer"): pycurl's loop split over caller, engine and
# writer threads as wxtransfer splits it. S1, S2 and S3 only (with HTTP/2 when pycurl has it).
REFERENCE = "threaded"
S12_TOOLS = (*ALL_TOOLS, REFERENCE)
S3_TOOLS = (*H2_TOOLS, REFERENCE)
KNOWN_TOOLS = (
    "curl",
    "aria2",
    "pycurl",
    "requests",
    "httpx",
    "aiohttp",
    "tuspy",
    REFERENCE,
    "wxtransfer",
)
SMALL_SIZE = 10 * 1024
CONCURRENCY = 10
MiB = 1 << 20


@dataclass(frozen=True)
class Scenario:
    """One benchmark scenario; P1 variants are D1/U1 with a progress listener."""

    name: str
    base: str  # D1, U1, S1, S2, D2 or U2: what the client is asked to do
    progress: bool
    title: str
    tools: tuple[str, ...] = ALL_TOOLS  # the tools that take part
    http2: bool = False  # S3, S4-h2: HTTP/2 over TLS
    delayed: bool = False  # S4: through the delaying proxy

    @property
    def big(self) -> bool:
        """True for the one-large-file scenarios on nginx (D1, U1 and their P1 twins)."""
        return self.base in ("D1", "U1")

    @property
    def many(self) -> bool:
        """True for the small-file scenarios."""
        return self.base in ("S1", "S2")


GROUPS = {"P1": ("D1", "U1", "P1D", "P1U"), "S3": ("S3-down", "S3-up"), "S4": ("S4-h1", "S4-h2")}
DEFAULT_ONLY = "D1,U1,S1,S2,S3,S4,P1,D2,U2"

SCENARIOS = {
    s.name: s
    for s in (
        Scenario("D1", "D1", False, "download one {size} MiB file to disk"),
        Scenario("U1", "U1", False, "multipart upload of one {size} MiB file (+ user=bench)"),
        Scenario(
            "S1", "S1", False, "{count} downloads of 10 KiB files, at most 10 in flight", S12_TOOLS
        ),
        Scenario(
            "S2", "S2", False, "{count} multipart uploads of 10 KiB files, 10 in flight", S12_TOOLS
        ),
        Scenario(
            "S3-down",
            "S1",
            False,
            "S1 over HTTP/2 with TLS: {count} downloads of 10 KiB files, at most 10 in flight",
            S3_TOOLS,
            http2=True,
        ),
        Scenario(
            "S3-up",
            "S2",
            False,
            "S2 over HTTP/2 with TLS: {count} multipart uploads of 10 KiB files, 10 in flight",
            S3_TOOLS,
            http2=True,
        ),
        Scenario(
            "S4-h1",
            "S1",
            False,
            "{s4_count} downloads of 10 KiB files, at most 10 in flight, over HTTP/1.1 through "
            "a link with {rtt:g} ms of round-trip delay",
            delayed=True,
        ),
        Scenario(
            "S4-h2",
            "S1",
            False,
            "{s4_count} downloads of 10 KiB files, at most 10 in flight, over HTTP/2 with TLS "
            "through a link with {rtt:g} ms of round-trip delay",
            H2_TOOLS,
            http2=True,
            delayed=True,
        ),
        Scenario("P1D", "D1", True, "D1 with a progress listener"),
        Scenario("P1U", "U1", True, "U1 with a progress listener"),
        Scenario(
            "D2",
            "D2",
            False,
            "download one {d2_size} MiB file through a server that cuts every connection "
            f"after {{d2_cut}} MiB of body, {D2_RETRIES} retries",
            D2_TOOLS,
        ),
        Scenario(
            "U2",
            "U2",
            False,
            "resumable (tus) upload of one {u2_size} MiB file through a proxy that cuts every "
            f"connection after {{u2_cut}} MiB sent, {U2_RETRIES} retries",
            U2_TOOLS,
        ),
    )
}


@dataclass
class Config:
    """What to run, from the command line."""

    smoke: bool
    rounds: int
    size_mib: int
    count: int
    scenarios: list[Scenario]
    tools: list[str]
    doc: Path
    command: str
    d2_size_mib: int = 256
    d2_cut_mib: int = 64
    u2_size_mib: int = 256
    u2_cut_mib: int = 64
    s4_count: int = 1000
    s4_delay_ms: float = 10.0  # one way

    @property
    def s4_floor(self) -> float:
        """S4's physical floor in seconds: rounds of 10 transfers, one round trip each."""
        return -(-self.s4_count // CONCURRENCY) * 2 * self.s4_delay_ms / 1000

    @property
    def png(self) -> Path:
        """Chart path, next to the doc."""
        return self.doc.with_suffix(".png")

    @property
    def raw(self) -> Path:
        """Every run's figures, as JSON: under .work/ for the doc in docs/ and the smoke
        doc, else next to the doc, so that a run written elsewhere (``--out``) never
        replaces the figures behind docs/benchmarks.md."""
        if self.doc == DOC:
            return WORK / "results-full.json"
        if self.doc == SMOKE_DOC:
            return WORK / "results-smoke.json"
        return self.doc.with_suffix(".json")


@dataclass
class Tool:
    """A tool and whether it can run here."""

    name: str
    available: bool
    version: str = ""
    progress: frozenset[str] = frozenset()
    http2: bool = False  # can do HTTP/2 here (S3, S4-h2)
    reason: str = ""
    idle_rss: int = 0  # peak RSS of just starting the client and importing the tool


@dataclass
class RunResult:
    """One measured run."""

    round: int
    scenario: str
    tool: str
    ok: bool
    error: str = ""
    wall: float = 0.0  # transfer phase (client-reported; curl: the process)
    cpu: float = 0.0  # CPU of the transfer phase (client-reported; curl: the process)
    proc_wall: float = 0.0
    proc_cpu: float = 0.0  # user+sys of the whole child process (rusage)
    peak_rss: int = 0
    peak_rss_polled: int = 0
    nbytes: int = 0
    progress_calls: int | None = None
    server_bytes: int = 0  # D2: body bytes the cut server sent; U2: bytes the server received
    requests: int = 0  # D2: responses the cut server gave
    cuts: int = 0  # D2: of them, cut short; U2: connections the proxy cut
    connections: int = 0  # U2: connections the client opened (through the proxy); S*: nginx's


@dataclass
class Data:
    """The files served and uploaded."""

    www: Path
    big: Path
    small_dir: Path
    count: int
    outdir: Path = field(default_factory=lambda: WORK / "out")
    d2: Path | None = None  # D2's file, when D2 runs
    d2_sha256: str = ""
    u2: Path | None = None  # U2's file, when U2 runs
    u2_sha256: str = ""
    u2_cut: int = 0  # U2: the proxy cuts each connection after this many bytes sent
    s4_count: int = 0  # S4: transfers
    s4_delay: float = 0.0  # S4: one-way delay of the proxy, seconds

    @property
    def big_size(self) -> int:
        """Size of the large file in bytes."""
        return self.big.stat().st_size


# ---------------------------------------------------------------- setup


def parse_args(argv: list[str] | None = None) -> Config:
    """Command line to Config."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one round, doc under .work/")
    p.add_argument("--rounds", type=int, default=5, help="rounds (default 5; smoke: 1)")
    p.add_argument("--size-mib", type=int, default=None, help="D1/U1 file size (default 1024)")
    p.add_argument("--count", type=int, default=None, help="S1/S2 transfers (default 1000)")
    p.add_argument("--d2-size-mib", type=int, default=None, help="D2 file size (default 256)")
    p.add_argument("--d2-cut-mib", type=int, default=None, help="D2 cut (default 64)")
    p.add_argument("--u2-size-mib", type=int, default=None, help="U2 file size (default 256)")
    p.add_argument("--u2-cut-mib", type=int, default=None, help="U2 cut (default 64)")
    p.add_argument("--s4-count", type=int, default=None, help="S4 transfers (default 1000)")
    p.add_argument("--s4-delay-ms", type=float, default=None, help="S4 one-way delay (10)")
    p.add_argument(
        "--only",
        default="",
        help=f"scenarios, e.g. {DEFAULT_ONLY} (P1 = D1,U1,P1D,P1U; S3 = S3-down,S3-up; "
        "S4 = S4-h1,S4-h2); case does not matter",
    )
    p.add_argument("--tools", default="", help=f"tools among {','.join(KNOWN_TOOLS)}")
    p.add_argument("--out", type=Path, default=None, help="markdown output (PNG next to it)")
    ns = p.parse_args(argv)
    names: list[str] = []
    canonical = {n.upper(): n for n in SCENARIOS}
    for raw in (ns.only or DEFAULT_ONLY).split(","):
        name = raw.strip().upper()
        for n in GROUPS.get(name, (canonical.get(name, raw.strip()),)):
            if n not in SCENARIOS:
                p.error(f"unknown scenario {raw!r}")
            if n not in names:
                names.append(n)
    if "P1D" in names and "D1" not in names:  # P1 is reported against the plain run
        names.insert(0, "D1")
    if "P1U" in names and "U1" not in names:
        names.insert(0, "U1")
    names.sort(key=list(SCENARIOS).index)
    asked = [t.strip() for t in ns.tools.split(",") if t.strip()] or list(KNOWN_TOOLS)
    for t in asked:
        if t not in KNOWN_TOOLS:
            p.error(f"unknown tool {t!r}")
    used = {t for n in names for t in SCENARIOS[n].tools}
    tools = [t for t in KNOWN_TOOLS if t in asked and t in used]  # probed and reported
    argv_s = " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    return Config(
        smoke=ns.smoke,
        rounds=1 if ns.smoke else max(1, ns.rounds),
        size_mib=ns.size_mib or (8 if ns.smoke else 1024),
        count=ns.count or (100 if ns.smoke else 1000),
        scenarios=[SCENARIOS[n] for n in names],
        tools=tools,
        doc=ns.out or (SMOKE_DOC if ns.smoke else DOC),
        command=f"python benchmarks/run.py {argv_s}".strip(),
        d2_size_mib=ns.d2_size_mib or (4 if ns.smoke else 256),
        d2_cut_mib=ns.d2_cut_mib or (1 if ns.smoke else 64),
        u2_size_mib=ns.u2_size_mib or (4 if ns.smoke else 256),
        u2_cut_mib=ns.u2_cut_mib or (1 if ns.smoke else 64),
        s4_count=ns.s4_count or (20 if ns.smoke else 1000),
        s4_delay_ms=ns.s4_delay_ms if ns.s4_delay_ms is not None else (2 if ns.smoke else 10),
    )


def make_random(path: Path, size_mib: int) -> None:
    """Create ``path`` with ``size_mib`` MiB of random bytes unless it has that size."""
    if path.exists() and path.stat().st_size == size_mib * MiB:
        return
    print(f"making {path} ({size_mib} MiB of random bytes)", flush=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MiB))
        os.fsync(f.fileno())  # no writeback left to compete with the first runs
    tmp.replace(path)


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.hexdigest()


def make_data(
    size_mib: int, count: int, *, big: bool = True, d2_mib: int = 0, u2_mib: int = 0
) -> Data:
    """Create (once, then reuse) the large random file (unless not ``big``: no D1/U1 to
    run), the small files and, with ``d2_mib`` / ``u2_mib``, D2's / U2's file (hashed for
    the checks)."""
    www = WORK / "www"
    small = www / "small"
    small.mkdir(parents=True, exist_ok=True)
    big_path = www / f"big-{size_mib}MiB.bin"
    if big:
        make_random(big_path, size_mib)
    for i in range(count):
        path = small / small_name(i)
        if not path.exists() or path.stat().st_size != SMALL_SIZE:
            path.write_bytes(os.urandom(SMALL_SIZE))
    data = Data(www=www, big=big_path, small_dir=small, count=count)
    if d2_mib:
        data.d2 = www / f"d2-{d2_mib}MiB.bin"
        make_random(data.d2, d2_mib)
        data.d2_sha256 = sha256_of(data.d2)
    if u2_mib:
        data.u2 = www / f"u2-{u2_mib}MiB.bin"
        make_random(data.u2, u2_mib)
        data.u2_sha256 = sha256_of(data.u2)
    return data


def warm_cache(path: Path) -> None:
    """Read a file once so every tool starts with it in the page cache."""
    with open(path, "rb") as f:
        while f.read(8 * MiB):
            pass


def probe(tool: str) -> Tool:
    """Can this tool run here? (imports happen in the interpreter running the harness).

    For the Python tools the probe's own peak RSS (interpreter plus imports, no transfer) is
    kept as a baseline for the peak RSS of the real runs.
    """
    if tool == "curl":
        try:
            v = curl_client.version()
            return Tool(tool, True, v, curl_client.PROGRESS, http2=curl_client.http2())
        except Exception as e:
            return Tool(tool, False, reason=str(e))
    if tool == "aria2":
        try:
            return Tool(tool, True, aria2_client.version())
        except Exception as e:
            return Tool(tool, False, reason=str(e))
    argv = [sys.executable, "-m", f"clients.{tool}", "--probe"]
    m = run_measured(argv, cwd=BENCH_DIR, timeout=120)
    if m.timed_out:
        return Tool(tool, False, reason="probe timed out")
    if m.returncode != 0:
        lines = [ln for ln in m.stderr.strip().splitlines() if ln.strip()]
        return Tool(tool, False, reason=lines[-1] if lines else f"exit {m.returncode}")
    info = json.loads(m.stdout.strip().splitlines()[-1])
    return Tool(
        tool,
        True,
        info["version"],
        frozenset(info["progress"]),
        http2=bool(info.get("http2")),
        idle_rss=m.peak_rss,
    )


# ---------------------------------------------------------------- running


def client_args(
    scen: Scenario,
    ng: Nginx,
    data: Data,
    run_dir: Path,
    cs: CutServer | None = None,
    proxy: CutProxy | None = None,
    delay: DelayProxy | None = None,
) -> Args:
    """What the client is asked to do for a scenario (S1 writes into ``run_dir``; U2 goes
    through ``proxy``, S4 through ``delay``). U2's chunk, for a client that takes one: half
    the cut. S3 and S4-h2 ask for HTTP/2 over TLS, with nginx's CA."""
    if scen.http2 or scen.delayed:
        scheme = "https" if scen.http2 else "http"
        if scen.delayed:
            assert delay is not None
            base, count = delay.url(scheme), data.s4_count
        else:
            base, count = ng.tls_base_url if scen.http2 else ng.base_url, data.count
        ca = str(ng.ca_file) if scen.http2 else ""
        if scen.base == "S1":
            return Args(
                "S1",
                f"{base}/small/",
                run_dir,
                count,
                SMALL_SIZE,
                False,
                CONCURRENCY,
                http2=scen.http2,
                ca_file=ca,
            )
        return Args(
            "S2",
            f"{base}/upload",
            data.small_dir,
            count,
            -1,
            False,
            CONCURRENCY,
            http2=scen.http2,
            ca_file=ca,
        )
    if scen.base == "U2":
        assert proxy is not None and data.u2 is not None
        size = data.u2.stat().st_size
        return Args("U2", proxy.url_for("/files/"), data.u2, 1, size, False, 1, data.u2_cut // 2)
    if scen.base == "D2":
        assert cs is not None and data.d2 is not None
        size = data.d2.stat().st_size
        return Args("D2", f"{cs.base_url}/{data.d2.name}", run_dir / "d2.bin", 1, size, False, 1)
    if scen.base == "D1":
        return Args(
            "D1",
            f"{ng.base_url}/{data.big.name}",
            run_dir / "big.bin",
            1,
            data.big_size,
            scen.progress,
            1,
        )
    if scen.base == "U1":
        return Args("U1", ng.upload_url, data.big, 1, -1, scen.progress, 1)
    if scen.base == "S1":
        return Args(
            "S1", f"{ng.base_url}/small/", run_dir, data.count, SMALL_SIZE, False, CONCURRENCY
        )
    return Args("S2", ng.upload_url, data.small_dir, data.count, -1, False, CONCURRENCY)


def client_argv(tool: str, a: Args) -> list[str]:
    """The command line that runs one client."""
    if tool == "curl":
        return curl_client.build(a, WORK)
    if tool == "aria2":
        return aria2_client.build(a)
    argv = [sys.executable, "-m", f"clients.{tool}", a.scenario, a.url, str(a.target)]
    argv += ["--count", str(a.count), "--size", str(a.size), "--concurrency", str(a.concurrency)]
    if a.chunk:
        argv += ["--chunk", str(a.chunk)]
    if a.http2:
        argv.append("--http2")
    if a.ca_file:
        argv += ["--ca-file", a.ca_file]
    return [*argv, "--progress"] if a.progress else argv


def timeout_for(a: Args, data: Data) -> float:
    """Generous but bounded time limit for one run (about 1.7 MiB/s or 10 transfers/s)."""
    if a.scenario in ("D1", "U1", "D2", "U2"):
        return 60 + 0.6 * (a.size if a.scenario in ("D2", "U2") else data.big_size) / MiB
    return 60 + 0.1 * a.count


def server_check(ng: Nginx, a: Args, data: Data) -> int:
    """Check nginx's access log: every request arrived, over the protocol asked for (HTTP/2
    for S3 and S4-h2, else HTTP/1.1), and uploads were read in full. Returns how many
    connections the requests came on."""
    want = a.count if a.scenario in ("S1", "S2") else 1
    proto = "HTTP/2.0" if a.http2 else "HTTP/1.1"
    recs = ng.new_log_records()
    deadline = time.monotonic() + 5
    while len(recs) < want and time.monotonic() < deadline:  # logged just after the reply
        time.sleep(0.02)
        recs += ng.new_log_records()
    check(len(recs) == want, f"nginx logged {len(recs)} requests, expected {want}")
    body = data.big_size if a.scenario == "U1" else SMALL_SIZE
    for r in recs:
        check(r.protocol == proto, f"nginx: {r.protocol}, expected {proto}: {r}")
        if a.scenario in ("D1", "S1"):
            ok = r.method == "GET" and r.status == 200 and r.bytes_sent >= a.size
            check(ok, f"nginx: {r}")
            continue
        check(r.method == "POST" and r.uri == "/upload" and r.status == 200, f"nginx: {r}")
        if r.content_length is not None:
            check(r.content_length > body, f"nginx: Content-Length {r.content_length} <= file")
        if ng.body_verified:
            check(r.request_length > body, f"nginx read only {r.request_length} bytes")
            if r.content_length is not None:
                check(r.request_length > r.content_length, f"nginx: body cut short: {r}")
    return len({r.connection for r in recs})


def cut_server_check(cs: CutServer, a: Args, res: RunResult) -> None:
    """D2: read the cut server's log of this run into ``res`` (bytes sent, responses, cuts)
    and check that the last response finished the file."""
    recs = cs.new_records()
    deadline = time.monotonic() + 5
    while not any(not r["cut"] for r in recs) and time.monotonic() < deadline:
        time.sleep(0.02)  # logged just after the bytes left
        recs += cs.new_records()
    res.server_bytes = sum(r["sent"] for r in recs)
    res.requests = len(recs)
    res.cuts = sum(r["cut"] for r in recs)
    check(bool(recs), "the cut server logged no request")
    last = recs[-1]
    check(last["status"] in (200, 206) and not last["cut"], f"cut server, last response: {last}")
    check(res.server_bytes >= a.size, f"the cut server sent {res.server_bytes} < {a.size} bytes")


U2_PROXY_POLL = 0.005  # s; cutproxy's own is 0.05


def start_u2(run_dir: Path, data: Data) -> tuple[TusServer, CutProxy]:
    """U2: a fresh tus server (its store in ``run_dir``) and a proxy in front of it that
    cuts every connection after ``data.u2_cut`` bytes from the client.

    The proxy's threads look every ``_POLL`` s whether a connection is to end, so a cut
    reaches the client up to ``_POLL`` after its last byte went through: with the proxy's
    50 ms that is up to 0.2 s of a run with 4 cuts, spent waiting on the proxy and charged
    to the client that was cut. Here it looks every 5 ms.
    """
    tests.servers.cutproxy._POLL = U2_PROXY_POLL
    tus = TusServer(run_dir / "tus").start()
    try:
        proxy = CutProxy("127.0.0.1", tus.port, cut_after=data.u2_cut, cuts=-1).start()
    except BaseException:
        tus.stop()
        raise
    return tus, proxy


def u2_check(tus: TusServer, proxy: CutProxy, a: Args, data: Data, res: RunResult) -> None:
    """U2: read the proxy's counts into ``res`` (bytes it forwarded to the server, request
    heads included; connections; cuts) and check the server's one stored file byte for byte
    against the source."""
    res.server_bytes = proxy.sent_up
    res.connections = len(proxy.connections)
    res.cuts = sum(proxy.cut)
    check(not proxy.errors, f"cut proxy errors: {proxy.errors[:3]}")
    uploads = tus.uploads()
    check(len(uploads) == 1, f"the tus store holds {len(uploads)} uploads, expected 1")
    up = uploads[0]
    check(up.length == a.size and up.offset == a.size, f"tus store: {up}, file {a.size} bytes")
    got = sha256_of(tus.store / up.id)
    check(got == data.u2_sha256, f"tus store: {up.id} has sha256 {got}, not the source's")
    check(res.server_bytes >= a.size, f"the server received {res.server_bytes} < {a.size} bytes")


def local_check(a: Args, data: Data) -> None:
    """Check downloaded files independently of the client."""
    if a.scenario == "D1":
        check_file(a.target, a.size)
    elif a.scenario == "D2":  # byte for byte: a continued file must join the right bytes
        check_file(a.target, a.size)
        got = sha256_of(a.target)
        check(got == data.d2_sha256, f"{a.target}: sha256 {got} differs from the source")
    elif a.scenario == "S1":
        for i in range(a.count):
            check_file(a.target / small_name(i), a.size)


def run_one(
    rnd: int, scen: Scenario, tool: str, ng: Nginx, data: Data, cs: CutServer | None = None
) -> RunResult:
    """Run and check one (scenario, tool) pair (D2 needs the cut server ``cs``; U2 starts
    its own tus server and cutting proxy, S4 its own delaying proxy, and stops them after
    the run)."""
    # A fresh folder per run, deleted only when main() ends (D1's at once): on ext4 mounted
    # with `discard`, as here, creating files in the ~25 s after deleting many costs some
    # 600 µs of kernel CPU each instead of 30, and S1 would measure that.
    run_dir = data.outdir / f"{scen.name}-{rnd}-{tool}"
    run_dir.mkdir(parents=True)
    tus: TusServer | None = None
    proxy: CutProxy | None = None
    delay: DelayProxy | None = None
    env: dict[str, str] | None = None
    if scen.delayed:
        port = ng.tls_port if scen.http2 else ng.port
        delay = DelayProxy(port, data.s4_delay).start()
    if scen.base == "U2":
        try:
            tus, proxy = start_u2(run_dir, data)
        except (OSError, RuntimeError) as e:  # TimeoutError is an OSError
            shutil.rmtree(run_dir, ignore_errors=True)
            return RunResult(rnd, scen.name, tool, ok=False, error=f"tus server: {e}")
        # wxtransfer keeps upload URLs under its home: a fresh one, so no run continues
        # another's upload
        env = {**os.environ, "WXTRANSFER_HOME": str(run_dir / "home")}
    try:
        os.sync()  # start every run with no writeback pending
        a = client_args(scen, ng, data, run_dir, cs, proxy, delay)
        ng.new_log_records()  # forget anything logged before this run
        if cs is not None:
            cs.new_records()
        m: Measurement = run_measured(
            client_argv(tool, a), cwd=BENCH_DIR, timeout=timeout_for(a, data), env=env
        )
        res = RunResult(
            rnd,
            scen.name,
            tool,
            ok=False,
            proc_wall=m.wall,
            proc_cpu=m.cpu,
            peak_rss=m.peak_rss,
            peak_rss_polled=m.peak_rss_polled,
        )
        try:
            if m.timed_out:
                raise Failure(f"timed out after {m.wall:.0f} s")
            if m.returncode != 0:
                said = m.stderr.strip() or m.stdout.strip()  # aria2c reports on stdout
                tail = " | ".join([ln for ln in said.splitlines() if ln.strip()][-3:])
                raise Failure(f"exit {m.returncode}: {tail}")
            if tool == "curl":
                res.nbytes = curl_client.verify(a, m.stdout)
                res.wall, res.cpu = m.wall, m.cpu
            elif tool == "aria2":
                res.nbytes = aria2_client.verify(a)
                res.wall, res.cpu = m.wall, m.cpu
            else:
                out = json.loads(m.stdout.strip().splitlines()[-1])
                res.wall, res.cpu, res.nbytes = out["wall"], out["cpu"], out["bytes"]
                res.progress_calls = out.get("progress_calls")
            local_check(a, data)
            if a.scenario == "D2":
                assert cs is not None
                cut_server_check(cs, a, res)
            elif a.scenario == "U2":
                assert tus is not None and proxy is not None
                u2_check(tus, proxy, a, data, res)
            else:
                res.connections = server_check(ng, a, data)
            if delay is not None:
                check(not delay.errors, f"delay proxy: {delay.errors[:3]}")
            res.ok = True
        except (Failure, OSError, ValueError, KeyError, IndexError) as e:
            res.error = str(e)
        return res
    finally:
        if delay is not None:
            delay.stop()
        if proxy is not None:
            proxy.stop()
        if tus is not None:
            tus.stop()
        if scen.big or scen.base in ("D2", "U2"):  # drop the large file's dirty pages early
            shutil.rmtree(run_dir, ignore_errors=True)


def describe(res: RunResult, scen: Scenario, cfg: Config) -> str:
    """One console line for a run."""
    if not res.ok:
        return f"FAILED: {res.error}"
    rate = f"{work(scen, cfg) / res.wall:8.1f} {unit(scen)}"
    line = (
        f"{res.wall:7.3f} s {rate}  cpu {res.cpu:6.3f} s (proc {res.proc_cpu:6.3f} s)"
        f"  rss {res.peak_rss / MiB:6.1f} MiB"
    )
    if scen.base == "D2":
        ratio = res.server_bytes / (cfg.d2_size_mib * MiB)
        line += f"  server sent {ratio:.3f}× the file in {res.requests} responses"
    if scen.http2 or scen.delayed:
        line += f"  {res.connections} connection(s)"
    if scen.delayed:
        line += f"  {res.wall / cfg.s4_floor:.3f}× floor"
    if scen.base == "U2":
        ratio = res.server_bytes / (cfg.u2_size_mib * MiB)
        line += (
            f"  server received {ratio:.4f}× the file on {res.connections} connections,"
            f" {res.cuts} cut"
        )
    return line


def work(scen: Scenario, cfg: Config) -> int:
    """What one run moves: MiB for the one-file scenarios, transfers for S1/S2."""
    if scen.base == "D2":
        return cfg.d2_size_mib
    if scen.base == "U2":
        return cfg.u2_size_mib
    if scen.delayed:
        return cfg.s4_count
    return cfg.size_mib if scen.big else cfg.count


def unit(scen: Scenario) -> str:
    """Unit of the throughput of a scenario."""
    return "transfers/s" if scen.many else "MiB/s"


def run_all(
    cfg: Config, tools: list[Tool], ng: Nginx, data: Data, cs: CutServer | None = None
) -> list[RunResult]:
    """Every scenario for every tool, interleaved; tool order rotates each round.

    The small-file scenarios run first, all rounds, before the large ones delete their
    1 GiB files (see run_one).
    """
    results: list[RunResult] = []
    names = [t.name for t in tools if t.available]
    by_name = {t.name: t for t in tools}
    small = [s for s in cfg.scenarios if s.many]
    big = [s for s in cfg.scenarios if not s.many]
    for phase, rnd in [(p, r) for p in (small, big) if p for r in range(1, cfg.rounds + 1)]:
        for scen in phase:
            taking = [n for n in names if n in scen.tools]
            k = (rnd - 1) % max(1, len(taking))
            for name in taking[k:] + taking[:k]:
                if scen.progress and scen.base not in by_name[name].progress:
                    continue  # the tool has no progress listener for this direction
                if scen.http2 and not by_name[name].http2:
                    print(f"[round {rnd}/{cfg.rounds}] {scen.name:5} {name:10} skipped: no HTTP/2")
                    continue  # said in the scenario's section too
                res = run_one(rnd, scen, name, ng, data, cs)
                results.append(res)
                line = describe(res, scen, cfg)
                print(f"[round {rnd}/{cfg.rounds}] {scen.name:5} {name:10} {line}", flush=True)
    return results


# ---------------------------------------------------------------- reporting


@dataclass
class Summary:
    """Medians of the successful runs of one (scenario, tool)."""

    runs: int
    failed: int
    wall: float
    wall_min: float
    wall_max: float
    cpu: float
    proc_wall: float
    proc_cpu: float
    peak_rss: float
    progress_calls: float | None
    server_bytes: float = float("nan")  # D2 (sent), U2 (received)
    requests: float = float("nan")  # D2
    connections: float = float("nan")  # U2
    cuts: float = float("nan")  # D2, U2


def summarize(results: Iterable[RunResult]) -> dict[tuple[str, str], Summary]:
    """Per (scenario, tool) medians."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.scenario, r.tool), []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if r.ok]
        if not ok:
            nan = float("nan")
            out[key] = Summary(0, len(rs), nan, nan, nan, nan, nan, nan, nan, None)
            continue
        calls = [r.progress_calls for r in ok if r.progress_calls is not None]
        walls = [r.wall for r in ok]
        out[key] = Summary(
            runs=len(ok),
            failed=len(rs) - len(ok),
            wall=statistics.median(walls),
            wall_min=min(walls),
            wall_max=max(walls),
            cpu=statistics.median(r.cpu for r in ok),
            proc_wall=statistics.median(r.proc_wall for r in ok),
            proc_cpu=statistics.median(r.proc_cpu for r in ok),
            peak_rss=statistics.median(r.peak_rss for r in ok) / MiB,
            progress_calls=statistics.median(calls) if calls else None,
            server_bytes=statistics.median(r.server_bytes for r in ok),
            requests=statistics.median(r.requests for r in ok),
            connections=statistics.median(r.connections for r in ok),
            cuts=statistics.median(r.cuts for r in ok),
        )
    return out


def title(scen: Scenario, cfg: Config) -> str:
    """The scenario's title with this run's sizes."""
    return scen.title.format(
        size=cfg.size_mib,
        count=cfg.count,
        d2_size=cfg.d2_size_mib,
        d2_cut=cfg.d2_cut_mib,
        u2_size=cfg.u2_size_mib,
        u2_cut=cfg.u2_cut_mib,
        s4_count=cfg.s4_count,
        rtt=2 * cfg.s4_delay_ms,
    )


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "—" if x is None or x != x else format(x, fmt)


def throughput(scen: Scenario, s: Summary, cfg: Config) -> float:
    """MiB/s for D1/U1/P1/D2, transfers/s for S1/S2."""
    return work(scen, cfg) / s.wall


def scenario_table(scen: Scenario, cfg: Config, summ: dict[tuple[str, str], Summary]) -> str:
    """Markdown table for one scenario."""
    rows = [(t, summ[(scen.name, t)]) for t in cfg.tools if (scen.name, t) in summ]
    ok = {t: s for t, s in rows if s.runs}
    peers = [s for t, s in ok.items() if t in PEERS]
    best_wall = min((s.wall for s in peers), default=None)
    best_cpu = min((s.cpu for s in peers), default=None)
    curl = ok.get("curl")
    conns = scen.http2  # S3: does the tool multiplex? (nginx's count of connections)
    head = (
        f"| tool | wall s | {unit(scen)} | CPU s (transfer) | CPU s (process) | peak RSS MiB "
        "| wall × curl | wall × best peer | CPU × best peer "
        + ("| connections " if conns else "")
        + "| runs |"
    )
    lines = [head, "|" + "---|" * (11 if conns else 10)]
    for t, s in rows:
        if not s.runs:
            lines.append(f"| {t} | failed | | | | | | | |{' |' if conns else ''} 0/{s.failed} |")
            continue
        lines.append(
            f"| {t} | {s.wall:.3f} | {throughput(scen, s, cfg):.1f} | {s.cpu:.3f} "
            f"| {s.proc_cpu:.3f} | {s.peak_rss:.1f} "
            f"| {_f(s.wall / curl.wall if curl else None)} "
            f"| {_f(s.wall / best_wall if best_wall else None)} "
            f"| {_f(s.cpu / best_cpu if best_cpu else None)} "
            + (f"| {s.connections:.0f} " if conns else "")
            + f"| {s.runs}/{s.runs + s.failed} |"
        )
    return "\n".join(lines)


def split_line(scen: Scenario, summ: dict[tuple[str, str], Summary]) -> list[str]:
    """S1 to S3: the wall ratios that split wxtransfer's cost against pycurl's loop into the
    three-thread split (threaded ÷ pycurl) and the rest (wxtransfer ÷ threaded)."""
    runs = {t: summ.get((scen.name, t)) for t in ("pycurl", REFERENCE, "wxtransfer")}
    walls = {t: s.wall for t, s in runs.items() if s is not None and s.runs}
    pairs = (("wxtransfer", REFERENCE, "beyond the split"), (REFERENCE, "pycurl", "the split"))
    parts = [
        f"{a} ÷ {b} **{walls[a] / walls[b]:.2f}×** ({what})"
        for a, b, what in pairs
        if a in walls and b in walls
    ]
    return [f"Wall ratios: {', '.join(parts)}.", ""] if parts else []


def h2_skipped(scen: Scenario, cfg: Config, tools: list[Tool]) -> list[str]:
    """For S3 / S4-h2: the tools left out, and why."""
    by_name = {t.name: t for t in tools}
    out = []
    no_h2 = [t for t in ALL_TOOLS if t not in scen.tools and t in cfg.tools]
    if no_h2:
        out.append(f"{' and '.join(no_h2)} (no HTTP/2 client)")
    for name in scen.tools:
        t = by_name.get(name)
        if t is not None and t.available and not t.http2:
            why = "the `h2` package is missing" if name == "httpx" else "built without HTTP/2"
            out.append(f"{name} ({why} here)")
    return out


def s3_section(
    scen: Scenario, cfg: Config, summ: dict[tuple[str, str], Summary], tools: list[Tool]
) -> list[str]:
    """S3-down / S3-up: text, table and the target."""
    what = "downloads" if scen.base == "S1" else "uploads"
    skipped = h2_skipped(scen, cfg, tools)
    out = [
        f"{scen.base}'s {what} to the same nginx over HTTPS (a `trustme` certificate for "
        "127.0.0.1, its CA given to each tool) with HTTP/2 offered by ALPN. **connections** "
        "is how many connections nginx logged the requests on (1: all multiplexed); every "
        "request must be logged as `HTTP/2.0`, or the run fails.",
        "",
        scenario_table(scen, cfg, summ),
        "",
        *split_line(scen, summ),
    ]
    if skipped:
        out += ["Not run: " + "; ".join(skipped) + ".", ""]
    wx, curl = summ.get((scen.name, "wxtransfer")), summ.get((scen.name, "curl"))
    if wx is not None and wx.runs and curl is not None and curl.runs:
        w = curl.wall / wx.wall
        out += [
            f"Target (shown, not asserted): wxtransfer's throughput ≥ 1.0× curl's: **{w:.2f}×** "
            f"({wx.wall:.3f} s against {curl.wall:.3f} s), {'met' if w >= 1.0 else 'missed'}.",
            "",
        ]
    return out


def s4_table(scen: Scenario, cfg: Config, summ: dict[tuple[str, str], Summary]) -> str:
    """Markdown table for S4: wall time against the floor, and connections."""
    rows = [(t, summ[(scen.name, t)]) for t in cfg.tools if (scen.name, t) in summ]
    curl = summ.get((scen.name, "curl"))
    curl_wall = curl.wall if curl is not None and curl.runs else None
    lines = [
        "| tool | wall s | × floor | transfers/s | connections | wall × curl "
        "| CPU s (transfer) | CPU s (process) | peak RSS MiB | runs |",
        "|" + "---|" * 10,
    ]
    for t, s in rows:
        if not s.runs:
            lines.append(f"| {t} | failed | | | | | | | | 0/{s.failed} |")
            continue
        lines.append(
            f"| {t} | {s.wall:.3f} | {s.wall / cfg.s4_floor:.3f} "
            f"| {throughput(scen, s, cfg):.1f} | {s.connections:.0f} "
            f"| {_f(s.wall / curl_wall if curl_wall else None)} | {s.cpu:.3f} "
            f"| {s.proc_cpu:.3f} | {s.peak_rss:.1f} | {s.runs}/{s.runs + s.failed} |"
        )
    return "\n".join(lines)


S4_TARGET = 1.15  # wxtransfer's wall over the floor


def s4_targets(scen: Scenario, cfg: Config, summ: dict[tuple[str, str], Summary]) -> list[str]:
    """S4's targets (shown, not asserted): wxtransfer within 1.15× the floor; on h2 also
    the best of every tool."""
    wx = summ.get((scen.name, "wxtransfer"))
    if wx is None or not wx.runs:
        return ["- no successful wxtransfer run to judge."]
    f = wx.wall / cfg.s4_floor
    out = [
        f"- wxtransfer's wall ≤ {S4_TARGET}× the floor: **{f:.3f}×** ({wx.wall:.3f} s "
        f"against {cfg.s4_floor:.3f} s), {'met' if f <= S4_TARGET else 'missed'}."
    ]
    if scen.http2:
        others = {  # the peers: a reference is no tool to beat
            t: s
            for (n, t), s in summ.items()
            if n == scen.name and t not in ("wxtransfer", REFERENCE) and s.runs
        }
        best = min(others.items(), key=lambda kv: kv[1].wall, default=None)
        if best is None:
            out.append("- the best of every tool: no other tool to compare.")
        else:
            t, s = best
            ok = wx.wall <= s.wall
            out.append(
                f"- wxtransfer the best of every tool: the best other tool is {t} at "
                f"{s.wall:.3f} s ({s.wall / cfg.s4_floor:.3f}×); wxtransfer's wall is "
                f"**{wx.wall / s.wall:.3f}×** its, {'met' if ok else 'missed'}."
            )
    return out


def s4_section(
    scen: Scenario,
    cfg: Config,
    summ: dict[tuple[str, str], Summary],
    tools: list[Tool],
    link: str,
) -> list[str]:
    """S4-h1 / S4-h2: text, table and targets."""
    rtt = 2 * cfg.s4_delay_ms
    rounds = -(-cfg.s4_count // CONCURRENCY)
    proto = (
        "HTTP/2 over TLS (one TLS handshake, one more round trip, before the first request)"
        if scen.http2
        else "HTTP/1.1"
    )
    out = [
        f"S1's downloads over {proto}, through `benchmarks/delayproxy.py`: a TCP proxy "
        f"on 127.0.0.1 in front of nginx that releases each chunk it reads {cfg.s4_delay_ms:g} "
        f"ms after reading it, in both directions ({rtt:g} ms a round trip), in order, with "
        "no bandwidth cap; the TCP handshake itself is not delayed (the kernel completes it "
        "at the proxy). A fresh proxy for each run, started and stopped untimed. The **floor** "
        f"is {cfg.s4_count} / {CONCURRENCY} in flight × {rtt:g} ms = {rounds} round trips = "
        f"**{cfg.s4_floor:.3f} s**: each of the {CONCURRENCY} slots has to wait one round "
        "trip per request; **× floor** is a tool's wall over it. **connections**: how many "
        "connections nginx logged the requests on.",
        "",
    ]
    if link:
        out += [link, ""]
    out += [s4_table(scen, cfg, summ), ""]
    skipped = h2_skipped(scen, cfg, tools) if scen.http2 else []
    if skipped:
        out += ["Not run: " + "; ".join(skipped) + ".", ""]
    out += ["Targets (shown, not asserted):", "", *s4_targets(scen, cfg, summ), ""]
    return out


def link_check(cfg: Config, ng: Nginx, data: Data) -> str:
    """S4's link measured before the rounds: sequential GETs of one small file over one
    HTTP/1.1 keep-alive connection, through a fresh delaying proxy and straight to nginx;
    a sentence with the medians per request."""
    import http.client

    n = 20 if cfg.smoke else 100

    def per_request(port: int) -> float:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        times = []
        try:
            for i in range(n + 1):  # the first one opens the connection: not counted
                t0 = time.perf_counter()
                conn.request("GET", f"/small/{small_name(0)}")
                r = conn.getresponse()
                body = r.read()
                if i:
                    times.append(time.perf_counter() - t0)
                check(r.status == 200 and len(body) == SMALL_SIZE, f"link check: {r.status}")
        finally:
            conn.close()
        return statistics.median(times) * 1000

    proxy = DelayProxy(ng.port, data.s4_delay).start()
    try:
        via = per_request(proxy.port)
    finally:
        proxy.stop()
    direct = per_request(ng.port)
    ng.new_log_records()
    rtt = 2 * cfg.s4_delay_ms
    return (
        f"The link, measured before the rounds: {n} sequential GETs of one 10 KiB file over "
        f"one HTTP/1.1 connection take a median **{via:.3f} ms** each through the proxy "
        f"({rtt:g} ms nominal, so the proxy's own cost is {via - rtt - direct:+.3f} ms a round "
        f"trip) and {direct:.3f} ms straight to nginx."
    )


def d2_table(scen: Scenario, cfg: Config, summ: dict[tuple[str, str], Summary]) -> str:
    """Markdown table for D2: wall time and the body bytes the cut server sent."""
    rows = [(t, summ[(scen.name, t)]) for t in cfg.tools if (scen.name, t) in summ]
    curl = summ.get((scen.name, "curl"))
    curl_wall = curl.wall if curl is not None and curl.runs else None
    size = cfg.d2_size_mib * MiB
    lines = [
        "| tool | wall s | MiB/s | server sent MiB | server sent × file | responses "
        "| wall × curl | CPU s (transfer) | CPU s (process) | peak RSS MiB | runs |",
        "|" + "---|" * 11,
    ]
    for t, s in rows:
        if not s.runs:
            lines.append(f"| {t} | failed | | | | | | | | | 0/{s.failed} |")
            continue
        lines.append(
            f"| {t} | {s.wall:.3f} | {throughput(scen, s, cfg):.1f} | {s.server_bytes / MiB:.1f} "
            f"| {s.server_bytes / size:.3f} | {s.requests:.0f} "
            f"| {_f(s.wall / curl_wall if curl_wall else None)} | {s.cpu:.3f} "
            f"| {s.proc_cpu:.3f} | {s.peak_rss:.1f} | {s.runs}/{s.runs + s.failed} |"
        )
    return "\n".join(lines)


def d2_targets(cfg: Config, summ: dict[tuple[str, str], Summary]) -> list[str]:
    """The D2 targets (shown, not asserted) and whether this run meets them."""
    return _cut_targets(
        summ, "D2", "curl", cfg.d2_size_mib * MiB, "wxtransfer's server-sent bytes", 1.02, 3
    )


def _cut_targets(
    summ: dict[tuple[str, str], Summary],
    scenario: str,
    rival: str,
    size: int,
    what: str,
    limit: float,
    digits: int,
) -> list[str]:
    """A cut scenario's targets: ``what`` ≤ ``limit``× the file, wall ≤ 1.0× ``rival``."""
    wx, other = summ.get((scenario, "wxtransfer")), summ.get((scenario, rival))
    if wx is None or not wx.runs:
        return ["Targets: no successful wxtransfer run to judge."]
    ratio = wx.server_bytes / size
    out = [
        f"- {what} ≤ {limit:g}× the file: **{ratio:.{digits}f}×**, "
        f"{'met' if ratio <= limit else 'missed'}."
    ]
    if other is not None and other.runs:
        w = wx.wall / other.wall
        out.append(
            f"- wxtransfer's wall time ≤ 1.0× {rival}'s: **{w:.2f}×** "
            f"({wx.wall:.3f} s against {other.wall:.3f} s), {'met' if w <= 1.0 else 'missed'}."
        )
    else:
        out.append(
            f"- wxtransfer's wall time ≤ 1.0× {rival}'s: no successful {rival} run to compare."
        )
    return out


def u2_table(scen: Scenario, cfg: Config, summ: dict[tuple[str, str], Summary]) -> str:
    """Markdown table for U2: wall time and the bytes the tus server received."""
    rows = [(t, summ[(scen.name, t)]) for t in cfg.tools if (scen.name, t) in summ]
    tuspy = summ.get((scen.name, "tuspy"))
    tuspy_wall = tuspy.wall if tuspy is not None and tuspy.runs else None
    size = cfg.u2_size_mib * MiB
    lines = [
        "| tool | wall s | MiB/s | server received MiB | received × file | connections | cut "
        "| wall × tuspy | CPU s (transfer) | CPU s (process) | peak RSS MiB | runs |",
        "|" + "---|" * 12,
    ]
    for t, s in rows:
        if not s.runs:
            lines.append(f"| {t} | failed | | | | | | | | | | 0/{s.failed} |")
            continue
        lines.append(
            f"| {t} | {s.wall:.3f} | {throughput(scen, s, cfg):.1f} | {s.server_bytes / MiB:.2f} "
            f"| {s.server_bytes / size:.4f} | {s.connections:.0f} | {s.cuts:.0f} "
            f"| {_f(s.wall / tuspy_wall if tuspy_wall else None)} | {s.cpu:.3f} "
            f"| {s.proc_cpu:.3f} | {s.peak_rss:.1f} | {s.runs}/{s.runs + s.failed} |"
        )
    return "\n".join(lines)


def u2_targets(cfg: Config, summ: dict[tuple[str, str], Summary]) -> list[str]:
    """The U2 targets (shown, not asserted) and whether this run meets them."""
    return _cut_targets(
        summ,
        "U2",
        "tuspy",
        cfg.u2_size_mib * MiB,
        "the bytes the server received from wxtransfer",
        1.05,
        4,
    )


def u2_section(scen: Scenario, cfg: Config, summ: dict[tuple[str, str], Summary]) -> list[str]:
    """U2's text, table and targets."""
    cut = cfg.u2_cut_mib
    chunk = cfg.u2_cut_mib * MiB // 2
    chunk_s = f"{chunk // MiB} MiB" if chunk % MiB == 0 else f"{chunk // 1024} KiB"
    return [
        "Each run starts a fresh tus 1.0 reference server (`@tus/server` with "
        "`@tus/file-store`, `tests/servers/tus.py`; node, its own process, an empty store) "
        "and in front of it `tests/servers/cutproxy.py` (threads in the harness process), "
        f"which cuts every connection once {cut} MiB went from the client to the server on "
        "it: the bytes up to there reach the server, then the client gets an RST and the "
        "server a FIN; the server keeps what it received (its offset grows by it). The "
        f"proxy looks every {U2_PROXY_POLL * 1000:.0f} ms whether a connection is to end (its "
        "own default, 50 ms, would add that wait to every cut), so a cut reaches the client "
        "within that of its last byte. Starting them is not timed. The client is given the "
        "proxy's creation endpoint, "
        f"{U2_RETRIES} retries with no wait, and must continue from the server's offset. "
        "**server received** is what the proxy forwarded to the server over all "
        "connections, request heads included (a few hundred bytes per request); bytes a "
        "client sent past a cut are dropped by the proxy and count nowhere. **received × "
        "file** is that over the file size; **connections** the TCP connections the client "
        "opened, **cut** those the proxy cut. **wall × tuspy** divides by tuspy's wall: "
        "below 1 is better. After every run the store must hold exactly one upload whose "
        "offset and length are the file's size and whose bytes have the source's SHA-256, "
        "or the run fails.",
        "",
        u2_table(scen, cfg, summ),
        "",
        "Targets (shown, not asserted):",
        "",
        *u2_targets(cfg, summ),
        "",
        "Commands:",
        "",
        "- **wxtransfer**: `wxtransfer.upload_resumable(URL, FILE, "
        f"retry=wxtransfer.Retry(total={U2_RETRIES}, backoff=0.0), timeout=0)`, no chunk "
        "size: one PATCH for the rest of the file; after a cut, a HEAD for the server's "
        "offset and a PATCH from there. `WXTRANSFER_HOME` is a fresh folder per run (where "
        "it keeps the upload URL), so no run continues another's upload.",
        f"- **tuspy**: `TusClient(URL).uploader(FILE, chunk_size={chunk_s}, "
        f"retries={U2_RETRIES}, retry_delay=0, metadata={{'filename': NAME}}).upload()`; "
        "after a failed PATCH it asks the offset (HEAD) and PATCHes again from there. Each "
        "request is a `requests.patch` on a new connection and each chunk is read into "
        "memory whole, so with chunks of half the cut no connection of tuspy's is ever "
        "cut: it never has to resume here. That is its best setting: in trials before "
        "settling on it, the whole file in one PATCH (through every cut) was some 20 % "
        "slower and chunks of 16 to 60 MiB were all within noise of each other. The "
        "metadata is needed: without it tuspy sends an empty `Upload-Metadata`, which "
        "`@tus/server` refuses with 400.",
        "",
    ]


def tus_fact() -> str:
    """The tus server's packages and node's version, for the machine table."""
    names = []
    for pkg in ("server", "file-store"):
        try:
            meta = json.loads(
                (TUS_DIR / "node_modules" / "@tus" / pkg / "package.json").read_text()
            )
            names.append(f"@tus/{pkg} {meta['version']}")
        except (OSError, ValueError, KeyError):
            names.append(f"@tus/{pkg} ?")
    try:
        node = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        node = "?"
    return f"{' + '.join(names)} on node {node}, behind `tests/servers/cutproxy.py`"


CUT_SERVER_FACT = (
    "`benchmarks/cutserver.py` in its own process: a thread per connection, `os.sendfile` "
    "with `TCP_CORK` (as nginx's `sendfile on; tcp_nopush on`)"
)


def server_speeds(cfg: Config, ng: Nginx, cs: CutServer, data: Data, reps: int = 7) -> str:
    """How fast the cut server sends, next to nginx: ``curl -o /dev/null`` fetches the first
    cut's worth of D2's file ``reps`` times from each; a sentence with the medians."""
    if shutil.which("curl") is None or data.d2 is None:
        return ""
    n = cfg.d2_cut_mib * MiB
    medians = []
    for base in (cs.base_url, ng.base_url):
        rates = []
        for _ in range(reps):
            argv = ["curl", "-s", "-S", "-f", "-r", f"0-{n - 1}", "-o", "/dev/null"]
            argv += ["-w", "%{speed_download}", f"{base}/{data.d2.name}"]
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            if r.returncode == 0:
                rates.append(float(r.stdout))
        medians.append(statistics.median(rates) / 1e9 if rates else float("nan"))
    ng.new_log_records()
    cs.new_records()
    return (
        f"Server speed, before the rounds: `curl -o /dev/null` fetching the first "
        f"{cfg.d2_cut_mib} MiB, median of {reps}: **{_f(medians[0])} GB/s** from the cut "
        f"server, {_f(medians[1])} GB/s from nginx."
    )


def d2_section(
    scen: Scenario, cfg: Config, summ: dict[tuple[str, str], Summary], speed: str
) -> list[str]:
    """D2's text, table and targets."""
    placeholder = Args("D2", "URL", Path("DIR/FILE"), 1, 0, False, 1)
    return [
        f"`benchmarks/cutserver.py` serves the file and closes each connection once it has "
        f"sent {cfg.d2_cut_mib} MiB of body on it (FIN after the bytes: the client sees a body "
        f"shorter than its `Content-Length`, libcurl's error 18). Each tool gets {D2_RETRIES} "
        "retries with "
        "no wait and must continue the bytes it holds. **server sent** is the body bytes the "
        "server sent over all connections (from its log), **× file** that over the file size: "
        "1.000 means no byte was sent twice. **responses** counts the server's answers (the "
        "first plus the retries). **wall × curl** divides by curl's wall: below 1 is better. "
        "Every output file is compared with the source by SHA-256; a wrong file fails the run.",
        "",
        *([speed, ""] if speed else []),
        d2_table(scen, cfg, summ),
        "",
        "Targets (shown, not asserted):",
        "",
        *d2_targets(cfg, summ),
        "",
        "Commands:",
        "",
        "- **wxtransfer**: `wxtransfer.download_file(URL, file_path=FILE, "
        f"retry=wxtransfer.Retry(total={D2_RETRIES}, backoff=0.0), timeout=0)`; it "
        "continues with `Range: bytes=N-` and `If-Range: <ETag>` and takes only a 206 that "
        "fits the bytes held.",
        f"- **curl**: `{curl_client.d2_display()}` (`sh -c`). curl's own "
        f"`--retry {D2_RETRIES} --retry-all-errors -C -` does not continue a cut body: on "
        "each retry curl (7.88 here) truncates the file back to where the command started "
        "('Throwing away N bytes'), asks for the same bytes again and backs off 1, 2, 4 … s, "
        "so through this server it never finishes. Run again, `-C -` starts from the size "
        "of the file. No `If-Range`: after a change on the server it would join two versions.",
        f"- **aria2**: `{shlex.join(aria2_client.build(placeholder))}`; it continues with "
        "`Range: bytes=N-LAST` and no `If-Range` (the same caveat as curl).",
        "",
    ]


def progress_table(cfg: Config, summ: dict[tuple[str, str], Summary]) -> str:
    """Markdown table: D1/U1 with a progress listener versus none."""
    lines = [
        "| tool | direction | wall s (none → listener) | Δ wall | CPU s (none → listener) "
        "| Δ CPU | listener calls |",
        "|" + "---|" * 7,
    ]
    for t in cfg.tools:
        for base, var in (("D1", "P1D"), ("U1", "P1U")):
            a, b = summ.get((base, t)), summ.get((var, t))
            if a is None or b is None or not a.runs or not b.runs:
                continue
            dw = (b.wall / a.wall - 1) * 100
            dc = (b.cpu / a.cpu - 1) * 100 if a.cpu else float("nan")
            lines.append(
                f"| {t} | {'download' if base == 'D1' else 'upload'} "
                f"| {a.wall:.3f} → {b.wall:.3f} | {dw:+.0f} % | {a.cpu:.3f} → {b.cpu:.3f} "
                f"| {_f(dc, '+.0f')} % | {_f(b.progress_calls, '.0f')} |"
            )
    return "\n".join(lines)


# wxtransfer red; the references: curl grey, threaded (wxtransfer's threads alone) pale red
COLORS = {"wxtransfer": "#d62728", "curl": "#7f7f7f", REFERENCE: "#ff9896"}


def chart(cfg: Config, summ: dict[tuple[str, str], Summary], path: Path) -> None:
    """Bar chart of median throughput (min–max whiskers) per tool, one panel per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scens = cfg.scenarios
    ncol = min(3, len(scens))
    nrow = (len(scens) + ncol - 1) // ncol
    width = max(5.2 * ncol, 7.5)  # room for the title over a single panel
    fig, axes = plt.subplots(nrow, ncol, figsize=(width, 3.2 * nrow), squeeze=False)
    for ax in axes.flat[len(scens) :]:
        ax.axis("off")
    for ax, scen in zip(axes.flat, scens, strict=False):
        rows = [(t, summ[(scen.name, t)]) for t in cfg.tools if (scen.name, t) in summ]
        rows = [(t, s) for t, s in rows if s.runs]
        names = [t for t, _ in rows]
        amount = work(scen, cfg)
        vals = [amount / s.wall for _, s in rows]
        lo = [v - amount / s.wall_max for v, (_, s) in zip(vals, rows, strict=True)]
        hi = [amount / s.wall_min - v for v, (_, s) in zip(vals, rows, strict=True)]
        colors = [COLORS.get(t, "#1f77b4") for t in names]
        ax.barh(names, vals, xerr=[lo, hi], color=colors, capsize=3)
        ax.invert_yaxis()
        ax.set_title(f"{scen.name}: {title(scen, cfg)}", fontsize=8, wrap=True)
        ax.set_xlabel(unit(scen))
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("wxtransfer benchmarks: median throughput (whiskers: min–max), higher is better")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def repo_state() -> str:
    """Short commit of the repository (the wxtransfer measured), marked dirty if so."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return f"{head or '?'}{' (src/ has uncommitted changes)' if dirty else ''}"


def machine(ng: Nginx) -> list[tuple[str, str]]:
    """Facts about this machine for the report."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / (1 << 30):.1f} GiB"
    except Exception:
        pass
    osname = "?"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} logical cores"),
        ("memory", mem),
        ("kernel / OS", f"{platform.system()} {platform.release()} / {osname}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("nginx", ng.version()),
        ("repository", repo_state()),
        ("peak RSS", rss_method()),
    ]


# What limits wxtransfer on many small transfers, as measured on this machine (per-thread
# CPU from /proc, yappi and py-spy profiles, strace): kept here so each run's doc says it.
SMALL_TRANSFER_LIMITS = [
    "## What limits the small transfers",
    "",
    "Measured with `perf` and `py-spy --gil` (samples per thread, 10 x 1000 S1 downloads or "
    "S2 uploads in one process, `Runtime(max_concurrent_*=10)`, files on tmpfs, against this "
    "nginx), `strace -f` and cProfile:",
    "",
    "- **One Python at a time.** pycurl's bare loop does all of a transfer on one thread, "
    "in about 110 µs here. wxtransfer splits it over three: the caller's (checks, task, "
    "result), the engine's (libcurl and the transfer's logic) and, for downloads, the "
    "writer's (the file), so that callbacks never run on the engine thread and a slow disk "
    "never stalls the network. Their Python runs one at a time under the GIL, and each "
    "hand-over of the GIL between two threads that both want it costs a futex wake-up and, "
    "on this VM, tens of µs: one `access()` on the caller's thread takes ~55 µs while the "
    "engine runs, ~1 µs alone; a call to `download_file` ~15 µs alone, 50-70 µs of CPU "
    "while the engine runs.",
    "- **The split itself** is measured in every run by `threaded` (pycurl's loop on the "
    "same three threads, with nothing else): threaded ÷ pycurl under each S1-S3 table, "
    "0.88x (S3-up) to 1.34x (S3-down) in the full run above, 0.96x to 1.28x in the one "
    "before it, 1.12x to 1.49x in a 3-round run on a busier day. So the split is not what"
    " keeps S1 from 0.8x pycurl's loop (a wall of at most 1.25x pycurl's): `threaded` "
    "meets it (1.05x), S2's about (1.31x above, 1.16x the run before), and S3-up's 1.0x "
    "curl (0.63x curl's wall); S3-down's not (1.06x curl's wall). What keeps wxtransfer "
    "from them is its own work beyond the split, wxtransfer ÷ threaded: 1.53x (S3-up) to "
    "1.92x (S1) in the full run above, 1.52x to 2.16x in the one before it. Even with no "
    "hand-over across CPUs (the process on one CPU, `inprocess.py --pin 0`, 3 alternating"
    " pairs of 5 rounds), wxtransfer's S1 took 1.6-2.5x the wall of pycurl's loop "
    "(0.188-0.271 s against 0.104-0.127 s) and S2 1.8-2.3x (0.194-0.278 s against "
    "0.110-0.119 s): with no hand-overs at all, wxtransfer's work per transfer is still "
    "1.6-2.5 times the bare loop's.",
    "- **Beyond the split, S1 (downloads)**: the engine thread spends ~255 µs per download: "
    "Python ~126 µs (the head, the flow, the result and its profile, the file handed over, "
    "the next transfer set up), waiting for the GIL and locks ~54 µs, libcurl ~24 µs, "
    "sockets and `poll` ~24 µs. The writer thread ~142 µs: the GIL ~52 µs, the four file "
    "system calls (create the part, write, close, rename it into place, so that a file "
    "never carries its final name before it is complete) ~42 µs, Python ~41 µs. The three "
    "threads make ~21 futex calls per download (`strace -f`; ~26 before the writer was "
    "woken once per engine pass), the same split with nothing else ~5: more Python per "
    "transfer is more hand-overs. No one function stands out: "
    "held-GIL samples on the engine put the profile at ~10 %, handing the file to the "
    "writer (whose queue wakes it) ~8 %, setting the handle up ~7 %, reading the head "
    "~11 %, and the rest below 5 % each.",
    "- **Hand-overs of the GIL across CPUs.** `benchmarks/inprocess.py` (7 rounds of 1000, "
    "medians, runs in pairs on a noisy machine) gave wxtransfer's S1 0.270-0.359 s, and "
    "0.189-0.291 s with the process kept on one CPU (`--pin 0`), each pair 20-30 % apart; "
    "S2 0.197-0.242 s, and 0.164-0.169 s pinned; pycurl's loop 0.08-0.12 s, pinned or "
    "not, with no trend. "
    "Unpinned, each S1 download costs the engine ~140-180 µs of CPU and ~1.3-1.6 sleeps "
    "(waits for the GIL), the writer ~60-70 µs and ~1.1-1.4 sleeps, the caller ~55 µs and "
    "~0.5 sleeps; pinned, ~115 µs and 0.03 sleeps, ~45 µs and 0.15, ~32 µs and 0.27. On "
    "two CPUs, each time a thread lets go of the GIL for a moment (a callback from libcurl "
    "returns, a system call) a thread waiting on the other CPU takes it, and the first "
    "must then sleep until it comes back: a third of the time goes to that ping-pong. On "
    "one CPU the holder keeps it until it blocks. pycurl's loop, on one thread, has no one "
    "to hand it to. A library cannot pin its caller; what it can do is hold less Python "
    "per transfer (letting go of the GIL less often did not help: see below). "
    "Big files gain too: `inprocess.py wxtransfer-D1` (1 GiB to the disk, 3 alternating "
    "pairs of 5 rounds, medians) took 1.16-1.26 s, and 0.87-1.04 s on one CPU; a what-if "
    "that keeps only the runtime's two threads on one CPU, 0.93 s against 1.19 s free and"
    " 0.85 s for the whole process (6 alternating runs). Here nginx shares the two vCPUs,"
    " so the engine, the writer and nginx are three busy threads on two CPUs; a server on"
    " another machine leaves the client both, so wxtransfer does not pin its threads on "
    "its own.",
    "- **Starting 1000 tasks at once.** The caller's 1000 `download_file` or "
    "`upload_file` calls, made before its first `result()`, take 60-110 ms, ~55-100 µs of"
    " CPU each against ~15 µs alone, and 0 to 80 transfers (mostly 0) end meanwhile "
    "(`inprocess.py` prints both per round): the caller's thread holds the GIL but at its"
    " system calls, and the engine's waits behind it. That is no time lost as such: the "
    "threads' Python runs one at a time, so the wall is the sum of their CPU whichever "
    "runs first, and what counts is that CPU, inflated by the hand-overs.",
    "- **A system call's time in a profile is the other threads' work.** cProfile on the "
    "engine thread puts ~60 µs per upload in `os.urandom` (the multipart boundary) and "
    "~70 µs in the small file's open, read and close; while the engine waits there, the "
    "caller runs. Taking them off the engine thread changed nothing: boundaries from a "
    "pool of random bytes, 0.259 s against 0.253 s before; the file read ahead on the "
    "writer thread while its upload waits its turn, 0.291 s against 0.277 s (8 "
    "interleaved pairs each of 5 x 1000 S2 uploads, medians). Neither was kept.",
    "- **Beyond the split, S2 (uploads)**: no writer; the engine ~242 µs per upload: Python "
    "~130 µs, libcurl ~26 µs, the GIL ~23 µs, sockets ~21 µs, reading the small file "
    "~15 µs. The caller runs ~40 µs of Python per call (checks, task).",
    "- **S3 (HTTP/2)**: the same per-transfer costs as S1 and S2; TLS and HTTP/2 framing "
    "cost every tool about the same.",
    "- **S4 (20 ms round trip)**: the network sets the pace; curl, pycurl and wxtransfer "
    "are within a few per cent of each other (wxtransfer 1.00x curl's wall on both in the "
    "run above, 1.02x pycurl's on HTTP/2), and HTTP/2 costs each of them 6-7 % of the floor "
    "over HTTP/1.1 here (one TLS handshake more, one connection through the proxy).",
    "",
    "Done, each checked by a test: a transfer takes its easy handle when it starts and "
    "leaves it to the next of its API (a thousand queued calls made a thousand "
    "`duphandle`s before); header lines go to `list.append` in C and the head is read "
    "once, unless a headers listener wants it at its blank line; a finished transfer is "
    "freed by reference counting (its flow held it in a cycle: the cyclic GC took ~16 % "
    "of the caller's thread in S2, now ~9 %, for the tasks the caller keeps); one "
    "`access()` per call instead of two "
    "(a folder found writable counts for a second); the head parsed from its joined bytes "
    "(8.2 µs instead of 10.5); the engine hands its file jobs to the writer at its next "
    "flush, before `perform()` or `poll()`, so the writer is woken once per engine pass, "
    "not once per file (context switches -25 to -35 %, S1 4-9 % faster in 12 interleaved "
    "runs). Tried with no measurable effect: no header callback at all (a what-if); "
    "sending the next requests before building the results of the transfers that ended "
    "(a second `perform()` first: S1 0.360 s against 0.344 s in 6 pairs, S4 within its "
    "own noise, pycurl's h2 wall going from 1.18x to 1.32x the floor between two runs); "
    "the engine and writer threads kept on one CPU, the caller's free (-6 %: 0.246 s "
    "against 0.261 s in 6 pairs, where the whole process on one CPU gains a third); and "
    "making no event object when nobody listens (kept only as `(type, args)` for a late "
    "listener: 12 interleaved runs within noise, so not kept). As what-ifs together (10 "
    "interleaved runs of 5 x 1000 S1 downloads, medians): no profile, no event reported, "
    "the writer woken once per engine pass: 0.316 s against 0.361 s, about 12 %; alone, "
    "each gained 4-7 %, within this machine's noise.",
    "",
    "What would move S1 and S2 further is less Python per transfer and fewer GIL "
    "hand-overs: file work outside this process's GIL (a helper process), the per-transfer "
    "bookkeeping in C, or a free-threaded CPython.",
    "",
]


def write_doc(
    cfg: Config,
    tools: list[Tool],
    results: list[RunResult],
    ng: Nginx,
    started: dt.datetime,
    elapsed: float,
    d2_speed: str = "",
    link: str = "",
) -> None:
    """Write the markdown report and the chart (``d2_speed``: see server_speeds; ``link``:
    see link_check)."""
    summ = summarize(results)
    cfg.doc.parent.mkdir(parents=True, exist_ok=True)
    chart(cfg, summ, cfg.png)
    out: list[str] = ["# Benchmarks", ""]
    if cfg.smoke:
        out += ["**Smoke run: tiny sizes, one round. These numbers mean nothing.**", ""]
    out += [
        f"Generated by `benchmarks/run.py` on {started:%Y-%m-%d %H:%M} UTC "
        f"in {elapsed / 60:.1f} min. Command (from the repository root):",
        "",
        f"    {cfg.command}",
        "",
        f"Medians of {cfg.rounds} round(s); all traffic is HTTP/1.1 (S3, S4-h2: HTTP/2 over "
        "TLS) over 127.0.0.1 to a local nginx (S4: through a delaying proxy; D2: to "
        "`benchmarks/cutserver.py`; U2: to `@tus/server` through a cutting proxy) "
        "on the same machine, so server and client "
        "share the CPU. **Wall** is the transfer phase as the client timed it (interpreter "
        "start-up and imports excluded; for the curl and aria2c CLIs, the whole process). "
        "**CPU (transfer)** is user+sys of that phase, "
        "**CPU (process)** the child's whole rusage including start-up and imports. "
        "**×** columns divide a tool's figure by curl's or by the best of the Python peers "
        "(pycurl, requests, httpx, aiohttp): below 1 is better.",
        "",
    ]
    if REFERENCE in cfg.tools:
        out += [
            f"**{REFERENCE}** (S1 to S3) is a reference, not a peer: pycurl's bare CurlMulti "
            "loop split over three threads the way wxtransfer splits it (the caller submits "
            "and waits, an engine thread runs libcurl, a writer thread writes the files), "
            f"with nothing else (`benchmarks/clients/{REFERENCE}.py`), so wxtransfer ÷ "
            f"{REFERENCE} is wxtransfer's own cost beyond the thread split and {REFERENCE} ÷ "
            "pycurl the split's.",
            "",
        ]
    skipped = [t for t in tools if not t.available]
    if skipped:
        out += ["Skipped (not available here):", ""]
        out += [f"- **{t.name}**: {t.reason}" for t in skipped]
        out.append("")
    failures = [r for r in results if not r.ok]
    if failures:
        out += ["Failed runs:", ""]
        out += [f"- round {r.round} {r.scenario} {r.tool}: {r.error}" for r in failures[:20]]
        out.append("")
    for scen in cfg.scenarios:
        if scen.progress:
            continue
        out += [f"## {scen.name}: {title(scen, cfg)}", ""]
        if scen.base == "D2":
            out += d2_section(scen, cfg, summ, d2_speed)
            continue
        if scen.base == "U2":
            out += u2_section(scen, cfg, summ)
            continue
        if scen.delayed:
            out += s4_section(scen, cfg, summ, tools, link)
            continue
        if scen.http2:
            out += s3_section(scen, cfg, summ, tools)
            continue
        out += [scenario_table(scen, cfg, summ), "", *split_line(scen, summ)]
    if any(s.progress for s in cfg.scenarios):
        out += [
            "## P1: a progress listener attached versus none",
            "",
            "The listener only stores the latest value. Tools without a listener for a "
            "direction are left out (httpx and aiohttp have no upload-progress hook; their "
            "download 'listener' is a callback from the read loop).",
            "",
            progress_table(cfg, summ),
            "",
        ]
    if any(s.base in ("S1", "S2", "S3", "S4") for s in cfg.scenarios):
        out += SMALL_TRANSFER_LIMITS
    out += [f"![throughput by tool]({cfg.png.name})", "", "## Machine and versions", ""]
    facts = machine(ng)
    if any(s.base == "D2" for s in cfg.scenarios):
        facts.append(("cut server (D2)", CUT_SERVER_FACT))
    if any(s.base == "U2" for s in cfg.scenarios):
        facts.append(("tus server (U2)", tus_fact()))
    if any(s.http2 for s in cfg.scenarios):
        facts.append(
            (
                "TLS (S3, S4-h2)",
                "the same nginx, `listen ssl http2` (ALPN h2), a `trustme` CA and leaf "
                "for 127.0.0.1 made at start",
            )
        )
    if any(s.delayed for s in cfg.scenarios):
        facts.append(
            (
                "delay proxy (S4)",
                f"`benchmarks/delayproxy.py`, {cfg.s4_delay_ms:g} ms each way, threads in "
                "the harness process (2 per direction per connection), `TCP_NODELAY` on both "
                "sides",
            )
        )
    facts += [
        (
            t.name,
            t.version
            + (f" (idle RSS after import: {t.idle_rss / MiB:.1f} MiB)" if t.idle_rss else ""),
        )
        for t in tools
        if t.available
    ]
    out += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in facts] + [""]
    out += [
        "## Method",
        "",
        "- nginx 1 worker, generated config in `benchmarks/.work/nginx/`: downloads are static "
        "files with `sendfile on`; `POST /upload` has `client_max_body_size 0`, "
        f"`client_body_buffer_size 128k` and reads the body with **{ng.upload_mode}** before "
        "answering `ok` (bodies past 128 KiB go to a temp file that nginx deletes at once).",
        "- Every run is checked: the client checks status codes and sizes and exits non-zero on "
        "a mismatch; the harness re-checks downloaded file sizes and the nginx access log "
        "(one line per expected request, status 200, `$bytes_sent` ≥ the file for downloads, "
        "`$request_length` > `$content_length` > the file for uploads, i.e. the whole body "
        "was read by nginx).",
        "- Each run is a fresh subprocess; CPU time is from its rusage (wait4), peak RSS as "
        "stated above. Each run downloads into a fresh folder under `benchmarks/.work/out/`; "
        "D1's file is deleted after its run, S1's files only at the end. On this machine's "
        "ext4 (mounted with `discard`) creating a file in the ~25 s after many were deleted "
        "costs ~600 µs of kernel CPU instead of ~30 µs, which S1 would otherwise measure. "
        "The upload source is read once before the rounds so it sits in the page cache.",
        f"- Rounds are interleaved (every scenario for every tool, then the next round) and "
        f"the tool order rotates each round. The small-file scenarios (S1 to S4) run first, "
        f"all their rounds, then D1, U1, P1, D2 and U2. S1 to S4 keep at most {CONCURRENCY} "
        "transfers in flight: curl `--parallel --parallel-max 10`, pycurl a CurlMulti with "
        "10 handles (its `select` bounded by libcurl's timer), requests a "
        "ThreadPoolExecutor(10) on one Session, httpx/aiohttp a Semaphore(10), wxtransfer "
        "its runtime's queue (Runtime(max_concurrent_*=10)).",
        "- S3 and S4-h2 ask each tool for HTTP/2 over TLS with 10 in flight: curl "
        "`--http2 --cacert CA --parallel --parallel-max 10` (curl sets PIPEWAIT in parallel "
        "mode), pycurl the same CurlMulti with `HTTP_VERSION=2TLS`, `PIPEWAIT=1` and "
        "`CAINFO`, httpx `AsyncClient(http2=True, verify=SSLContext(CA))`, wxtransfer "
        "`Runtime(max_concurrent_*=10, ca_file=CA)` and `enable_http2=True` on each call. "
        "requests and aiohttp have no HTTP/2 and run only S4-h1. S4 runs S1 through "
        "`benchmarks/delayproxy.py` with its own count (`--s4-count`, smoke 20) and delay "
        "(`--s4-delay-ms` each way, smoke 2).",
        "- Clients: `benchmarks/clients/<tool>.py`; 1 MiB chunks where the tool lets us choose.",
        "",
    ]
    cfg.doc.write_text("\n".join(out))


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; see the module docstring."""
    cfg = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    tools = [probe(t) for t in cfg.tools]
    for t in tools:
        state = t.version if t.available else f"SKIPPED ({t.reason})"
        print(f"{t.name:10} {state}", flush=True)
    if not any(t.available for t in tools):
        print("no tool available", file=sys.stderr)
        return 2
    d2 = any(s.base == "D2" for s in cfg.scenarios)
    u2 = any(s.base == "U2" for s in cfg.scenarios)
    s4 = any(s.delayed for s in cfg.scenarios)
    if u2:
        try:
            ensure_node_packages()  # once, not in the first U2 run
        except (OSError, RuntimeError) as e:
            print(f"U2 needs the tus server: {e}", file=sys.stderr)
            return 2
    data = make_data(
        cfg.size_mib,
        max(cfg.count, cfg.s4_count if s4 else 0),
        big=any(s.big for s in cfg.scenarios),
        d2_mib=cfg.d2_size_mib if d2 else 0,
        u2_mib=cfg.u2_size_mib if u2 else 0,
    )
    data.u2_cut = cfg.u2_cut_mib * MiB
    data.count = cfg.count  # S1-S3 (the folder may hold more files, for S4)
    data.s4_count, data.s4_delay = cfg.s4_count, cfg.s4_delay_ms / 1000
    shutil.rmtree(data.outdir, ignore_errors=True)  # left by an interrupted run
    ng = Nginx(work=WORK / "nginx", root=data.www, tls=any(s.http2 for s in cfg.scenarios))
    cs = CutServer(work=WORK / "cutserver", root=data.www, cut=cfg.d2_cut_mib * MiB) if d2 else None
    try:
        ng.start()
        if cs is not None:
            cs.start()
    except RuntimeError as e:
        ng.stop()
        print(e, file=sys.stderr)
        return 2
    try:
        print(f"nginx on {ng.base_url}, upload endpoint: {ng.upload_mode}", flush=True)
        if ng.tls:
            print(f"nginx with TLS and HTTP/2 on {ng.tls_base_url}, CA {ng.ca_file}", flush=True)
        if cs is not None:
            print(f"cut server on {cs.base_url}, cutting after {cfg.d2_cut_mib} MiB", flush=True)
        if not ng.body_verified:
            print("warning: no echo module; upload bodies are drained after the reply")
        if any(s.base == "U1" for s in cfg.scenarios):
            warm_cache(data.big)
        if data.d2 is not None:
            warm_cache(data.d2)
        if data.u2 is not None:
            warm_cache(data.u2)
        d2_speed = server_speeds(cfg, ng, cs, data) if cs is not None else ""
        if d2_speed:
            print(d2_speed.replace("*", "").replace("`", ""), flush=True)
        link = link_check(cfg, ng, data) if s4 else ""
        if link:
            print(link.replace("*", ""), flush=True)
        results = run_all(cfg, tools, ng, data, cs)
        write_doc(cfg, tools, results, ng, started, time.monotonic() - t0, d2_speed, link)
    finally:
        if cs is not None:
            cs.stop()
        ng.stop()
        shutil.rmtree(data.outdir, ignore_errors=True)
    cfg.raw.write_text(json.dumps([asdict(r) for r in results], indent=1))
    failed = [r for r in results if not r.ok]
    print(f"wrote {cfg.doc}, {cfg.png} and {cfg.raw} ({len(results)} runs, {len(failed)} failed)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
