"""Bulk access to captured frames, without the engine: Arrow batches and per-frame tuples.

For analytics that need the recorded frames themselves (counting, re-parsing,
exporting) rather than a consumer's view: the same order and filters as a
`ReplaySession` (runs merged by receive time, idx order within a run, time,
channel and market filters), none of the engine's work. Batches come straight
from the reader's windows; tuples are built column-wise, decoding dictionary
columns once per batch (docs/performance.md section 4.8).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from replay.reading.capture import Capture, bool_array, int64_view
from replay.reading.session import to_ns
from schemas.record import COLUMNS
from schemas.storage import StorageOptions

__all__ = ["CapturedFrame", "iter_batches", "iter_frames"]


class CapturedFrame(NamedTuple):
    """One record of a capture, as Python values (the columns of `schemas.record`)."""

    run_id: str
    idx: int
    conn: int
    recv_ns: int
    mono_ns: int
    dir: str
    channel: str
    type: str
    sid: int | None
    seq: int | None
    market_ticker: str | None
    raw: bytes
    opcode: int | None  # 1 text, 2 binary; None for events and older captures
    feed: int | None = None  # the feed of a redundant capture (None in older captures: 0)


def iter_batches(
    root: str | Path | Capture,
    start: dt.datetime | str | int | None = None,
    end: dt.datetime | str | int | None = None,
    channels: Iterable[str] | None = None,
    markets: Iterable[str] | None = None,
    *,
    columns: Iterable[str] = COLUMNS,
    storage: StorageOptions | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield the capture's records as Arrow record batches, in replay order.

    Args:
        root: a capture root, local or an object-store URI such as `s3://bucket/prefix`
            (or an already built `Capture` index).
        start, end: keep records received in [start, end) (datetime, ISO-8601, or ns).
        channels: keep these channels (default: every wire channel; name `_control`,
            `_session`, `_unknown` or `_checkpoint` to get those too).
        markets: keep records of these markets (and records of no market).
        columns: which columns to read (default: all).
        storage: endpoint, region and credentials of an object-store root (default: the
            AWS environment).
    """
    capture = root if isinstance(root, Capture) else Capture(root, storage=storage)
    start_ns, end_ns = to_ns(start, "start"), to_ns(end, "end")
    wanted = list(channels) if channels is not None else capture.data_channels
    cols = tuple(dict.fromkeys(columns))
    for window in capture.read(
        wanted,
        columns=cols,
        markets=None if markets is None else frozenset(markets),
        with_state=False,
    ):
        table = window.table
        keys = window.keys
        if start_ns is not None or end_ns is not None:
            values = int64_view(keys)
            keep = np.ones(len(values), bool) if start_ns is None else values >= start_ns
            if end_ns is not None:
                keep &= values < end_ns
            table = table.filter(bool_array(keep))
        yield from table.to_batches()


def _as_list(column: pa.Array) -> list[object]:
    if pa.types.is_dictionary(column.type):
        values = column.dictionary.to_pylist()
        return [None if i is None else values[i] for i in column.indices.to_pylist()]
    return column.to_pylist()


def iter_frames(
    root: str | Path | Capture,
    start: dt.datetime | str | int | None = None,
    end: dt.datetime | str | int | None = None,
    channels: Iterable[str] | None = None,
    markets: Iterable[str] | None = None,
    *,
    storage: StorageOptions | None = None,
) -> Iterator[CapturedFrame]:
    """Yield the capture's records one by one as `CapturedFrame` tuples, in replay order.

    The same arguments as `iter_batches`.
    """
    for batch in iter_batches(root, start, end, channels, markets, storage=storage):
        columns = [_as_list(batch.column(i)) for i in range(batch.num_columns)]
        for row in zip(*columns, strict=True):
            yield CapturedFrame(*row)  # type: ignore[arg-type]
