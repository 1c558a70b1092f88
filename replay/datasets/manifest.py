"""The manifest: what each day of each derived dataset was built from.

`<datasets dir>/_manifest.json` maps dataset folder -> date -> the fingerprint of
the capture files it was derived from (every file of that UTC date on the book,
trade and state channels: path relative to the root, and size; published files
never change in place, so a new segment, a compaction or a repair changes the
fingerprint), the markets filter, the version of the derive's rules (`RULES`), the
rows written and when; and, under "views", each dataset folder's SQL view name
(`replay.sql` reads it to create the views). A day is fresh when its fingerprint,
filter and rules are unchanged; `derive` builds only the others. The leading
underscore keeps Hive readers of the datasets from taking it for data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import pyarrow.fs as pafs

from replay.reading.capture import Capture

__all__ = ["clear_day", "forget", "fresh", "load", "record", "save", "sources_of"]

NAME = "_manifest.json"
VERSION = 1
#: The derive's rules: raised whenever the same capture files would give other rows, so
#: that days built by an older kalshi-tape are built again (a day built before this
#: number was recorded counts as built by other rules). 2: bars closed by the last of
#: the quotes sharing a nanosecond, bars whole at a range's ends, depth's markets in
#: name order, restored books stamped with their own validity and last change. 3: the
#: books a gap or a lost connection clears, in market order (a day restored from a
#: checkpoint and a pass from the capture's start give them in one order).
#: tests/replay/datasets/test_rules_version.py pins the rows of examples/sample to it.
RULES = 3
_CHANNELS = ("orderbook_delta", "trade", "_control", "_session", "_checkpoint")


def sources_of(capture: Capture, date: str) -> str:
    """A fingerprint of the capture files of `date` the datasets are derived from."""
    digest = hashlib.sha256()
    root = str(capture.root)
    for channel in _CHANNELS:
        for path in sorted(capture._files_by_channel.get(channel, [])):
            text = str(path)
            if f"date={date}" not in text:
                continue
            info = capture.filesystem.get_file_info(text) if capture.filesystem else None
            size = info.size if info is not None else _local_size(text)
            digest.update(f"{text.removeprefix(root)}\t{size}\n".encode())
    return digest.hexdigest()


def _local_size(path: str) -> int:
    import os

    return os.stat(path).st_size


def load(fs: pafs.FileSystem, base: str) -> dict[str, Any]:
    try:
        with fs.open_input_stream(f"{base}/{NAME}") as f:
            book = json.loads(f.read())
    except (FileNotFoundError, OSError, ValueError):
        return {"version": VERSION, "datasets": {}}
    if not isinstance(book, dict) or book.get("version") != VERSION:
        return {"version": VERSION, "datasets": {}}
    return book


def save(fs: pafs.FileSystem, base: str, book: dict[str, Any]) -> None:
    data = json.dumps(book, indent=1, sort_keys=True).encode()
    tmp = f"{base}/{NAME}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, f"{base}/{NAME}")


def _markets(markets: frozenset[str] | None) -> list[str] | None:
    return None if markets is None else sorted(markets)


def fresh(book: dict[str, Any], folder: str, date: str, sources: str,
          markets: frozenset[str] | None) -> bool:  # fmt: skip
    entry = book["datasets"].get(folder, {}).get(date)
    return (bool(entry) and entry["sources"] == sources
            and entry["markets"] == _markets(markets) and entry.get("rules") == RULES)  # fmt: skip


def record(book: dict[str, Any], folder: str, date: str, sources: str,
           markets: frozenset[str] | None, rows: int, view: str) -> None:  # fmt: skip
    book.setdefault("views", {})[folder] = view  # the SQL view `replay.sql` creates
    book["datasets"].setdefault(folder, {})[date] = {
        "sources": sources,
        "markets": _markets(markets),
        "rules": RULES,
        "rows": rows,
        "built": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def forget(book: dict[str, Any], folder: str, date: str) -> None:
    book["datasets"].get(folder, {}).pop(date, None)


def clear_day(fs: pafs.FileSystem, base: str, folder: str, date: str) -> None:
    """Remove a day's old files of a dataset before it is derived again."""
    directory = f"{base}/{folder}/date={date}"
    if fs.get_file_info(directory).type == pafs.FileType.Directory:
        fs.delete_dir(directory)
