"""The README's first example in a real Jupyter kernel (ipykernel runs cells on its loop).

A blocking ``task.result()`` in a cell must not wait on the loop the task's callbacks go to
(SPEC §3): the example ends, its progress listener ran, and the kernel stays usable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wxtransfer._server import DevServer

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_first_example(base_url: str) -> str:
    """The first Python block of the README, pointed at ``base_url``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README.md has no python example"
    return blocks[0].replace("http://127.0.0.1:8000", base_url)


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Any]:
    env_code = (
        "import os\n"
        f"os.chdir({str(tmp_path)!r})\n"
        f"os.environ['WXTRANSFER_HOME'] = {str(tmp_path / 'home')!r}\n"
    )
    km, kc = jupyter_client.manager.start_new_kernel(
        kernel_name="python3", startup_timeout=60, cwd=str(tmp_path)
    )
    try:
        run_cell(kc, env_code)
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_cell(kc: Any, code: str, timeout: float = 60) -> str:
    """Run ``code`` in a cell; its stdout. Fails the test on an error in the cell."""
    out: list[str] = []
    errors: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    assert reply["content"]["status"] == "ok" and not errors, "\n".join(errors)
    return "".join(out)


def test_readme_example_runs_in_a_jupyter_cell(kernel: Any, tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    with DevServer(tmp_path / "served") as srv:
        base = f"http://127.0.0.1:{srv.port}"
        out = run_cell(kernel, readme_first_example(base))
        # the in-loop check itself: the loop is running in this cell
        loop = run_cell(kernel, "import asyncio; print(asyncio.get_running_loop().is_running())")
        assert loop.strip() == "True"
        # and the kernel still works after the example
        again = run_cell(
            kernel,
            "import wxtransfer\n"
            f"t = wxtransfer.download_file({base + '/'!r}, success=lambda r: print('cb'))\n"
            "print(t.result(20).status_code)\n",
        )
    lines = out.splitlines()
    progress = [line for line in lines if re.fullmatch(r"\d+ \d+", line)]
    assert progress and progress[-1].split()[0] == "100", lines  # the listener ran in the cell
    assert lines[-1].split() == ["200", str(tmp_path / "copy.jpg"), str(1 << 20)]
    assert (tmp_path / "copy.jpg").read_bytes() == (tmp_path / "photo.jpg").read_bytes()
    assert again.split() == ["cb", "200"]
