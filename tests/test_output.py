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


def test_a_holding_thread_hands_its_jobs_over_at_flush() -> None:
    writer = Writer(name="test-output")
    ran: list[str] = []
    done = threading.Event()
    try:
        writer.hold()  # this thread, as the engine's
        writer.submit(lambda: ran.append("held"))
        other = threading.Thread(target=writer.submit, args=(lambda: ran.append("other"),))
        other.start()
        other.join(10)
        writer.submit(done.set)
        assert not done.wait(0.2)  # held: not run before the flush
        assert ran == ["other"]  # another thread's job is not held
        writer.flush()
        assert done.wait(10)
        assert ran == ["other", "held"]
    finally:
        writer.close(10)


def test_a_submit_waiting_for_room_lets_its_held_jobs_go_first(tmp_path: Path) -> None:
    # The held jobs count in the bound: waiting for room with them held would never end.
    writer = Writer(name="test-output", max_queued=100)
    done = threading.Event()

    def engine() -> None:
        writer.hold()
        writer.submit(lambda: (tmp_path / "first").write_bytes(b"x" * 80), 80)
        writer.submit(lambda: (tmp_path / "second").write_bytes(b"y" * 80), 80)  # waits
        writer.submit(done.set)
        writer.flush()

    holder = threading.Thread(target=engine, daemon=True)
    holder.start()
    try:
        holder.join(10)
        assert not holder.is_alive(), "the second submit never found room"
        assert done.wait(10)
    finally:
        writer.close(10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "second"]


def test_part_names_follow_a_fork() -> None:
    # The pid in part names is kept, not asked per file: a forked child must see its own.
    from wxtransfer import _output

    pid = os.fork()
    if pid == 0:  # the child: exit 0 only when its part names carry its pid
        os._exit(0 if _output._pid == os.getpid() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _output._pid == os.getpid()
