"""S1/S2 in one process, with counters: where the small transfers' time goes.

``run.py`` measures each tool from outside, one process per run. This runs the same many
small transfers several times in one process, against the bench's nginx, and prints per
round the wall time and, per thread, the CPU time and the voluntary context switches
(sleeps: waits for the GIL, a lock or a queue) per transfer, read from ``/proc``; for
wxtransfer also how long starting every task took and how many had ended by then. Counts
move less than wall time on a busy machine, so a change that cuts hand-overs between
threads shows in them first.

    python benchmarks/inprocess.py wxtransfer-S1 --rounds 7
    python benchmarks/inprocess.py wxtransfer-S2 --rounds 7 --pin 0
    python benchmarks/inprocess.py pycurl-S1 --count 1000   # clients/pycurl.py's loop
    python benchmarks/inprocess.py wxtransfer-D1 --pin 0    # one 1 GiB download a round

``--pin CPU`` keeps the process on one CPU (Linux): the threads then hand the GIL over
without waking another CPU. Attach ``perf`` or ``py-spy --gil`` to the process for
profiles. Linux only (``/proc``); traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from clients._common import Args, small_name  # noqa: E402
from clients.pycurl import many as pycurl_many  # noqa: E402
from server import Nginx  # noqa: E402

import wxtransfer  # noqa: E402

WORK = BENCH_DIR / ".work" / "inprocess"
SIZE = 10 * 1024
CONCURRENCY = 10


def thread_counters() -> dict[str, tuple[float, int]]:
    """Per live thread of this process: (CPU seconds, voluntary context switches)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, tuple[float, int]] = {}
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            schedstat = (task / "schedstat").read_text()  # ns on the CPU, first
            status = (task / "status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        cpu = int(schedstat.split()[0]) / 1e9
        sleeps = int(status.split("voluntary_ctxt_switches:")[1].split()[0])
        out[names.get(int(task.name), task.name)] = (cpu, sleeps)
    return out


def wx_many(
    rt: wxtransfer.Runtime, base: str, names: list[str], files: Path, out: Path, up: bool
) -> str:
    """S1 or S2 as ``clients/wxtransfer.py`` runs them, but on a runtime that outlives the
    round: its threads must still be there to be counted. Says how long starting every
    task took, and how many had ended by then."""
    t0 = time.perf_counter()
    tasks: list[wxtransfer.UploadTask] | list[wxtransfer.DownloadTask]
    if up:
        form = {"user": "bench"}
        tasks = [
            rt.upload_file(f"{base}/upload", str(files / n), "file", form_data=form, timeout=0)
            for n in names
        ]
    else:
        tasks = [rt.download_file(f"{base}/{n}", file_path=str(out / n), timeout=0) for n in names]
    started = time.perf_counter() - t0
    ended = sum(task.done() for task in tasks)
    for task in tasks:
        status = task.result().status_code
        if status != 200:
            raise SystemExit(f"status {status}")
    return f"started in {started:.3f} s, {ended} ended by then"


def wx_big(rt: wxtransfer.Runtime, url: str, target: Path, size: int) -> None:
    """D1: one big download, to the disk as run.py's D1 (unless ``--out`` says else)."""
    result = rt.download_file(url, file_path=str(target), timeout=0).result()
    if result.status_code != 200 or target.stat().st_size != size:
        raise SystemExit(f"status {result.status_code}, {target.stat().st_size} bytes")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "what",
        choices=["wxtransfer-S1", "wxtransfer-S2", "pycurl-S1", "pycurl-S2", "wxtransfer-D1"],
    )
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--size-mib", type=int, default=1024, help="D1's file size")
    p.add_argument("--pin", type=int, default=None, help="keep the process on this CPU")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the downloads go, emptied each round (default: S1 to tmpfs, so that "
        "the disk's own costs stay out of the counts; D1 to the disk, as run.py's D1)",
    )
    a = p.parse_args()
    big = a.what.endswith("D1")
    tmpfs = Path("/dev/shm")
    out = a.out or (tmpfs / "wxtransfer-inprocess" if tmpfs.is_dir() and not big else WORK / "out")
    if big:
        a.count = 1  # the counters below are per transfer: for D1, the whole download

    root = WORK / "www"
    (WORK / "files").mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    names = [small_name(i) for i in range(a.count)]
    blob = os.urandom(SIZE)
    for name in names:
        for folder in (root, WORK / "files"):
            if not (folder / name).exists():
                (folder / name).write_bytes(blob)
    big_size = a.size_mib << 20
    big_file = root / "big.bin"
    if big and (not big_file.exists() or big_file.stat().st_size != big_size):
        chunk = os.urandom(1 << 20)
        with open(big_file, "wb") as f:
            for _ in range(a.size_mib):
                f.write(chunk)
    ng = Nginx(work=WORK / "nginx", root=root)
    ng.start()
    if a.pin is not None:
        os.sched_setaffinity(0, {a.pin})  # this thread; the runtime's threads inherit it
    rt = wxtransfer.Runtime(
        max_concurrent_downloads=CONCURRENCY, max_concurrent_uploads=CONCURRENCY
    )
    walls: list[float] = []
    try:
        for k in range(a.rounds):
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            before = thread_counters()
            start = ""
            t0 = time.perf_counter()
            if a.what.startswith("pycurl"):  # clients/pycurl.py's loop, as run.py runs it
                up = a.what == "pycurl-S2"
                url = ng.upload_url if up else ng.base_url + "/"
                pycurl_many(
                    Args(
                        a.what[-2:],
                        url,
                        WORK / "files" if up else out,
                        a.count,
                        SIZE,
                        False,
                        CONCURRENCY,
                    ),
                    up,
                )
            elif big:
                wx_big(rt, f"{ng.base_url}/big.bin", out / "big.bin", big_size)
            else:
                start = wx_many(
                    rt, ng.base_url, names, WORK / "files", out, a.what == "wxtransfer-S2"
                )
            wall = time.perf_counter() - t0
            walls.append(wall)
            after = thread_counters()
            per = []
            for name, (cpu, sleeps) in sorted(after.items()):
                cpu0, sleeps0 = before.get(name, (0.0, 0))
                if cpu - cpu0 > 0.001:
                    per.append(
                        f"{name} {(cpu - cpu0) * 1e6 / a.count:.0f} µs "
                        f"{(sleeps - sleeps0) / a.count:.2f} sleeps"
                    )
            if start:
                per.append(start)
            print(f"round {k + 1}: {wall:.3f} s | " + " | ".join(per), flush=True)
        print(f"{a.what}: median {statistics.median(walls):.3f} s, min {min(walls):.3f} s")
    finally:
        rt.close()
        ng.stop()
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
