"""The docs check: every Python example in README.md and docs/*.md runs, every link resolves.

- Each fenced ```python block is one test (id ``file:line``), run by ``sys.executable`` in
  a fresh process, in a temp working folder holding the files the examples use, with
  ``WXTRANSFER_HOME`` and ``TMPDIR`` in ``tmp_path``, against a ``wxtransfer serve`` the
  session starts on a free port of 127.0.0.1 (``127.0.0.1:8000`` in the code is rewritten
  to it). A block that cannot run in a test says so in the Markdown, right before its
  fence: ``<!-- docs-check: skip (needs an S3 bucket) -->``.
- Every relative link (``[text](path)``, ``[text](path#anchor)``, images, reference
  definitions) names a file of the repository, and its anchor a heading (GitHub's slug).
  Absolute http(s) links are not fetched.
- A doc names no Markdown file outside the repository: the docs stand on their own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK_TIMEOUT = 30.0  # seconds, each example
SERVER_START_TIMEOUT = 20.0
DOC_PORT = "127.0.0.1:8000"  # what the examples say; rewritten to the session's server

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
MARKER = re.compile(r"<!--\s*docs-check:(?P<body>.*?)-->", re.S)
SKIP = re.compile(r"^\s*skip\s*\((?P<reason>[^)]+)\)\s*$", re.S)

# The files the examples open or upload, created in each example's working folder.
MINI_PROGRAM = {
    "project.config.json": json.dumps({"appid": "wx0123456789abcdef", "miniprogramRoot": ""}),
    "app.json": json.dumps({"networkTimeout": {"uploadFile": 60000, "downloadFile": 60000}}),
    "domains.json": json.dumps(
        {
            "uploadFile": ["https://upload.example.com"],
            "downloadFile": ["https://cdn.example.com", "https://files.example.com:8443"],
        }
    ),
}
INPUT_FILES: dict[str, bytes] = {
    "photo.jpg": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 64 + b"\xff\xd9",
    "a.txt": b"first\n",
    "b.txt": b"second\n",
    **{name: text.encode() for name, text in MINI_PROGRAM.items()},
    **{f"path/to/miniprogram-project/{n}": t.encode() for n, t in MINI_PROGRAM.items()},
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a doc."""

    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    marker: str | None  # the docs-check comment right before the fence, if any

    @property
    def id(self) -> str:
        """``file:line``, relative to the repository."""
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path`` (indented ones too), with its language and marker."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        start, body = i, []
        i += 1
        while i < len(lines):
            close = lines[i].strip()
            if close.startswith(fence[0] * len(fence)) and not close.strip(fence[0]):
                break
            body.append(lines[i][indent:] if not lines[i][:indent].strip() else lines[i])
            i += 1
        i += 1
        before = [line for line in lines[:start] if line.strip()]
        found = MARKER.fullmatch(before[-1].strip()) if before else None
        blocks.append(
            Block(
                path=path,
                line=start + 1,
                lang=(m["info"].split() or [""])[0].lower(),
                code="\n".join(body) + "\n",
                marker=found["body"].strip() if found else None,
            )
        )
    return blocks


def python_examples() -> list[object]:
    """One ``pytest.param`` per Python block, skipped when its marker says so."""
    params: list[object] = []
    for doc in DOCS:
        for block in code_blocks(doc):
            if block.lang not in ("python", "py"):
                continue
            marks = []
            skip = SKIP.match(block.marker) if block.marker else None
            if skip:
                marks.append(pytest.mark.skip(reason=f"{block.id}: {skip['reason'].strip()}"))
            params.append(pytest.param(block, id=block.id, marks=marks))
    return params


# ---- the server the examples talk to -----------------------------------------------------


@dataclass(frozen=True)
class DocsServer:
    """A running ``wxtransfer serve``: its ``host:port`` and its log file."""

    address: str
    log: Path


@pytest.fixture(scope="session")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsServer]:
    """``wxtransfer serve`` on a free port of 127.0.0.1, stopped by its PID at the end."""
    base = tmp_path_factory.mktemp("docs-server")
    out, log, root = base / "stdout.txt", base / "stderr.txt", base / "root"
    with out.open("wb") as stdout, log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wxtransfer", "serve", "--port", "0", "--root", str(root)],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=base,
            env=example_env(base),
        )
    try:
        address = wait_for_server(proc, out, log)
        yield DocsServer(address, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_for_server(proc: subprocess.Popen[bytes], out: Path, log: Path) -> str:
    """The ``host:port`` the server printed, once it answers a request."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    address = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"wxtransfer serve exited with {proc.returncode}:\n"
                f"{out.read_text(errors='replace')}{log.read_text(errors='replace')}"
            )
        if address is None:
            found = re.search(r"at http://(127\.0\.0\.1:\d+)/", out.read_text(errors="replace"))
            address = found[1] if found else None
        if address is not None:
            try:
                with urllib.request.urlopen(f"http://{address}/?format=json", timeout=2) as res:
                    if res.status == 200:
                        return address
            except OSError:
                pass
        time.sleep(0.05)
    pytest.fail(f"wxtransfer serve did not answer within {SERVER_START_TIMEOUT} s")


def example_env(tmp: Path) -> dict[str, str]:
    """The environment of an example: its home and temp folders in ``tmp``, no proxy."""
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "tmp").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(
        WXTRANSFER_HOME=str(tmp / "home"),
        TMPDIR=str(tmp / "tmp"),
        NO_PROXY="*",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


# ---- the examples ------------------------------------------------------------------------


def make_work_folder(tmp_path: Path) -> Path:
    """A working folder with the files the examples use (and a staging CA for rules.md)."""
    work = tmp_path / "work"
    for name, data in INPUT_FILES.items():
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    trustme = pytest.importorskip("trustme")
    trustme.CA().cert_pem.write_to_path(str(work / "staging-ca.pem"))
    return work


@pytest.mark.parametrize("block", python_examples())
def test_python_example_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The block runs to exit 0 in a fresh process, with nothing on stderr."""
    code = block.code
    if DOC_PORT in code:
        server: DocsServer = request.getfixturevalue("docs_server")
        code = code.replace(DOC_PORT, server.address)
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=make_work_folder(tmp_path),
            env=example_env(tmp_path),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block.id}: still running after {BLOCK_TIMEOUT} s (killed)\n{exc.stderr!r}")
    report = (
        f"{block.id} exited {done.returncode}\n--- stdout\n{done.stdout}--- stderr\n{done.stderr}"
    )
    assert done.returncode == 0, report
    assert not done.stderr, report  # a logged callback error, a warning, a lost failure


def test_docs_check_markers_are_well_formed() -> None:
    """Every ``docs-check`` comment is a ``skip (reason)`` right before a Python block."""
    bad: list[str] = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        marked = {b.marker for b in code_blocks(doc) if b.marker and b.lang in ("python", "py")}
        for m in MARKER.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            where = f"{doc.relative_to(ROOT).as_posix()}:{line}"
            if not SKIP.match(m["body"]):
                bad.append(f"{where}: not 'docs-check: skip (reason)': {m[0]}")
            elif m["body"].strip() not in marked:
                bad.append(f"{where}: not right before a ```python block: {m[0]}")
    assert not bad, "\n".join(bad)


def test_there_are_python_examples() -> None:
    """The collector finds the README's examples (a broken parser would pass vacuously)."""
    assert sum(b.lang == "python" for b in code_blocks(ROOT / "README.md")) >= 5


# ---- links -------------------------------------------------------------------------------

INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?(?P<target>[^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"
)
REF_DEF = re.compile(r"^[ ]{0,3}\[[^\]]+\]:\s*<?(?P<target>\S+?)>?(?:\s+.*)?$", re.M)
HTML_REF = re.compile(r"\b(?:href|src)\s*=\s*\"(?P<target>[^\"]+)\"")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
MD_NAME = re.compile(r"(?<![\w/.-])(?P<name>[\w./-]*\w\.md)\b")


def prose(path: Path) -> str:
    """``path`` with fenced blocks blanked (lines kept, so offsets give line numbers)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for block in code_blocks(path):
        end = block.line + block.code.count("\n")  # the closing fence, 0-based
        for i in range(block.line - 1, min(end + 1, len(lines))):
            lines[i] = ""
    return "\n".join(lines) + "\n"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = text.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (``-1``, ``-2`` for repeats)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for m in re.finditer(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t#]*$", prose(path), re.M):
        base = slug(m[1])
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def relative_links(path: Path) -> Iterator[tuple[int, str]]:
    """(line, target) of every link of ``path`` that is not an absolute URL."""
    text = CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m[0]), prose(path))
    for pattern in (INLINE_LINK, REF_DEF, HTML_REF):
        for m in pattern.finditer(text):
            target = m["target"]
            if not SCHEME.match(target) and not target.startswith("//"):
                yield text.count("\n", 0, m.start("target")) + 1, target


def broken_link(doc: Path, target: str) -> str | None:
    """Why ``target``, linked from ``doc``, does not resolve; None when it does."""
    raw, _, anchor = target.partition("#")
    file = (doc.parent / urllib.request.url2pathname(raw)).resolve() if raw else doc
    if not file.is_relative_to(ROOT):
        return "outside the repository"
    if not file.exists():
        return "no such file"
    if anchor and file.suffix == ".md" and anchor.lower() not in anchors(file):
        return f"no heading #{anchor} in {file.relative_to(ROOT).as_posix()}"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(ROOT).as_posix() for d in DOCS])
def test_relative_links_resolve(doc: Path) -> None:
    """Every relative link of the doc names a file of the repository (and a heading)."""
    bad = [
        f"{doc.relative_to(ROOT).as_posix()}:{line}: ({target}) {why}"
        for line, target in relative_links(doc)
        if (why := broken_link(doc, target)) is not None
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(ROOT).as_posix() for d in DOCS])
def test_docs_name_no_markdown_outside_the_repository(doc: Path) -> None:
    """A ``*.md`` the prose names is a file of the repository: the docs stand on their own."""
    bad = []
    text = prose(doc)
    for m in MD_NAME.finditer(text):
        candidates = [(base / m["name"]).resolve() for base in (doc.parent, ROOT)]
        if not any(p.is_file() and p.is_relative_to(ROOT) for p in candidates):
            line = text.count("\n", 0, m.start()) + 1
            where = f"{doc.relative_to(ROOT).as_posix()}:{line}"
            bad.append(f"{where}: {m['name']} is not a file of the repository")
    assert not bad, "\n".join(bad)


def test_the_link_checker_sees_links_and_anchors() -> None:
    """The checker finds the README's links and knows GitHub's slugs."""
    targets = [t for _, t in relative_links(ROOT / "README.md")]
    assert "docs/cli.md" in targets
    assert (
        slug("The developer server (`wxtransfer serve`)") == "the-developer-server-wxtransfer-serve"
    )
    assert "platform-rules---resolve---cacert" in anchors(ROOT / "docs" / "cli.md")
    assert broken_link(ROOT / "README.md", "docs/cli.md#exit-codes") is None
    assert broken_link(ROOT / "README.md", "docs/cli.md#no-such-heading") is not None
    assert broken_link(ROOT / "README.md", "../shared/spec/SPEC.md") == "outside the repository"
