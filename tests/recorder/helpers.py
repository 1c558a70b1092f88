"""Shared pieces of the recorder tests: appending synthetic frames, reading what was published.

Reading goes through the visibility rule of `schemas.record.live_files`, file by
file, so a test also proves that every published file is readable.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from recorder.storage.journal import JournalWriter
from schemas.record import live_files

from .journal_driver import frame

__all__ = [
    "RUN_A",
    "RUN_B",
    "append_frames",
    "expected_row",
    "feed_of",
    "live_paths",
    "published",
    "published_idx",
]

RUN_A = "20260101T000000Z-0000000a"
RUN_B = "20260101T000100Z-0000000b"
BASE_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def binary(i: int) -> bool:
    """Whether synthetic record i came as a binary WebSocket message (a few do)."""
    return i % 13 == 7


def feed_of(i: int) -> int:
    """The feed of synthetic record i: runs of 7 records alternate between feeds 0 and 1,
    as the records of a recorder with two feeds interleave."""
    return (i // 7) % 2


def expected_row(i: int, run_id: str = RUN_A, recv_ns: int | None = None) -> dict[str, object]:
    dir_, channel, type_, sid, seq, ticker, raw = frame(i)
    return {
        "run_id": run_id,
        "idx": i,
        "conn": 1,
        "recv_ns": BASE_NS + i * 1000 if recv_ns is None else recv_ns,
        "dir": dir_,
        "channel": channel,
        "type": type_,
        "sid": sid,
        "seq": seq,
        "market_ticker": ticker,
        "raw": raw,
        "opcode": 2 if binary(i) else 1,
        "feed": feed_of(i),
    }


def append_frames(
    writer: JournalWriter, start: int, count: int, *, recv_ns: int | None = None
) -> list[int]:
    """Append frames start..start+count-1 (recv_ns = BASE_NS + i us unless given)."""
    out = []
    for i in range(start, start + count):
        dir_, channel, type_, sid, seq, ticker, raw = frame(i)
        recv = BASE_NS + i * 1000 if recv_ns is None else recv_ns
        mono = time.monotonic_ns()
        out.append(
            writer.append(
                1, recv, mono, dir_, channel, type_, sid, seq, ticker, raw, binary(i), feed_of(i)
            )
        )
    return out


def live_paths(root: Path) -> list[Path]:
    """Every live Parquet file under the root (the reader's rule applied per partition)."""
    out = []
    for partition in sorted(p for p in root.glob("channel=*/date=*") if p.is_dir()):
        names = [p.name for p in partition.iterdir()]
        out += [partition / n for n in live_files(names)]
    return out


def published(root: Path, columns: list[str] | None = None) -> pa.Table:
    """All live rows under the root, in (run_id, idx) order; every file must be readable."""
    if columns is not None:
        columns = list(dict.fromkeys(["run_id", "idx", *columns]))
    tables = [pq.read_table(p, columns=columns) for p in live_paths(root)]
    if not tables:
        return pa.table({"run_id": pa.array([], pa.string()), "idx": pa.array([], pa.int64())})
    table = pa.concat_tables(tables).unify_dictionaries().combine_chunks()
    keys = pa.table({"r": table.column("run_id").cast(pa.string()), "i": table.column("idx")})
    return table.take(pc.sort_indices(keys, sort_keys=[("r", "ascending"), ("i", "ascending")]))


def crash_cases(default_cycles: int) -> list[Any]:
    """The two sizes of a kill -9 loop: (cycles, seed, label) for the default suite, and
    `KT_SOAK_CYCLES` cycles (10 unless set; 200 for the full run) behind the soak marker."""
    soak = int(os.environ.get("KT_SOAK_CYCLES", "10"))
    return [
        pytest.param(default_cycles, 1, "default suite", id="default"),
        pytest.param(soak, 2, "soak", id="soak", marks=pytest.mark.soak),
    ]


def unreadable_files(root: Path) -> list[str]:
    """The live Parquet files under `root` that do not read in full."""
    bad = []
    for path in live_paths(root):
        try:
            pq.read_table(path)
        except Exception:
            bad.append(path.name)
    return bad


def published_idx(root: Path, run_id: str | None = None) -> Counter[tuple[str, int]]:
    """How many times each (run_id, idx) appears in the live files (of one run, if given)."""
    table = published(root, ["run_id", "idx"])
    runs = table.column("run_id").cast(pa.string()).to_pylist()
    pairs = zip(runs, table.column("idx").to_pylist(), strict=True)
    return Counter(p for p in pairs if run_id is None or p[0] == run_id)
