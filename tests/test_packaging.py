"""Packaging: the sdist and the wheel build, install without extras in fresh venvs, and work.

``python -m build`` makes the sdist from a clean copy of the checkout and the wheel from
that sdist (so the sdist holds what the wheel needs). The wheel goes into a venv of its own,
without extras: the library imports and downloads from a local server, click, rich and
aiohttp are not there, and the ``wxtransfer`` command says to install ``wxtransfer[cli]``.
The sdist goes into another venv. Both need pycurl and platformdirs from the package index
(or pip's cache). Marked ``packaging``: ``pytest -m 'not packaging'`` leaves them out.

The last tests, in this process and not marked, hide click or aiohttp and check the message
the command gives instead of a traceback.
"""

from __future__ import annotations

import email.parser
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import venv
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import wxtransfer

ROOT = Path(__file__).resolve().parent.parent
PIP_TIMEOUT = 180  # a pip install (pycurl and platformdirs from the index) or a build
# A whole test: the build (in the first one), a venv, a pip install or two.
TEST_TIMEOUT = 600
EXTRAS_ONLY = ("click", "rich", "aiohttp")

# Left out of the copy the dists are built from: what is not the project's source.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "node_modules",
    "build",
    "dist",
    ".work",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
)


def _env(**extra: str) -> dict[str, str]:
    """The environment for the fresh venvs' processes: nothing of this venv leaks in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    }
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra)
    return env


def _run(
    args: list[str | Path], *, timeout: float = 60, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else _env(),
        check=False,
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _make_venv(path: Path) -> Path:
    """A fresh venv (with pip) at ``path``; its python."""
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin" / "python"


def _pip_install(python: Path, target: Path) -> None:
    _ok(
        _run(
            [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", target],
            timeout=PIP_TIMEOUT,
        )
    )


class Dists:
    def __init__(self, source: Path, out: Path) -> None:
        self.source = source
        (self.sdist,) = out.glob("*.tar.gz")
        (self.wheel,) = out.glob("*.whl")
        with zipfile.ZipFile(self.wheel) as zf:
            self.wheel_names = set(zf.namelist())
            (metadata,) = (n for n in self.wheel_names if n.endswith(".dist-info/METADATA"))
            self.metadata = email.parser.Parser().parsestr(zf.read(metadata).decode())
        self.version = self.metadata["Version"]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist (from a clean copy of the checkout) and the wheel (from the sdist)."""
    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE, symlinks=True)
    out = base / "dist"
    _ok(_run([sys.executable, "-m", "build", "--outdir", out, source], timeout=PIP_TIMEOUT))
    return Dists(source, out)


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """``http.server`` on 127.0.0.1 in a thread, serving one file; its URL and bytes."""
    root = tmp_path / "served"
    root.mkdir()
    body = os.urandom(300_000)
    (root / "sample.bin").write_bytes(body)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/sample.bin", body
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _requirements(dists: Dists) -> tuple[set[str], set[str]]:
    """Names of the wheel's requirements without an extra, and its extras."""
    plain = set()
    for req in dists.metadata.get_all("Requires-Dist") or []:
        if "extra ==" not in req:
            name = req.split(";")[0].strip()
            for sep in "<>=!~[ ":
                name = name.split(sep)[0]
            plain.add(name.lower())
    return plain, set(dists.metadata.get_all("Provides-Extra") or [])


_LIBRARY_CHECK = """
import importlib.resources, importlib.util, json, sys
import wxtransfer
loaded = [m for m in {extras!r} if m in sys.modules]
importable = [m for m in {extras!r} if importlib.util.find_spec(m) is not None]
result = wxtransfer.download_file(sys.argv[1], file_path=sys.argv[2]).result()
print(json.dumps({{
    "version": wxtransfer.__version__,
    "loaded": loaded,
    "importable": importable,
    "status": result.status_code,
    "file_path": result.file_path,
    "py_typed": importlib.resources.files("wxtransfer").joinpath("py.typed").is_file(),
}}))
"""


def _no_extra_message(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "pip install 'wxtransfer[cli]'" in proc.stderr


@pytest.mark.packaging
@pytest.mark.timeout(TEST_TIMEOUT)
def test_wheel_installs_lean_and_works(
    dists: Dists, tmp_path: Path, file_server: tuple[str, bytes]
) -> None:
    assert "wxtransfer/py.typed" in dists.wheel_names
    assert "wxtransfer/__init__.py" in dists.wheel_names
    plain, extras = _requirements(dists)
    assert plain == {"pycurl", "platformdirs"}
    assert {"cli", "server"} <= extras

    python = _make_venv(tmp_path / "venv")
    _pip_install(python, dists.wheel)

    url, body = file_server
    dest = tmp_path / "downloaded.bin"
    env = _env(
        WXTRANSFER_HOME=str(tmp_path / "home"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    check = _LIBRARY_CHECK.format(extras=EXTRAS_ONLY)
    report = json.loads(_ok(_run([python, "-c", check, url, dest], env=env)))
    assert report["loaded"] == []
    assert report["importable"] == []
    assert report["status"] == 200
    assert report["file_path"] == str(dest)
    assert dest.read_bytes() == body
    assert report["py_typed"] is True
    assert report["version"] == dists.version

    _no_extra_message(_run([tmp_path / "venv" / "bin" / "wxtransfer", "--help"], env=env))
    _no_extra_message(_run([python, "-m", "wxtransfer", "download", url], env=env))

    # A source tree that is not installed: the version falls back instead of failing.
    _ok(_run([python, "-m", "pip", "uninstall", "-y", "wxtransfer"]))
    plain_tree = tmp_path / "tree"
    shutil.copytree(dists.source / "src" / "wxtransfer", plain_tree / "wxtransfer")
    proc = _run(
        [python, "-c", "import wxtransfer; print(wxtransfer.__version__)"],
        env={**env, "PYTHONPATH": str(plain_tree)},
    )
    assert _ok(proc).strip() == "0+unknown"


@pytest.mark.packaging
@pytest.mark.timeout(TEST_TIMEOUT)
def test_sdist_installs(dists: Dists, tmp_path: Path) -> None:
    with tarfile.open(dists.sdist) as tf:
        names = {name.partition("/")[2] for name in tf.getnames()}
    for needed in ("pyproject.toml", "README.md", "LICENSE", "PKG-INFO"):
        assert needed in names
    assert "src/wxtransfer/py.typed" in names
    assert {n for n in dists.wheel_names if n.startswith("wxtransfer/")} <= {
        n.removeprefix("src/") for n in names
    }

    python = _make_venv(tmp_path / "venv")
    _pip_install(python, dists.sdist)
    check = (
        "import importlib.resources, wxtransfer; print(wxtransfer.__version__, "
        "importlib.resources.files('wxtransfer').joinpath('py.typed').is_file())"
    )
    assert _ok(_run([python, "-c", check])).split() == [dists.version, "True"]


@pytest.mark.packaging
def test_version_written_only_in_pyproject(dists: Dists) -> None:
    quoted = (f'"{dists.version}"', f"'{dists.version}'")
    for path in (ROOT / "src" / "wxtransfer").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not any(q in text for q in quoted), path


# --------------------------------------------------------------------------- missing extras


def _hide(monkeypatch: pytest.MonkeyPatch, missing: str, *ours: str) -> None:
    """Make ``import missing`` fail as if it were not installed, and forget ``ours``
    (wxtransfer's modules that import it) so that they are imported again."""
    monkeypatch.setitem(sys.modules, missing, None)  # type: ignore[arg-type]
    for name in ours:
        monkeypatch.delitem(sys.modules, f"wxtransfer.{name}", raising=False)
        monkeypatch.delattr(wxtransfer, name, raising=False)


def test_command_without_cli_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wxtransfer import __main__

    _hide(monkeypatch, "click", "cli", "_demo")
    with pytest.raises(SystemExit) as exit_info:
        __main__.main()
    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert "needs click" in err and "pip install 'wxtransfer[cli]'" in err


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["demo", "--size", "1KiB"]])
def test_serve_and_demo_without_server_extra(
    monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    from click.testing import CliRunner

    from wxtransfer.cli import cli

    _hide(monkeypatch, "aiohttp", "_server", "_server_tus", "_server_page", "_demo")
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output == (  # stderr (click < 8.2 mixes it into output, later ones too)
        f"Error: 'wxtransfer {command[0]}' needs aiohttp, which comes with the server extra: "
        "pip install 'wxtransfer[server]'\n"
    )
