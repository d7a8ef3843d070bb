"""Make docs/cli-many.svg from a real run of ``wxtransfer download`` with several URLs.

Starts the dev server on a free loopback port with a few sample files, runs
``python -m wxtransfer download URL... -j 3 --limit-rate 3M -f`` with stderr on a pty (so
that the live bars are drawn), takes the frame with the most bars and the summary table
that follows the run, and saves them as SVG with rich. Run: ``.venv/bin/python
scripts/cli_many_svg.py`` (about 10 s).
"""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text

from wxtransfer._server import DevServer

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = 118
SIZES = {"photo.jpg": 6_000_000, "video.mp4": 12_000_000, "notes.pdf": 2_500_000,
         "backup.tar": 9_000_000, "song.mp3": 4_000_000}  # fmt: skip
#: Cursor moves, line erases, cursor show/hide: what rich's live display redraws with.
_MOVES = re.compile(r"\x1b\[(\d*[ABCDGHJK]|\?25[lh]|2K)|\r")


def run_on_pty(args: list[str], cwd: Path) -> str:
    """Run ``args`` with stderr on a pty (stdout to /dev/null); all it wrote there."""
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(COLUMNS), LINES="40")
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def frames(screen: str) -> tuple[str, str]:
    """(the live frame with the most bars, what was printed after the live display)."""
    # each refresh: cursor hidden, up N lines, then the block anew, line by line
    parts = re.split(r"(?:\x1b\[2K\x1b\[1A)+\x1b\[2K|\x1b\[\?25h", screen)
    live = [p for p in parts[:-1] if "total" in p]

    def busy(frame: str) -> tuple[int, int]:
        """Named bars running, then files done (fewer than all)."""
        done = re.search(r"(\d+)/\d+ files", frame)
        finished = int(done.group(1)) if done else 0
        return frame.count("download ") - frame.count("0/? bytes"), finished * (finished < 5)

    best = max(live, key=busy) if live else ""
    return _MOVES.sub("", best).strip("\n"), _MOVES.sub("", parts[-1]).strip("\n")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="wxtransfer-svg-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        for name, size in SIZES.items():
            (root / name).write_bytes(os.urandom(size))
        work = Path(tmp) / "work"
        work.mkdir()
        with DevServer(root) as server:
            host = server.url
            urls = [f"{server.url}/files/{name}" for name in SIZES]
            urls.insert(3, f"{server.url}/files/missing.bin")
            args = ["download", *urls, "-j", "3", "--limit-rate", "3M", "-f", "-P", "downloads"]
            screen = run_on_pty([sys.executable, "-m", "wxtransfer", *args], work)
    live, after = frames(screen)
    shown = " ".join(a.replace(host, "http://127.0.0.1:8000") for a in args)
    console = Console(record=True, width=COLUMNS, file=io.StringIO(), force_terminal=True)
    console.print(Text(f"$ wxtransfer {shown}", style="bold"))
    console.print(Text.from_ansi(live.replace(host, "http://127.0.0.1:8000")))
    console.print(Text("… and once every transfer has ended:", style="dim italic"))
    console.print(Text.from_ansi(after.replace(host, "http://127.0.0.1:8000")))
    out = ROOT / "docs" / "cli-many.svg"
    console.save_svg(str(out), title="wxtransfer download URL... -j 3")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
