"""Durable file operations and the capture root (a local directory or any pyarrow filesystem).

This module owns *how* bytes become durable: write under a temporary name, fsync,
rename, fsync the directory (docs/architecture.md section 4); and, on object stores,
one put of the final key, which is atomic there. It knows nothing of what the
bytes mean: segments, records and partitions belong to the modules that call it.

Every fsync goes through a function the caller passes in (default `os.fsync`), so
tests inject a failing one instead of patching `os`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recorder.storage._durable import (
    FsyncFn,
    fsync_dir,
    mkdir_durably,
    temp_name,
    unlink_durably,
    write_durably,
)
from schemas.storage import StorageOptions, filesystem_for, unreachable

__all__ = [
    "CaptureRoot",
    "FileInfo",
    "FsyncFn",
    "fsync_dir",
    "mkdir_durably",
    "temp_name",
    "unlink_durably",
    "write_durably",
]


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A file under the capture root: path relative to the root, size and mtime."""

    path: str
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class CaptureRoot:
    """The root of the partition tree: a local directory or a pyarrow filesystem URI.

    Local roots get the full rename-and-fsync treatment. Other filesystems (`s3://`,
    `gs://`, ...) get a single put of the final key, which object stores make atomic;
    they have no directories to fsync and no rename to rely on.

    Args:
        root: a local path, a `file://` URI, or any URI `pyarrow.fs.FileSystem.from_uri`
            understands.
        filesystem: use this pyarrow filesystem with `root` as its base path instead
            of resolving the URI.
        fsync: the fsync used for local files and directories.
        storage: endpoint, region and credentials of an object-store root (default:
            the AWS environment; `schemas.storage`).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        filesystem: pafs.FileSystem | None = None,
        fsync: FsyncFn = os.fsync,
        storage: StorageOptions | None = None,
    ) -> None:
        self._fsync = fsync
        self._local: Path | None = None
        text = os.fspath(root)
        if filesystem is not None:
            self.fs, self._base = filesystem, text.rstrip("/")
        elif "://" not in text:
            self._local = Path(text).absolute()
            self.fs, self._base = pafs.LocalFileSystem(), str(self._local)
        else:
            fs, base = filesystem_for(text, storage)
            self.fs, self._base = fs, base.rstrip("/")
            if isinstance(fs, pafs.LocalFileSystem):
                self._local = Path(base).absolute()
        self.root = text

    @property
    def is_local(self) -> bool:
        return self._local is not None

    def check(self) -> None:
        """Fail now, in one line, if an object-store root cannot be written to later: the
        endpoint does not answer, the credentials are refused, or the bucket is missing.

        Raises:
            StorageError: what is wrong and what to check (local roots: never).
        """
        if self._local is not None:
            return
        bucket = self._base.split("/", 1)[0]
        try:
            info = self.fs.get_file_info(bucket)  # the request that needs the credentials
        except OSError as exc:
            raise unreachable(self.root, exc) from None
        if info.type == pafs.FileType.NotFound:
            raise unreachable(self.root, FileNotFoundError(f"NO_SUCH_BUCKET {bucket!r}"))

    def local_path(self, rel: str) -> Path:
        """The local path of `rel` (only for local roots)."""
        if self._local is None:
            raise ValueError(f"capture root {self.root} is not a local directory")
        return self._local / rel

    def full_path(self, rel: str) -> str:
        """The path of `rel` as this root's filesystem names it (for readers)."""
        return f"{self._base}/{rel}" if self._base else rel

    def put(self, rel: str, data: bytes | pa.Buffer) -> None:
        """Publish `data` at `rel` atomically (see the class docstring for how)."""
        if self._local is not None:
            path = self._local / rel
            mkdir_durably(path.parent, self._fsync)
            write_durably(path, memoryview(data), self._fsync)
            return
        full = self.full_path(rel)
        parent = full.rsplit("/", 1)[0]
        if parent and parent != full:
            self.fs.create_dir(parent, recursive=True)
        with self.fs.open_output_stream(full) as out:
            out.write(data)

    def list_files(self, rel_dir: str) -> list[FileInfo]:
        """Files directly inside `rel_dir` (hidden ones included), or [] if it is absent."""
        prefix = f"{rel_dir}/" if rel_dir else ""
        if self._local is not None:
            out: list[FileInfo] = []
            try:
                with os.scandir(self._local / rel_dir) as it:
                    for e in it:
                        if not e.is_file(follow_symlinks=False):
                            continue
                        try:
                            st = e.stat()
                        except FileNotFoundError:  # removed while we listed
                            continue
                        out.append(FileInfo(prefix + e.name, st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                return []
            return sorted(out, key=lambda i: i.path)
        selector = pafs.FileSelector(self.full_path(rel_dir), allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(
            (
                FileInfo(prefix + i.base_name, i.size or 0, i.mtime_ns or 0)
                for i in infos
                if i.type == pafs.FileType.File
            ),
            key=lambda i: i.path,
        )

    def list_dirs(self, rel_dir: str) -> list[str]:
        """Names of the directories directly inside `rel_dir`, or [] if it is absent."""
        if self._local is not None:
            try:
                with os.scandir(self._local / rel_dir) as it:
                    return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
            except FileNotFoundError:
                return []
        selector = pafs.FileSelector(self.full_path(rel_dir), allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def delete(self, rel: str) -> bool:
        """Remove a file; False if it was already gone."""
        if self._local is not None:
            return unlink_durably(self._local / rel, self._fsync)
        try:
            self.fs.delete_file(self.full_path(rel))
        except FileNotFoundError:
            return False
        return True

    def read_table(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.full_path(rel), columns=columns, filesystem=self.fs)

    def read_metadata(self, rel: str) -> pq.FileMetaData:
        with self.fs.open_input_file(self.full_path(rel)) as f:
            return pq.ParquetFile(f).metadata

    def remove_dir(self, rel_dir: str, hidden_name: str) -> None:
        """Remove a directory so that readers see all of it or none of it.

        Local: one rename to `hidden_name` in the same parent (a name no reader globs),
        fsync the parent, then delete the hidden tree (a leftover after a crash is
        removed by the next call of `sweep_hidden_dirs`). Object stores have no atomic
        directory operation: the files are deleted one by one.
        """
        if self._local is not None:
            src = self._local / rel_dir
            dst = src.with_name(hidden_name)
            try:
                os.replace(src, dst)
            except FileNotFoundError:
                return
            fsync_dir(src.parent, self._fsync)
            shutil.rmtree(dst, ignore_errors=True)
            return
        self.fs.delete_dir(self.full_path(rel_dir))

    def sweep_hidden_dirs(self, rel_dir: str, prefix: str) -> int:
        """Delete leftover hidden directories named `prefix*` inside `rel_dir` (local only)."""
        if self._local is None:
            return 0
        gone = 0
        for name in self.list_dirs(rel_dir):
            if name.startswith(prefix):
                shutil.rmtree(self._local / rel_dir / name, ignore_errors=True)
                gone += 1
        return gone
