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

A segment that fails to publish (object storage unreachable, credentials refused) is
retried every `retry_interval_s` before any later one is touched, as the thread does
(`recorder.storage.publisher`): its segments wait in the journal, nothing is lost, and they go
out in order once the storage answers again. A stop while the storage is still down
leaves them in the journal for the next start's recovery (`close` says how many).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
from collections import deque
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


def _child(
    journal_dir: str, root: str, storage: StorageOptions | None, retry_s: float,
    todo: Any, done: Any, parent_pid: int,
) -> None:  # fmt: skip
    keep_pandas_out()
    die_with_parent()
    if parent_gone(parent_pid):  # it died before the line above took effect
        return
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
            item = todo.get(timeout=wait) if wait else todo.get_nowait()
        except queue.Empty:
            item = ""
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
        try:
            files = publisher.publish(Path(segment))
        except Exception as exc:  # reported; the same segment is retried before any later
            done.put(("error", segment, str(exc), 0, 0, 0))
            retry_at = time.monotonic() + retry_s
            continue
        pending.popleft()
        retry_at = None
        done.put(("ok", segment, "", len(files), sum(f.rows for f in files),
                  sum(f.bytes for f in files)))  # fmt: skip


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
        self._todo: Any = ctx.Queue()
        self._done: Any = ctx.Queue()
        self._process = ctx.Process(
            target=_child,
            args=(str(journal_dir), str(root), storage, retry_interval_s, self._todo,
                  self._done, os.getpid()),
            name="kalshi-tape-publisher", daemon=True,
        )  # fmt: skip
        self._lock = threading.Lock()
        self._queued = 0
        self._segments = self._files = self._rows = self._bytes = self._errors = 0
        self._last_mono: float | None = None
        self._last_error: str | None = None
        self._reader = threading.Thread(target=self._collect, name="publisher-results",
                                        daemon=True)  # fmt: skip

    def start(self) -> None:
        self._process.start()
        self._reader.start()

    def submit(self, segment: Path) -> None:
        """Queue a sealed segment (thread-safe: the journal's `on_sealed`)."""
        with self._lock:
            self._queued += 1
        self._todo.put(str(segment))

    def _collect(self) -> None:
        while True:
            try:
                result = self._done.get(timeout=0.5)
            except queue.Empty:
                if not self._process.is_alive():
                    return
                continue
            if result is None:
                return
            status, _path, error, files, rows, nbytes = result
            with self._lock:
                if status == "ok":
                    self._queued -= 1
                    self._segments += 1
                    self._files += files
                    self._rows += rows
                    self._bytes += nbytes
                    self._last_mono = time.monotonic()
                    self._last_error = None
                else:  # the segment stays queued in the child, which retries it
                    self._errors += 1
                    self._last_error = error

    def close(self, *, drain: bool = True, timeout_s: float | None = None) -> PublisherStats:
        """Stop the child after what was queued; with `drain`, publish any sealed segment
        still on disk (a failed one, or a child that died) in this process, in order.

        A segment that still cannot be published stays in the journal, with every later
        one: `stats().queued` counts them and `last_error` says why (the next start's
        recovery publishes them).
        """
        self._todo.put(None)
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._done.put(None)
        self._reader.join(5)
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
                        self._queued = len(waiting) - n
                    break
                with self._lock:
                    self._segments += 1
                    self._files += len(files)
                    self._rows += sum(f.rows for f in files)
            else:
                with self._lock:
                    self._queued = 0
        return self.stats()

    def stats(self) -> PublisherStats:
        with self._lock:
            return PublisherStats(
                self._segments, self._files, self._rows, self._bytes, self._errors,
                max(self._queued, 0), self._last_mono, self._last_error,
            )  # fmt: skip
