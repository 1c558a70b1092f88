"""The publisher in its own process, so publishing never competes with the receive loop.

`Publisher`'s thread holds the GIL while it parses and checks a sealed segment and
builds its Arrow tables (about 2 us a record): at capture rates that is time taken
from the receive loop, and the Arrow tables of a large segment sit in the recorder's
memory. `PublisherProcess` has the same interface as the thread (`start`, `submit`,
`close`, `stats`) and runs an ordinary `Publisher` in a child process (spawned: the
recorder has threads, so it is never forked), fed through a queue. Segments stay on
disk until published, so a child that dies loses nothing: recovery publishes them
at the next start, and `close` publishes what is left in-process. The child dies with
the recorder, even one killed with -9 (`recorder.orphans`): killed mid-publish, it
leaves what a crash leaves, which recovery finishes.

Recorder and child talk through two one-way pipes (`multiprocessing.Pipe`), not
`multiprocessing.Queue`: a queue holds three named POSIX semaphores, which the spawn
context registers with multiprocessing's resource tracker, and a recorder killed with
-9 never unregisters them, so the tracker (which outlives it) warned "There appear to
be 6 leaked semaphore objects" into the log of every recovered crash. Pipes are plain
file descriptors the kernel closes with the process: nothing to track, nothing to leak.
Each end has one user (a lock serialises the recorder's writers), and the child reads
its pipe on a thread of its own, so a publish in progress never blocks `submit`.

Each failed attempt reports when it started, so `stats().failing_since_mono` says how
long publishing has been failing (`recorder.service.app` warns past a bound), and
`queued_bytes` how much waits in the journal.

A segment that fails to publish (object storage unreachable, credentials refused) is
retried every `retry_interval_s` before any later one is touched, as the thread does
(`recorder.storage.publisher`): its segments wait in the journal, nothing is lost, and they go
out in order once the storage answers again. A stop while the storage is still down
leaves them in the journal for the next start's recovery (`close` says how many).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from recorder.errors import PublishError
from recorder.orphans import die_with_parent, parent_gone
from recorder.storage.publisher import Publisher, PublisherStats, sealed_segments
from schemas.lean import keep_pandas_out
from schemas.storage import StorageOptions

__all__ = ["PublisherProcess"]


#: How often an idle child checks that the recorder is still there (the portable way).
_PARENT_POLL_S = 1.0
#: What the child's pipe reader hands on when the recorder's end is closed (it died).
_GONE = "\0gone"


def _pump(todo: Connection, inbox: queue.Queue[str | None]) -> None:
    """Child thread: the recorder's pipe into `inbox`, so the pipe never fills up."""
    try:
        while True:
            inbox.put(todo.recv())
    except (EOFError, OSError):
        inbox.put(_GONE)


def _child(
    journal_dir: str, root: str, storage: StorageOptions | None, retry_s: float,
    todo: Connection, done: Connection, parent_pid: int,
) -> None:  # fmt: skip
    keep_pandas_out()
    die_with_parent()
    if parent_gone(parent_pid):  # it died before the line above took effect
        return
    inbox: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(todo, inbox), name="publisher-inbox",
                     daemon=True).start()  # fmt: skip
    publisher = Publisher(Path(journal_dir), root, storage=storage)
    pending: deque[str] = deque()
    stopping = False
    retry_at: float | None = None  # set while the first pending segment keeps failing
    while True:
        if pending and retry_at is None:
            wait: float | None = 0.0
        else:
            wait = _PARENT_POLL_S if retry_at is None else max(0.0, retry_at - time.monotonic())
        try:
            item = inbox.get(timeout=wait) if wait else inbox.get_nowait()
        except queue.Empty:
            item = ""
        if item == _GONE:
            return  # the recorder is gone: what waits stays in the journal for recovery
        if item is None:
            stopping = True
        elif item:
            pending.append(item)
            continue
        if stopping and (retry_at is not None or not pending):
            return  # what failed stays in the journal: `close` or the next recovery
        if not pending or (retry_at is not None and time.monotonic() < retry_at):
            if parent_gone(parent_pid):
                return
            continue
        segment = pending[0]
        started = time.monotonic()
        try:
            files = publisher.publish(Path(segment))
        except Exception as exc:  # reported; the same segment is retried before any later
            result: tuple[Any, ...] = ("error", segment, str(exc), 0, 0, 0, started)
            retry_at = time.monotonic() + retry_s
        else:
            pending.popleft()
            retry_at = None
            result = ("ok", segment, "", len(files), sum(f.rows for f in files),
                      sum(f.bytes for f in files), started)  # fmt: skip
        try:
            done.send(result)
        except OSError:  # the recorder is gone
            return


def _size(segment: Path) -> int:
    try:
        return segment.stat().st_size
    except OSError:
        return 0


class PublisherProcess:
    """`recorder.storage.publisher.Publisher`'s background API, run in a child process."""

    def __init__(
        self,
        journal_dir: Path,
        root: str,
        *,
        storage: StorageOptions | None = None,
        retry_interval_s: float = 1.0,  # as the thread's (recorder.storage.publisher)
    ) -> None:
        self.journal_dir, self.root, self.storage = Path(journal_dir), root, storage
        ctx = mp.get_context("spawn")
        todo_out, self._todo = ctx.Pipe(duplex=False)  # (reading end, writing end)
        self._done, done_in = ctx.Pipe(duplex=False)
        self._child_ends: tuple[Connection, ...] = (todo_out, done_in)
        self._process = ctx.Process(
            target=_child,
            args=(str(journal_dir), str(root), storage, retry_interval_s, todo_out, done_in,
                  os.getpid()),
            name="kalshi-tape-publisher", daemon=True,
        )  # fmt: skip
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._waiting: dict[str, int] = {}  # segment -> bytes, submitted and not published
        self._segments = self._files = self._rows = self._bytes = self._errors = 0
        self._last_mono: float | None = None
        self._last_error: str | None = None
        self._failing_since: float | None = None
        self._reader = threading.Thread(target=self._collect, name="publisher-results",
                                        daemon=True)  # fmt: skip

    def start(self) -> None:
        self._process.start()
        for end in self._child_ends:  # the child has its own copies: EOF when it exits
            end.close()
        self._reader.start()

    def submit(self, segment: Path) -> None:
        """Queue a sealed segment (thread-safe: the journal's `on_sealed`)."""
        with self._lock:
            self._waiting[str(segment)] = _size(segment)
        try:
            with self._send_lock:
                self._todo.send(str(segment))
        except (OSError, ValueError):  # the child is gone: `close` publishes it from disk
            pass

    def _collect(self) -> None:
        while True:
            try:
                result = self._done.recv()
            except (EOFError, OSError):  # the child exited (or was stopped)
                return
            status, path, error, files, rows, nbytes, started = result
            with self._lock:
                if status == "ok":
                    self._waiting.pop(path, None)
                    self._segments += 1
                    self._files += files
                    self._rows += rows
                    self._bytes += nbytes
                    self._last_mono = time.monotonic()
                    self._last_error = None
                    self._failing_since = None
                else:  # the segment stays queued in the child, which retries it
                    self._errors += 1
                    self._last_error = error
                    if self._failing_since is None:
                        self._failing_since = started

    def close(self, *, drain: bool = True, timeout_s: float | None = None) -> PublisherStats:
        """Stop the child after what was queued; with `drain`, publish any sealed segment
        still on disk (a failed one, or a child that died) in this process, in order.

        A segment that still cannot be published stays in the journal, with every later
        one: `stats().queued` counts them and `last_error` says why (the next start's
        recovery publishes them).
        """
        with contextlib.suppress(OSError, ValueError), self._send_lock:
            self._todo.send(None)
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._reader.join(5)
        with self._send_lock:
            self._todo.close()
        self._done.close()
        if drain:
            leftover = Publisher(self.journal_dir, self.root, storage=self.storage)
            waiting = sealed_segments(self.journal_dir)
            for n, segment in enumerate(waiting):
                try:
                    files = leftover.publish(segment)
                except PublishError as exc:
                    with self._lock:
                        self._errors += 1
                        self._last_error = str(exc)
                        self._waiting = {str(p): _size(p) for p in waiting[n:]}
                    break
                with self._lock:
                    self._segments += 1
                    self._files += len(files)
                    self._rows += sum(f.rows for f in files)
                    self._failing_since = None
            else:
                with self._lock:
                    self._waiting = {}
        return self.stats()

    def stats(self) -> PublisherStats:
        with self._lock:
            return PublisherStats(
                self._segments, self._files, self._rows, self._bytes, self._errors,
                len(self._waiting), self._last_mono, self._last_error,
                sum(self._waiting.values()), self._failing_since,
            )  # fmt: skip
