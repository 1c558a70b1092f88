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
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from recorder.orphans import die_with_parent, parent_gone
from recorder.publisher import Publisher, PublisherStats, sealed_segments

__all__ = ["PublisherProcess"]


#: How often an idle child checks that the recorder is still there (the portable way).
_PARENT_POLL_S = 1.0


def _child(journal_dir: str, root: str, todo: Any, done: Any, parent_pid: int) -> None:
    die_with_parent()
    if parent_gone(parent_pid):  # it died before the line above took effect
        return
    publisher = Publisher(Path(journal_dir), root)
    while True:
        try:
            item = todo.get(timeout=_PARENT_POLL_S)
        except queue.Empty:
            if parent_gone(parent_pid):
                return
            continue
        if item is None:
            return
        path = Path(item)
        try:
            files = publisher.publish(path)
        except Exception as exc:  # reported; the segment stays for a retry or recovery
            done.put(("error", item, repr(exc), 0, 0, 0))
            continue
        done.put(("ok", item, "", len(files), sum(f.rows for f in files),
                  sum(f.bytes for f in files)))  # fmt: skip


class PublisherProcess:
    """`recorder.publisher.Publisher`'s background API, run in a child process."""

    def __init__(self, journal_dir: Path, root: str) -> None:
        self.journal_dir, self.root = Path(journal_dir), root
        ctx = mp.get_context("spawn")
        self._todo: Any = ctx.Queue()
        self._done: Any = ctx.Queue()
        self._process = ctx.Process(
            target=_child,
            args=(str(journal_dir), str(root), self._todo, self._done, os.getpid()),
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
                self._queued -= 1
                if status == "ok":
                    self._segments += 1
                    self._files += files
                    self._rows += rows
                    self._bytes += nbytes
                    self._last_mono = time.monotonic()
                else:
                    self._errors += 1
                    self._last_error = error

    def close(self, *, drain: bool = True, timeout_s: float | None = None) -> PublisherStats:
        """Stop the child after what was queued; with `drain`, publish any sealed segment
        still on disk (a failed one, or a child that died) in this process."""
        self._todo.put(None)
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._done.put(None)
        self._reader.join(5)
        if drain:
            leftover = Publisher(self.journal_dir, self.root)
            for segment in sealed_segments(self.journal_dir):
                files = leftover.publish(segment)
                with self._lock:
                    self._segments += 1
                    self._files += len(files)
                    self._rows += sum(f.rows for f in files)
        return self.stats()

    def stats(self) -> PublisherStats:
        with self._lock:
            return PublisherStats(
                self._segments, self._files, self._rows, self._bytes, self._errors,
                max(self._queued, 0), self._last_mono, self._last_error,
            )  # fmt: skip
