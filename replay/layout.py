"""Which files of a root make up a capture: the one listing every reader goes through.

docs/architecture.md section 3: Hive partitions
`channel=<channel>/date=<YYYY-MM-DD>/<run_id>-<segment>[-c<last>].parquet`. Only
regular files named that way, in partition directories with a known channel and a
real date, whose real path stays under the root, are capture files; anything else
is reported as stray and never read. Of a partition's capture files, those that a
compacted file supersedes (`schemas.record.split_live_files`, the rule compaction
writes by) are left out, so no reader sees a row twice.

Replay, SQL, verify and inspect all list through `list_capture_files`. This module
imports no DuckDB, so reading a capture does not load it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from schemas.channels import ALL_CHANNELS
from schemas.errors import ConfigError
from schemas.record import (
    ROOT_ENTRIES,
    compacted_file_suffix,
    parse_file_name,
    split_live_files,
)

__all__ = [
    "CaptureFile",
    "CaptureListing",
    "StrayFile",
    "list_capture_files",
    "resolve_root",
]

_DATE_DIR: Final = re.compile(r"^date=([0-9]{4}-[0-9]{2}-[0-9]{2})$")


@dataclass(frozen=True, slots=True)
class CaptureFile:
    """One published Parquet file of a capture, with what its path says."""

    path: Path  # absolute, under the resolved root
    channel: str
    date: str
    run_id: str
    segment: int
    suffix: str  # "" for a publisher file; set for derived files (compaction)
    size_bytes: int


@dataclass(frozen=True, slots=True)
class StrayFile:
    """A path under the root that is not part of the capture, and why."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class CaptureListing:
    """The files that make up a capture, and what else was found under the root."""

    root: Path
    files: tuple[CaptureFile, ...]
    stray: tuple[StrayFile, ...] = ()
    superseded: tuple[CaptureFile, ...] = ()  # replaced by a compacted file: never read

    def paths(self, channels: Iterable[str] | None = None) -> list[Path]:
        """Paths of the files of the given channels (all channels if None)."""
        if channels is None:
            return [f.path for f in self.files]
        wanted = set(channels)
        return [f.path for f in self.files if f.channel in wanted]

    def without(self, paths: Iterable[Path]) -> CaptureListing:
        """The same listing minus some files (for example the unreadable ones)."""
        drop = set(paths)
        files = tuple(f for f in self.files if f.path not in drop)
        return CaptureListing(self.root, files, self.stray, self.superseded)


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


def list_capture_files(root: str | os.PathLike[str]) -> CaptureListing:
    """List the capture's files: the one function every reader goes through.

    Only regular files named like the publisher names them, in partition
    directories with a known channel and a YYYY-MM-DD date, whose real path stays
    under the root, are capture files; anything else is reported as stray.
    Files are sorted by (channel, date, name).

    Files a compacted file supersedes are left out of `files` and listed in
    `superseded` (still on disk until compaction's grace period ends).
    """
    base = resolve_root(root)
    files: list[CaptureFile] = []
    stray: list[StrayFile] = []
    superseded: list[CaptureFile] = []
    for channel_dir in sorted(base.iterdir()):
        name = channel_dir.name
        if name in ROOT_ENTRIES or name.startswith("."):
            continue  # the recorder's journal and status file, data/'s README and sample
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
                found = _capture_file(entry, base, channel, match.group(1))
                if isinstance(found, StrayFile):
                    stray.append(found)
                else:
                    found_here.append(found)
            live = set(split_live_files([f.path.name for f in found_here])[0])
            for f in found_here:
                (files if f.path.name in live else superseded).append(f)
    return CaptureListing(base, tuple(files), tuple(stray), tuple(superseded))


def _inside(path: Path, base: Path) -> bool:
    return path.resolve().is_relative_to(base)


def _capture_file(entry: Path, base: Path, channel: str, date: str) -> CaptureFile | StrayFile:
    if entry.name.startswith("."):
        return StrayFile(entry, "temporary file (a publication in progress, or left by a crash)")
    name = parse_file_name(entry.name)
    if name is None:
        return StrayFile(entry, "not named <run_id>-<segment>[-c<last segment>].parquet")
    if entry.is_symlink() or not entry.is_file() or not _inside(entry, base):
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
