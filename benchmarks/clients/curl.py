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

from clients._common import Args, check, check_file, small_name

PROGRESS = frozenset({"D1", "U1"})
WRITE_OUT = "%{http_code} %{size_download}\\n"


def _q(s: str | Path) -> str:
    """Quote a value for a curl config file."""
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def build(args: Args, workdir: Path) -> list[str]:
    """The curl argv for a scenario; S1/S2 write a config file (``-K``) into workdir."""
    quiet = ["--progress-bar"] if args.progress else ["-s", "-S"]
    if args.scenario == "D1":
        return ["curl", *quiet, "-f", "-o", str(args.target), "-w", WRITE_OUT, args.url]
    if args.scenario == "U1":
        form = ["-F", f"file=@{args.target}", "-F", "user=bench"]
        return ["curl", *quiet, "-f", *form, "-o", "/dev/null", "-w", WRITE_OUT, args.url]
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
        lines += [f"write-out = {_q(WRITE_OUT)}", "fail", "next"]
    cfg = workdir / f"curl-{args.scenario}.cfg"
    cfg.write_text("\n".join(lines[:-1]) + "\n")
    par = ["--parallel", "--parallel-max", str(args.concurrency)]
    return ["curl", "-s", "-S", *par, "-K", str(cfg)]


def verify(args: Args, stdout: str) -> int:
    """Check curl's ``-w`` lines and the files; returns payload bytes moved."""
    rows = [line.split() for line in stdout.splitlines() if line.strip()]
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
    p.add_argument("scenario", nargs="?", choices=["D1", "U1", "S1", "S2"])
    p.add_argument("url", nargs="?")
    p.add_argument("target", nargs="?", type=Path)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--size", type=int, default=-1)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--concurrency", type=int, default=10)
    ns = p.parse_args()
    if ns.probe:
        print(json.dumps({"version": version(), "progress": sorted(PROGRESS)}))
        return
    args = Args(ns.scenario, ns.url, ns.target, ns.count, ns.size, ns.progress, ns.concurrency)
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
