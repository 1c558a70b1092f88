"""Which files of a root make up a capture: the one listing every reader goes through.

docs/architecture.md section 3: Hive partitions
`channel=<channel>/date=<YYYY-MM-DD>/<run_id>-<segment>[-c<last>].parquet`. Only
regular files named that way, in partition directories with a known channel and a
real date, whose real path stays under the root, are capture files; anything else
is reported as stray and never read. Of a partition's capture files, those that a
compacted file supersedes (`schemas.record.split_live_files`, the rule compaction
writes by) are left out, so no reader sees a row twice.

Replay, SQL, verify and inspect all list through `list_capture_files`. A root is a
local directory or an object-store URI (`s3://bucket/prefix`, through
`schemas.storage`): on a filesystem without directories or symlinks the same names make
the same listing, from one recursive listing of the prefix. `open_parquet` opens a
listed file on its filesystem. This module imports no DuckDB, so reading a capture does
not load it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Final

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from schemas.channels import ALL_CHANNELS
from schemas.errors import ConfigError
from schemas.record import (
    ROOT_ENTRIES,
    compacted_file_suffix,
    parse_file_name,
    split_live_files,
)
from schemas.storage import StorageOptions, filesystem_for, is_remote, unreachable

__all__ = [
    "CaptureFile",
    "CaptureListing",
    "RootLocation",
    "StrayFile",
    "list_capture_files",
    "locate_root",
    "open_parquet",
    "resolve_root",
]

_DATE_DIR: Final = re.compile(r"^date=([0-9]{4}-[0-9]{2}-[0-9]{2})$")


@dataclass(frozen=True, slots=True)
class CaptureFile:
    """One published Parquet file of a capture, with what its path says."""

    path: PurePath  # local: absolute, under the resolved root; remote: on the root's filesystem
    channel: str
    date: str
    run_id: str
    segment: int
    suffix: str  # "" for a publisher file; set for derived files (compaction)
    size_bytes: int


@dataclass(frozen=True, slots=True)
class StrayFile:
    """A path under the root that is not part of the capture, and why."""

    path: PurePath
    reason: str


@dataclass(frozen=True, slots=True)
class RootLocation:
    """Where a capture root is: a local directory, or a path on a pyarrow filesystem."""

    path: PurePath  # local: the resolved Path; remote: "bucket/prefix" on `filesystem`
    uri: str  # as shown to the user and to DuckDB: the local path, or "s3://bucket/prefix"
    filesystem: pafs.FileSystem | None = None  # None: the local filesystem

    @property
    def is_local(self) -> bool:
        return self.filesystem is None

    def source(self, path: PurePath) -> str:
        """How a reader outside pyarrow (DuckDB) names a file under this root."""
        if self.filesystem is None:
            return str(path)
        return self.uri + str(path)[len(str(self.path)) :]


@dataclass(frozen=True, slots=True)
class CaptureListing:
    """The files that make up a capture, and what else was found under the root."""

    root: PurePath
    files: tuple[CaptureFile, ...]
    stray: tuple[StrayFile, ...] = ()
    superseded: tuple[CaptureFile, ...] = ()  # replaced by a compacted file: never read
    location: RootLocation | None = None  # None: the local directory `root`

    @property
    def filesystem(self) -> pafs.FileSystem | None:
        """The filesystem the files are on (None: the local one)."""
        return None if self.location is None else self.location.filesystem

    @property
    def uri(self) -> str:
        """The root as the user names it (a local path or an object-store URI)."""
        return str(self.root) if self.location is None else self.location.uri

    def paths(self, channels: Iterable[str] | None = None) -> list[PurePath]:
        """Paths of the files of the given channels (all channels if None)."""
        if channels is None:
            return [f.path for f in self.files]
        wanted = set(channels)
        return [f.path for f in self.files if f.channel in wanted]

    def sources(self, channels: Iterable[str] | None = None) -> list[str]:
        """`paths` as readers outside pyarrow name them (`s3://...` on object stores)."""
        if self.location is None:
            return [str(p) for p in self.paths(channels)]
        return [self.location.source(p) for p in self.paths(channels)]

    def without(self, paths: Iterable[PurePath]) -> CaptureListing:
        """The same listing minus some files (for example the unreadable ones)."""
        drop = set(paths)
        files = tuple(f for f in self.files if f.path not in drop)
        return CaptureListing(self.root, files, self.stray, self.superseded, self.location)


def open_parquet(path: PurePath, filesystem: pafs.FileSystem | None = None) -> pq.ParquetFile:
    """Open a listed capture file on its filesystem (reads only the footer).

    On an object store the column chunks a read needs are fetched in a few coalesced
    requests (`pre_buffer`), not one per page.
    """
    if filesystem is None:
        return pq.ParquetFile(path)
    return pq.ParquetFile(str(path), filesystem=filesystem, pre_buffer=True)


def resolve_root(root: str | os.PathLike[str]) -> Path:
    """The absolute, symlink-free path of a capture root.

    Raises:
        ConfigError: the root does not exist or is not a directory.
    """
    path = Path(root).expanduser()
    try:
        resolved = path.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(
            "ROOT", f"capture root {str(path)!r} does not exist", "give the directory you record to"
        ) from None
    except OSError as exc:
        raise ConfigError("ROOT", f"cannot open capture root {str(path)!r}: {exc}") from None
    if not resolved.is_dir():
        raise ConfigError("ROOT", f"capture root {str(path)!r} is not a directory")
    return resolved


def locate_root(
    root: str | os.PathLike[str] | RootLocation, storage: StorageOptions | None = None
) -> RootLocation:
    """Where a root is: a resolved local directory, or an existing prefix on a filesystem.

    Raises:
        ConfigError: the root does not exist (no object under the prefix), is not a
            directory, or names no filesystem.
        StorageError: the storage cannot be reached or refuses access (one line).
    """
    if isinstance(root, RootLocation):
        return root
    if not is_remote(root):
        text = os.fspath(root)
        path = resolve_root(text.removeprefix("file://"))
        return RootLocation(path, str(path))
    uri = os.fspath(root).rstrip("/")
    fs, base = filesystem_for(uri, storage)
    try:
        info = fs.get_file_info(base)
    except OSError as exc:
        raise unreachable(uri, exc) from None
    if info.type == pafs.FileType.NotFound:
        raise ConfigError(
            "ROOT",
            f"capture root {uri!r} does not exist (no object under it)",
            "give the prefix you record to, e.g. s3://bucket/capture",
        )
    if info.type != pafs.FileType.Directory:
        raise ConfigError("ROOT", f"capture root {uri!r} is a file, not a prefix")
    return RootLocation(PurePosixPath(base), uri, fs)


def list_capture_files(
    root: str | os.PathLike[str] | RootLocation, storage: StorageOptions | None = None
) -> CaptureListing:
    """List the capture's files: the one function every reader goes through.

    Only regular files named like the publisher names them, in partition
    directories with a known channel and a YYYY-MM-DD date, whose real path stays
    under the root, are capture files; anything else is reported as stray.
    Files are sorted by (channel, date, name). Entries of the root whose names start
    with "_" or "." (the recorder's `_journal/`, `_status.json`) are not data.

    Files a compacted file supersedes are left out of `files` and listed in
    `superseded` (still on disk until compaction's grace period ends).

    Args:
        root: a local directory, an object-store URI (`s3://bucket/prefix`), or an
            already located root.
        storage: endpoint, region and credentials for object stores (default: the
            AWS environment).
    """
    location = locate_root(root, storage)
    if location.filesystem is not None:
        return _list_remote(location)
    base = Path(location.path)
    files: list[CaptureFile] = []
    stray: list[StrayFile] = []
    superseded: list[CaptureFile] = []
    for channel_dir in sorted(base.iterdir()):
        name = channel_dir.name
        if _not_data(name):
            continue  # the recorder's journal and status file
        channel = name.removeprefix("channel=")
        if not name.startswith("channel=") or channel not in ALL_CHANNELS:
            stray.append(StrayFile(channel_dir, "not a channel=<channel> partition"))
            continue
        if not _inside(channel_dir, base) or not channel_dir.is_dir():
            stray.append(StrayFile(channel_dir, "not a directory under the root"))
            continue
        for date_dir in sorted(channel_dir.iterdir()):
            match = _DATE_DIR.match(date_dir.name)
            if match is None or not date_dir.is_dir() or not _inside(date_dir, base):
                stray.append(StrayFile(date_dir, "not a date=<YYYY-MM-DD> partition"))
                continue
            found_here: list[CaptureFile] = []
            for entry in sorted(date_dir.iterdir()):
                found = _capture_file(entry, channel, match.group(1))
                if isinstance(found, StrayFile):
                    stray.append(found)
                else:
                    found_here.append(found)
            live = set(split_live_files([f.path.name for f in found_here])[0])
            for f in found_here:
                (files if f.path.name in live else superseded).append(f)
    return CaptureListing(base, tuple(files), tuple(stray), tuple(superseded), location)


def _not_data(name: str) -> bool:
    """A root entry that is not a partition and not stray: the recorder's own files
    (`_journal/`, `_status.json`; `journal/` and `status.json` in older layouts)."""
    return name in ROOT_ENTRIES or name.startswith(("_", "."))


def _list_remote(location: RootLocation) -> CaptureListing:
    """The listing of a root on a filesystem without directories: one recursive listing,
    each object classified by the names on its path (the local rules, name for name)."""
    fs, base = location.filesystem, str(location.path)
    assert fs is not None
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except OSError as exc:
        raise unreachable(location.uri, exc) from None
    files: list[CaptureFile] = []
    stray: dict[PurePath, str] = {}
    by_partition: dict[tuple[str, str], list[CaptureFile]] = {}
    for info in sorted(infos, key=lambda i: i.path):
        if info.type != pafs.FileType.File:
            continue
        parts = info.path[len(base) + 1 :].split("/")
        if _not_data(parts[0]):
            continue
        top = PurePosixPath(base, parts[0])
        channel = parts[0].removeprefix("channel=")
        if len(parts) == 1 or not parts[0].startswith("channel=") or channel not in ALL_CHANNELS:
            stray.setdefault(top, "not a channel=<channel> partition")
            continue
        match = _DATE_DIR.match(parts[1]) if len(parts) > 2 else None
        if match is None:
            stray.setdefault(top / parts[1], "not a date=<YYYY-MM-DD> partition")
            continue
        path = PurePosixPath(info.path)
        if len(parts) > 3:
            stray.setdefault(top / parts[1] / parts[2], "not a regular file under the root")
            continue
        name = parse_file_name(parts[2])
        if parts[2].startswith("."):
            stray[path] = "temporary file (a publication in progress, or left by a crash)"
        elif name is None:
            stray[path] = "not named <run_id>-<segment>[-c<last segment>].parquet"
        else:
            found = CaptureFile(
                path, channel, match.group(1), name.run_id, name.lo,
                compacted_file_suffix(name.hi) if name.compacted else "", info.size or 0,
            )  # fmt: skip
            by_partition.setdefault((channel, match.group(1)), []).append(found)
    superseded: list[CaptureFile] = []
    for _, found_here in sorted(by_partition.items()):
        live = set(split_live_files([f.path.name for f in found_here])[0])
        for f in found_here:
            (files if f.path.name in live else superseded).append(f)
    strays = tuple(StrayFile(p, why) for p, why in sorted(stray.items()))
    return CaptureListing(location.path, tuple(files), strays, tuple(superseded), location)


def _inside(path: Path, base: Path) -> bool:
    return path.resolve().is_relative_to(base)


def _capture_file(entry: Path, channel: str, date: str) -> CaptureFile | StrayFile:
    """`entry` of a partition directory already found to resolve under the root: a
    regular file there, not a link, resolves under it too (no `resolve` per file)."""
    if entry.name.startswith("."):
        return StrayFile(entry, "temporary file (a publication in progress, or left by a crash)")
    name = parse_file_name(entry.name)
    if name is None:
        return StrayFile(entry, "not named <run_id>-<segment>[-c<last segment>].parquet")
    if entry.is_symlink() or not entry.is_file():
        return StrayFile(entry, "not a regular file under the root")
    return CaptureFile(
        path=entry,
        channel=channel,
        date=date,
        run_id=name.run_id,
        segment=name.lo,
        suffix=compacted_file_suffix(name.hi) if name.compacted else "",
        size_bytes=entry.stat().st_size,
    )
