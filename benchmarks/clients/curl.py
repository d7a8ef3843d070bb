"""curl CLI client: builds the curl command line the harness runs (and measures) directly.

Run standalone as ``python -m clients.curl SCENARIO URL TARGET ...`` it runs curl itself and
checks the result, like the Python clients (but it reports the wall time of the curl process).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from clients._common import D2_RETRIES, Args, check, check_file, small_name

PROGRESS = frozenset({"D1", "U1"})
WRITE_OUT = "%{http_code} %{size_download}\\n"

# D2: curl's own ``--retry N --retry-all-errors -C -`` does not continue a cut body. On each
# retry curl (7.88 here) truncates the file back to where the command started ("Throwing
# away N bytes") and asks for the same bytes again, so through a server that cuts every
# connection it never finishes. What works is running curl again: ``-C -`` then starts from
# the size of the file. The loop runs it up to 1 + D2_RETRIES times, with no wait between.
D2_LOOP = (
    'for i in $(seq 0 "$1"); do curl -s -S -f -C - -o "$2" -w "$3" "$4" && exit 0; done; exit 1'
)


def d2_display(target: str = "FILE", url: str = "URL") -> str:
    """D2's loop as one would type it (without the ``-w`` format)."""
    loop = D2_LOOP.replace(' -w "$3"', "").replace('"$1"', str(D2_RETRIES))
    return loop.replace('"$2"', target).replace('"$4"', url)


def _q(s: str | Path) -> str:
    """Quote a value for a curl config file."""
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def build(args: Args, workdir: Path) -> list[str]:
    """The curl argv for a scenario; S1/S2 write a config file (``-K``) into workdir."""
    quiet = ["--progress-bar"] if args.progress else ["-s", "-S"]
    if args.scenario == "D1":
        return ["curl", *quiet, "-f", "-o", str(args.target), "-w", WRITE_OUT, args.url]
    if args.scenario == "D2":
        argv = [str(D2_RETRIES), str(args.target), WRITE_OUT, args.url]
        return ["sh", "-c", D2_LOOP, "curl-retry-loop", *argv]
    if args.scenario == "U1":
        form = ["-F", f"file=@{args.target}", "-F", "user=bench"]
        return ["curl", *quiet, "-f", *form, "-o", "/dev/null", "-w", WRITE_OUT, args.url]
    # --http2 and --cacert are per-operation options that `next` resets: one of each per block
    tls = [f"cacert = {_q(args.ca_file)}"] if args.ca_file else []
    if args.http2:
        tls.append("http2")
    lines = []
    for i in range(args.count):
        if args.scenario == "S1":
            lines += [
                f"url = {_q(args.url + small_name(i))}",
                f"output = {_q(args.target / small_name(i))}",
            ]
        else:
            lines += [
                f"url = {_q(args.url)}",
                f"form = {_q(f'file=@{args.target / small_name(i)}')}",
                'form = "user=bench"',
                f"output = {_q('/dev/null')}",
            ]
        lines += [*tls, f"write-out = {_q(WRITE_OUT)}", "fail", "next"]
    cfg = workdir / f"curl-{args.scenario}.cfg"
    cfg.write_text("\n".join(lines[:-1]) + "\n")
    par = ["--parallel", "--parallel-max", str(args.concurrency)]
    return ["curl", "-s", "-S", *par, "-K", str(cfg)]


def verify(args: Args, stdout: str) -> int:
    """Check curl's ``-w`` lines and the files; returns payload bytes moved."""
    rows = [line.split() for line in stdout.splitlines() if line.strip()]
    if args.scenario == "D2":  # one line per curl run: the last one finished the file
        check(bool(rows) and rows[-1][0] in ("200", "206"), f"write-out lines {rows}")
        check_file(args.target, args.size)
        return args.size
    n = 1 if args.scenario in ("D1", "U1") else args.count
    check(len(rows) == n, f"{len(rows)} write-out lines, expected {n}")
    for code, _size in rows:
        check(code == "200", f"status {code}")
    if args.scenario == "D1":
        check_file(args.target, args.size)
        return args.size
    if args.scenario == "U1":
        return args.target.stat().st_size
    if args.scenario == "S1":
        for i in range(args.count):
            check_file(args.target / small_name(i), args.size)
        return args.count * args.size
    return args.small_upload_bytes()


def http2() -> bool:
    """curl built with HTTP/2 (``HTTP2`` among the features of ``curl --version``)."""
    exe = shutil.which("curl")
    if exe is None:
        return False
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    feats = [ln for ln in out.stdout.splitlines() if ln.startswith("Features:")]
    return bool(feats) and "HTTP2" in feats[0].split()


def version() -> str:
    """First line of ``curl --version``."""
    exe = shutil.which("curl")
    if exe is None:
        raise RuntimeError("curl not found")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.splitlines()[0]


def main() -> None:
    """Standalone: run curl for one scenario and print a JSON result line."""
    import argparse
    import tempfile

    p = argparse.ArgumentParser()
    p.add_argument("--probe", action="store_true")
    p.add_argument("scenario", nargs="?", choices=["D1", "U1", "S1", "S2", "D2"])
    p.add_argument("url", nargs="?")
    p.add_argument("target", nargs="?", type=Path)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--size", type=int, default=-1)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--http2", action="store_true")
    p.add_argument("--ca-file", default="")
    ns = p.parse_args()
    if ns.probe:
        caps = {"version": version(), "progress": sorted(PROGRESS), "http2": http2()}
        print(json.dumps(caps))
        return
    args = Args(
        ns.scenario,
        ns.url,
        ns.target,
        ns.count,
        ns.size,
        ns.progress,
        ns.concurrency,
        http2=ns.http2,
        ca_file=ns.ca_file,
    )
    with tempfile.TemporaryDirectory() as tmp:
        argv = build(args, Path(tmp))
        t0 = time.perf_counter()
        r = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
        wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"curl exited {r.returncode}")
    nbytes = verify(args, r.stdout)
    print(json.dumps({"wall": wall, "cpu": None, "bytes": nbytes}))


if __name__ == "__main__":
    main()
