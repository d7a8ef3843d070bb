"""The download file's writer without sockets: batching into reused buffers, every byte in
order whatever the chunk sizes, and the buffers given back on every path."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

from wxtransfer._errors import FileError
from wxtransfer._output import _BATCH, Output, Writer


def _finish(output: Output, final: Path) -> FileError | None:
    done = threading.Event()
    errors: list[FileError | None] = []

    def then(error: FileError | None) -> None:
        errors.append(error)
        done.set()

    output.finish(str(final), then)
    assert done.wait(10)
    return errors[0]


def _chunks(body: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(body):
        n = rng.choice([1, 7, 4096, 16384, 16383, 16385])
        out.append(body[i : i + n])
        i += n
    return out


def test_big_body_of_odd_chunks_arrives_whole_and_buffers_are_reused(tmp_path: Path) -> None:
    body = os.urandom(3 * _BATCH + 12345)
    writer = Writer(name="test-output")
    made: list[bytearray] = []
    take = writer.buffers.take

    def counting_take() -> bytearray:
        buffer = take()
        if all(buffer is not seen for seen in made):
            made.append(buffer)
        return buffer

    writer.buffers.take = counting_take  # type: ignore[method-assign]
    try:
        for round_ in range(3):
            final = tmp_path / f"out{round_}.bin"
            output = Output(writer, str(final), lambda: str(tmp_path), expected=len(body))
            output.start()
            for chunk in _chunks(body, round_):
                assert output.write(chunk) is None
            assert _finish(output, final) is None
            assert final.read_bytes() == body
    finally:
        writer.close(10)
    # at most the queue's worth and the one being filled, whatever the number of downloads
    assert 1 <= len(made) <= 8 + 2


def test_unknown_length_and_a_chunk_bigger_than_a_buffer(tmp_path: Path) -> None:
    writer = Writer(name="test-output")
    body = os.urandom(_BATCH // 2) + os.urandom(_BATCH + 3) + os.urandom(100)
    final = tmp_path / "out.bin"
    try:
        output = Output(writer, str(final), lambda: str(tmp_path))
        output.start()
        output.write(body[: _BATCH // 2])
        output.write(body[_BATCH // 2 : _BATCH // 2 + _BATCH + 3])
        output.write(body[_BATCH // 2 + _BATCH + 3 :])
        assert _finish(output, final) is None
    finally:
        writer.close(10)
    assert final.read_bytes() == body


def test_a_small_body_is_one_job_and_a_discard_leaves_nothing(tmp_path: Path) -> None:
    writer = Writer(name="test-output")
    try:
        small = tmp_path / "small.bin"
        output = Output(writer, str(small), lambda: str(tmp_path), expected=10)
        output.start()
        output.write(b"0123456789")
        assert _finish(output, small) is None
        assert small.read_bytes() == b"0123456789"

        gone = tmp_path / "gone.bin"
        output = Output(writer, str(gone), lambda: str(tmp_path), expected=5 * _BATCH)
        output.start()
        output.write(os.urandom(_BATCH + 10))
        done = threading.Event()
        output.discard(done.set)
        assert done.wait(10)
    finally:
        writer.close(10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.bin"]
