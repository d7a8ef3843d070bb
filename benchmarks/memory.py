"""Peak memory of one large download and upload, measured from outside the client process.

    python benchmarks/memory.py                      # wxtransfer, 1024 MiB each way
    python benchmarks/memory.py --tools all          # also curl and the Python peers
    python benchmarks/memory.py --size-mib 256 --tools wxtransfer,pycurl

Uses the same private nginx, test files and clients as ``run.py``. For each tool it prints the
peak RSS of the client process per direction and PASS/FAIL against the limit (default 100 MB,
i.e. 100,000,000 bytes). Exit status: 0 when wxtransfer passes both directions (or was not
asked for), 1 on a FAIL or a failed transfer, 2 when wxtransfer is unavailable or nginx
cannot start.
"""

from __future__ import annotations

import argparse
import sys

import run
from measure import rss_method
from server import Nginx


def main(argv: list[str] | None = None) -> int:
    """Measure and print; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--tools", default="wxtransfer", help="comma list, or 'all'")
    p.add_argument("--limit-mb", type=float, default=100.0, help="decimal megabytes")
    ns = p.parse_args(argv)
    names = list(run.ALL_TOOLS) if ns.tools == "all" else ns.tools.split(",")
    for n in names:
        if n not in run.ALL_TOOLS:
            p.error(f"unknown tool {n!r}")
    limit = ns.limit_mb * 1_000_000
    tools = [run.probe(n) for n in names]
    run.WORK.mkdir(parents=True, exist_ok=True)
    data = run.make_data(ns.size_mib, 0)
    ng = Nginx(work=run.WORK / "nginx", root=data.www)
    try:
        ng.start()
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 2
    status = 0
    print(f"{ns.size_mib} MiB each way; limit {ns.limit_mb:g} MB; peak RSS by {rss_method()}")
    try:
        run.warm_cache(data.big)
        for tool in tools:
            if not tool.available:
                print(f"{tool.name:10} SKIPPED: {tool.reason}")
                if tool.name == "wxtransfer":
                    status = max(status, 2)
                continue
            for scen, label in ((run.SCENARIOS["D1"], "download"), (run.SCENARIOS["U1"], "upload")):
                res = run.run_one(1, scen, tool.name, ng, data)
                if not res.ok:
                    print(f"{tool.name:10} {label:8} FAILED: {res.error}")
                    status = 1 if tool.name == "wxtransfer" else status
                    continue
                verdict = "PASS" if res.peak_rss < limit else "FAIL"
                if verdict == "FAIL" and tool.name == "wxtransfer":
                    status = 1
                mb, polled = res.peak_rss / 1e6, res.peak_rss_polled / 1e6
                print(
                    f"{tool.name:10} {label:8} peak RSS {mb:7.1f} MB (polled {polled:.1f} MB)"
                    f"  {res.wall:6.2f} s  {verdict} under {ns.limit_mb:g} MB",
                    flush=True,
                )
    finally:
        ng.stop()
    return status


if __name__ == "__main__":
    sys.exit(main())
