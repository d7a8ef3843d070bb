"""threaded: a reference client for S1 and S2 (and S3 with ``--http2``), not a peer. It is
the bare pycurl loop (``clients/pycurl.py``'s ``many``) split over three threads the way
wxtransfer splits it (caller, engine, writer), with nothing else: what the split itself
costs.

* The caller (main thread) submits every transfer to the engine's queue, then waits on each
  transfer's waiter (a Lock acquired at creation) in submission order and checks its result.
* The engine thread owns a CurlMulti and at most ``concurrency`` reused easy handles, and
  waits with ``select`` on libcurl's sockets plus the read end of a wake-up pipe, bounded by
  libcurl's timer. Bodies and header lines go to per-transfer ``list.append``. A finished
  download (status checked) goes to the writer with its chunks; an upload is done there.
* The writer thread writes each file to ``TARGET.part`` (open, writev, close) and renames
  it into place, so that the file work never runs on the engine thread.
* Wake-ups are batched as wxtransfer batches them: the engine and the writer keep the
  waiters they finished in a list of their own and release them just before they block
  (the engine: before ``perform()`` and before ``select``; the writer: before ``get()``).
* The caller writes to the wake-up pipe only when the engine says (a flag under a lock)
  that it is about to sleep with a free handle, as wxtransfer does: no engine pass is
  woken for a job it has no handle for.
"""

from __future__ import annotations

import os
import queue
import select
import threading
from typing import Any

import pycurl

from clients._common import Args, Failure, Progress, check, check_file, check_upload, main
from clients.pycurl import _form, _handles, _http2


class Job:
    """One transfer: what to do, its waiter (locked until done) and its result."""

    __slots__ = ("path", "result", "url", "waiter")

    def __init__(self, url: str, path: Any) -> None:
        self.url, self.path = url, path
        self.result: dict[str, Any] | None = None
        self.waiter = threading.Lock()
        self.waiter.acquire()


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _release(held: list[threading.Lock]) -> None:
    for w in held:
        w.release()
    held.clear()


class Engine:
    """The engine thread and the writer thread; ``submit`` and ``stop`` from the caller."""

    def __init__(self, args: Args, upload: bool) -> None:
        self.args, self.upload = args, upload
        self.inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.files: queue.SimpleQueue[tuple[Any, list[bytes], Job] | None] = queue.SimpleQueue()
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.rfd, False)
        os.set_blocking(self.wfd, False)
        self.lock = threading.Lock()
        self.sleeping = False  # the engine is (about to be) in select with a free handle
        self.threads = [threading.Thread(target=self.engine, daemon=True)]
        if not upload:
            self.threads.append(threading.Thread(target=self.writer, daemon=True))
        for t in self.threads:
            t.start()

    def submit(self, job: Job | None) -> None:
        self.inbox.put(job)
        with self.lock:
            wake, self.sleeping = self.sleeping, False
        if wake:
            os.write(self.wfd, b"\0")

    def stop(self) -> None:
        self.submit(None)
        for t in self.threads:
            t.join()
        os.close(self.rfd)
        os.close(self.wfd)

    def engine(self) -> None:
        args, m = self.args, pycurl.CurlMulti()
        held: list[threading.Lock] = []  # waiters finished, released before blocking
        free = _handles(args)
        state: dict[int, tuple[Job, list[bytes], Any]] = {}
        stopping = False
        while True:
            while free and not stopping:
                try:
                    job = self.inbox.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                c = free.pop()
                body: list[bytes] = []
                c.setopt(pycurl.URL, job.url)
                c.setopt(pycurl.WRITEFUNCTION, body.append)
                mime = None
                if self.upload:
                    mime = _form(c, job.path)
                else:  # the header lines, kept as wxtransfer keeps them (unread here)
                    c.setopt(pycurl.HEADERFUNCTION, [].append)
                state[id(c)] = (job, body, mime)
                m.add_handle(c)
            _release(held)
            while m.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            while True:
                queued, ok, failed = m.info_read()
                for c, errno, errmsg in failed:
                    job, _, _ = state.pop(id(c))
                    job.result = {"error": f"curl error {errno}: {errmsg}"}
                    held.append(job.waiter)
                    m.remove_handle(c)
                    free.append(c)
                for c in ok:
                    job, body, mime = state.pop(id(c))
                    code = c.getinfo(pycurl.RESPONSE_CODE)
                    m.remove_handle(c)
                    free.append(c)
                    if self.upload:
                        mime.close()
                        res: dict[str, Any] = {"status": code, "body": b"".join(body)}
                        try:
                            check_upload(code, res["body"])
                        except Failure as e:
                            res["error"] = str(e)
                        job.result = res
                        held.append(job.waiter)
                    else:
                        job.result = {"status": code, "path": job.path}
                        if code == 200:
                            self.files.put((job.path, body, job))
                        else:
                            held.append(job.waiter)
                if not queued:
                    break
            if stopping and not state:
                break
            takes = bool(free) and not stopping
            if takes and not self.inbox.empty():
                continue  # start the next transfers at once, before waiting on the sockets
            wait = m.timeout()  # ms, -1: no timer set
            if wait == 0:
                continue
            _release(held)
            with self.lock:  # submit() reads and clears the flag under it
                self.sleeping = takes and self.inbox.empty()
                if takes and not self.sleeping:
                    continue  # submitted just now
            r, w, x = m.fdset()
            ready = select.select([*r, self.rfd], w, x, wait / 1000 if 0 < wait < 1000 else 1.0)
            with self.lock:
                self.sleeping = False
            if self.rfd in ready[0]:
                _drain(self.rfd)
        _release(held)
        for c in free:
            c.close()
        m.close()
        self.files.put(None)

    def writer(self) -> None:
        held: list[threading.Lock] = []
        while True:
            try:
                item = self.files.get_nowait()
            except queue.Empty:
                _release(held)
                item = self.files.get()
            if item is None:
                break
            target, chunks, job = item
            part = f"{target}.part"
            try:
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    os.writev(fd, chunks)
                finally:
                    os.close(fd)
                os.replace(part, target)
            except OSError as e:
                job.result = {"error": f"{target}: {e}"}
            held.append(job.waiter)
        _release(held)


def many(args: Args, upload: bool) -> int:
    """S1/S2: submit every transfer, then wait for each in submission order."""
    pairs = [(args.url, p) for p in args.small_files()] if upload else args.small_urls()
    engine = Engine(args, upload)
    jobs = []
    for url, path in pairs:
        job = Job(url, path)
        jobs.append(job)
        engine.submit(job)
    for job in jobs:
        while not job.waiter.acquire(timeout=10):  # a dead thread would never release it
            check(all(t.is_alive() for t in engine.threads), "a thread died")
        res = job.result
        assert res is not None
        check("error" not in res, str(res.get("error")))
        check(res["status"] == 200, f"status {res['status']}")
        if not upload:
            check_file(job.path, args.size)
    engine.stop()
    return args.small_upload_bytes() if upload else len(jobs) * args.size


def run(args: Args, prog: Progress | None) -> int:
    """S1 and S2 only."""
    if args.scenario not in ("S1", "S2"):
        raise Failure(f"threaded runs S1 and S2 only, not {args.scenario}")
    return many(args, upload=args.scenario == "S2")


if __name__ == "__main__":
    main(run, lambda: f"pycurl's loop on three threads, {pycurl.version}", frozenset(), _http2)
