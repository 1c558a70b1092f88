"""DuckDB over an object-store capture, without DuckDB's httpfs extension.

httpfs is downloaded at run time, which offline machines cannot do, and the query
sandbox forbids loading extensions anyway. Instead the root's pyarrow filesystem is
registered with the connection as an fsspec filesystem under the root's scheme
(`s3`), so `read_parquet('s3://bucket/prefix/...')` reads through pyarrow.

What is registered is a view of the root's prefix only, and read-only
(`ReadOnlyPrefix`): a path outside the prefix (or with `..`, `.` or empty segments)
is refused with PermissionError, and so is every write. DuckDB's own sandbox
(`allowed_directories` set to the prefix, external access off) is the first fence;
this is the second, so a query can neither read another prefix of the bucket nor
write into the capture through the connection.

This module knows pyarrow and fsspec; the SQL itself is `replay.sql.connection`'s.
"""

from __future__ import annotations

import posixpath
from typing import Any

import pyarrow.fs as pafs
from fsspec.implementations.arrow import ArrowFSWrapper

__all__ = ["ReadOnlyPrefix", "duckdb_filesystem"]


class ReadOnlyPrefix(pafs.FileSystemHandler):
    """A pyarrow filesystem handler that reads under one prefix of another filesystem."""

    def __init__(self, fs: pafs.FileSystem, prefix: str) -> None:
        self._fs = fs
        self._prefix = prefix.strip("/")

    def _inside(self, path: str) -> str:
        clean = path.strip("/")
        parts = clean.split("/")
        if any(part in ("", ".", "..") for part in parts) or posixpath.normpath(clean) != clean:
            raise PermissionError(f"{path}: not a plain path under the capture root")
        if clean != self._prefix and not clean.startswith(self._prefix + "/"):
            raise PermissionError(f"{path}: outside the capture root {self._prefix}")
        return clean

    @staticmethod
    def _read_only(path: str) -> PermissionError:
        return PermissionError(f"{path}: the capture root is read-only here")

    # reading ------------------------------------------------------------------------

    def get_type_name(self) -> str:
        return "kalshi-tape-read-only"

    def equals(self, other: Any) -> bool:
        return isinstance(other, ReadOnlyPrefix) and other._prefix == self._prefix

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return list(self._fs.get_file_info([self._inside(p) for p in paths]))

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        base = self._inside(selector.base_dir)
        inner = pafs.FileSelector(base, selector.allow_not_found, selector.recursive)
        return list(self._fs.get_file_info(inner))

    def open_input_stream(self, path: str) -> Any:
        return self._fs.open_input_stream(self._inside(path))

    def open_input_file(self, path: str) -> Any:
        return self._fs.open_input_file(self._inside(path))

    # writing: never ---------------------------------------------------------------------

    def create_dir(self, path: str, recursive: bool) -> None:
        raise self._read_only(path)

    def delete_dir(self, path: str) -> None:
        raise self._read_only(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        raise self._read_only(path)

    def delete_root_dir_contents(self) -> None:
        raise self._read_only("/")

    def delete_file(self, path: str) -> None:
        raise self._read_only(path)

    def move(self, src: str, dest: str) -> None:
        raise self._read_only(dest)

    def copy_file(self, src: str, dest: str) -> None:
        raise self._read_only(dest)

    def open_output_stream(self, path: str, metadata: Any = None) -> Any:
        raise self._read_only(path)

    def open_append_stream(self, path: str, metadata: Any = None) -> Any:
        raise self._read_only(path)


class _SchemeWrapper(ArrowFSWrapper):  # type: ignore[misc]
    """fsspec's wrapper of a pyarrow filesystem, registered under the root's scheme."""

    cachable = False  # one per connection: never handed to another by fsspec's cache

    def __init__(self, fs: pafs.FileSystem, scheme: str) -> None:
        self._scheme = scheme
        super().__init__(fs)

    @property
    def protocol(self) -> str:  # type: ignore[override]
        return self._scheme


def duckdb_filesystem(fs: pafs.FileSystem, prefix: str, scheme: str) -> Any:
    """The fsspec filesystem to `register_filesystem` for a root at `scheme://prefix`."""
    return _SchemeWrapper(pafs.PyFileSystem(ReadOnlyPrefix(fs, prefix)), scheme)
