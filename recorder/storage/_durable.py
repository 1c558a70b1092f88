"""Durable file operations on a local filesystem, without pyarrow.

This module owns the fsync discipline shared by the journal and the publisher: write
under a temporary name, fsync, rename, fsync the directory; remove and fsync the
directory. It knows nothing of what the bytes mean. Every fsync goes through a function
the caller passes in (default `os.fsync`), so tests inject a failing one instead of
patching `os`. `recorder.storage.root` re-exports these beside the capture root.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "BytesLike",
    "FsyncFn",
    "fsync_dir",
    "mkdir_durably",
    "temp_name",
    "unlink_durably",
    "write_durably",
]

#: Prefix of names that readers never see: pyarrow datasets skip "." and "_" names, and a
#: temporary file does not end in ".parquet", so a `*.parquet` glob skips it too.
_HIDDEN = "."

FsyncFn = Callable[[int], None]
BytesLike = bytes | bytearray | memoryview


def temp_name(name: str) -> str:
    """The temporary name a file is written under before its rename: `.<name>.tmp`.

    Deterministic, so a rerun after a crash overwrites the leftover instead of adding one.
    """
    return f"{_HIDDEN}{name}.tmp"


def fsync_dir(path: Path, fsync: FsyncFn = os.fsync) -> None:
    """fsync a directory, making the names created, renamed or removed in it durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: BytesLike) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_durably(path: Path, data: BytesLike, fsync: FsyncFn = os.fsync) -> None:
    """Write a file so that after a crash it is either absent (or its old self) or complete.

    Temporary name in the same directory, write, fsync, rename over the final name,
    fsync the directory. On an error the temporary file is removed and the error raised;
    the final name is untouched.
    """
    tmp = path.with_name(temp_name(path.name))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            _write_all(fd, data)
            fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent, fsync)


def unlink_durably(path: Path, fsync: FsyncFn = os.fsync) -> bool:
    """Remove a file and fsync its directory. Returns False if it was already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(path.parent, fsync)
    return True


def mkdir_durably(path: Path, fsync: FsyncFn = os.fsync) -> None:
    """Create a directory and its missing parents, fsyncing each new entry's parent, so
    that a file made durable inside it cannot vanish with a directory that was not."""
    missing = []
    current = path
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            pass
        fsync_dir(directory.parent, fsync)
