"""A small real filesystem that a test can fill: a tmpfs mount and a filler file.

This module owns mounting a size-limited tmpfs (root may; anyone else gets a skip
that says why), keeping it full to the last byte while a test needs it full (space
freed meanwhile, such as a published journal segment being deleted, is taken again
at once) and giving the space back. It knows nothing of the recorder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["Filler", "fill", "free_bytes", "small_tmpfs"]


@contextlib.contextmanager
def small_tmpfs(where: Path, size_mib: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_mib` MiB at `where` for the block; skip if not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {size_mib} MiB tmpfs ({done.stderr.strip()}): run as root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def fill(path: Path) -> int:
    """Append zeros to `path` until the filesystem refuses a single byte more; bytes added."""
    written = 0
    chunk = 1 << 20
    with path.open("ab", buffering=0) as out:
        while chunk:
            try:
                written += out.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2
    return written


class Filler:
    """Keeps a filesystem full with one filler file until `release()` deletes it."""

    def __init__(self, path: Path, every_s: float = 0.02) -> None:
        self.path = path
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            fill(self.path)
            self._stop.wait(self.every_s)

    def start(self) -> Filler:
        fill(self.path)
        self._thread.start()
        return self

    def release(self) -> None:
        """Stop topping up and delete the filler: the space comes back at once."""
        self._stop.set()
        self._thread.join()
        self.path.unlink()
