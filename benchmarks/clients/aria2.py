"""aria2c client for D2: builds the aria2c command line the harness runs (and measures).

One connection (``-x1 -s1``), up to 10 retries with no wait, continuing the file (``-c``);
no preallocation (``--file-allocation=none``: the default writes the whole file once first).
aria2 asks for the rest with a plain ``Range`` (no ``If-Range``).
"""

from __future__ import annotations

import shutil
import subprocess

from clients._common import D2_RETRIES, Args, check, check_file

INSTALL_HINT = "aria2c not found (Debian: apt-get install aria2)"


def build(args: Args) -> list[str]:
    """The aria2c argv for D2 (the only scenario it runs)."""
    check(args.scenario == "D2", f"aria2 runs D2 only, not {args.scenario}")
    return [
        "aria2c",
        "-x1",
        "-s1",
        f"--max-tries={D2_RETRIES + 1}",  # tries, the first included
        "--retry-wait=0",
        "-c",
        "--file-allocation=none",
        "--auto-file-renaming=false",
        "--allow-overwrite=true",
        "--console-log-level=error",  # to stdout: the harness shows it when a run fails
        "--enable-color=false",
        "--summary-interval=0",
        "--download-result=hide",
        "-d",
        str(args.target.parent),
        "-o",
        args.target.name,
        args.url,
    ]


def verify(args: Args) -> int:
    """Check the file (aria2c exits non-zero on a failed download); returns its bytes."""
    check_file(args.target, args.size)
    check(not args.target.with_name(args.target.name + ".aria2").exists(), "control file left")
    return args.size


def version() -> str:
    """First line of ``aria2c --version``; raises when aria2c is missing."""
    exe = shutil.which("aria2c")
    if exe is None:
        raise RuntimeError(INSTALL_HINT)
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.splitlines()[0]
