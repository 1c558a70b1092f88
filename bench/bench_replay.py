"""Replay throughput on a 1M-frame capture, against hand-written ceilings in the same run.

    python bench/bench_replay.py [--frames N]

The capture is written once (cached in bench/out/) through the real write path:
JournalWriter + JournalSink + Publisher, from the realistic mix of bench/mix.py.
Measured, in this order, in one process:
  engine ceiling   per journal segment: read `idx`, `dir`, `raw` of its files, sort by
                   idx, msgspec parse, seq check, dict-per-side book apply in exact
                   integers, an async generator consumed with `async for` (no engine);
                   the same with Decimal books is a second baseline
  replay raw       ReplaySession, three consumers (orderbook_delta, ticker, trade)
                   reading `Frame`s, books maintained
  replay models    the same, consumers reading pydantic models, against the typed
                   ceiling (the engine ceiling composed with validate_json alone)
  replay structs   the same, consumers reading the msgspec mirrors (schemas.structs)
  bulk ceiling     per segment: read every column, sort by idx, Python values, tuples
  bulk tuples      replay.reading.bulk.iter_frames
  bulk batches     replay.reading.bulk.iter_batches (rows/s)
and the peak RSS (VmHWM) of a process replaying the capture, and a 10M-frame one,
which must stay bounded: replay holds one row group per channel and one window.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_engine import (  # noqa: E402
    COMPOSED,
    DECIMAL,
    FIXED,
    VALIDATION,
    Ceiling,
    FixedCeiling,
    validate_rate,
)
from common import PACE, Metric, built, complete, emit  # noqa: E402
from mix import realistic_frames  # noqa: E402

from schemas.lean import keep_pandas_out  # noqa: E402

RUN_ID = "20261121T080000Z-0000beef"


def build(root: Path, n: int, feeds: int = 1) -> None:
    """Write the capture through the recorder's own write path; with `feeds` 2, as a
    recorder of two redundant feeds writes it: every frame on both connections (conn 1
    of feed 0 and conn 2 of feed 1), feed 1's 3 us after feed 0's."""
    from recorder.storage.journal import JournalWriter
    from recorder.storage.journal_sink import JournalSink
    from recorder.storage.publisher import Publisher
    from schemas.events import Attempt, Opened, RunStop

    mix = realistic_frames(n)
    journal_dir = Path(tempfile.mkdtemp(prefix="bench-journal-"))
    publisher = Publisher(journal_dir, root)
    t = 1_795_244_476_000_000_000
    with JournalWriter(journal_dir, RUN_ID, segment_max_bytes=32 << 20,
                       on_sealed=publisher.publish) as journal:  # fmt: skip
        sink = JournalSink(journal)
        for feed in range(feeds):
            sink.event(0, t, 0, Attempt(url="ws://bench", attempt=1), feed)
            sink.event(1 + feed, t, 0, Opened(url="ws://bench"), feed)
            for raw in mix.subscribes:
                sink.command_out(1 + feed, t, 0, raw, feed)
            for raw in mix.acks:
                sink.frame_in(1 + feed, t, 0, raw, feed)
        for i, raw in enumerate(mix.frames):
            for feed in range(feeds):
                at = i * 10_000 + feed * 3_000
                sink.frame_in(1 + feed, t + at, at, raw, feed)
            if i % PACE == 0:  # the journal drops what exceeds its memory limit: keep pace
                journal.wait_durable(sink.last_idx)
        sink.event(0, t + n * 10_000, n * 10_000, RunStop(reason="bench"))
        complete(journal.close())


#: Bumped when the recorder's write path changes what files look like (row groups...).
CAPTURE_FORMAT = 4  # 3: built whole or not at all (common.built); 4: 500 distinct markets


def capture_root(n: int, feeds: int = 1) -> Path:
    """The capture of `n` frames of the mix (received on each of `feeds` feeds)."""
    name = f"replay-{n}-f{CAPTURE_FORMAT}" + ("" if feeds == 1 else f"-{feeds}feeds")
    return built(
        HERE / "out" / name, [sys.executable, __file__, "--build", str(n), "--feeds", str(feeds)]
    )


def segments(root: Path, channels: list[str]) -> list[list[Path]]:
    by_segment: dict[int, list[Path]] = {}
    for channel in channels:
        for path in root.glob(f"channel={channel}/date=*/*.parquet"):
            by_segment.setdefault(int(path.stem.split("-")[-1]), []).append(path)
    return [by_segment[k] for k in sorted(by_segment)]


def read_sorted(files: list[Path], columns: list[str]) -> pa.Table:
    table = pa.concat_tables([pq.read_table(f, columns=columns) for f in files])
    return table.take(pc.sort_indices(table.column("idx")))


async def engine_ceiling(root: Path, fixed: bool = True) -> float:
    step = (FixedCeiling() if fixed else Ceiling()).step
    count = 0

    async def stream() -> Any:
        for files in segments(root, ["orderbook_delta", "ticker", "trade"]):
            table = read_sorted(files, ["idx", "dir", "raw"])
            for raw in table.column("raw").to_pylist():
                f = step(raw)
                if f is not None:
                    yield f

    t0 = time.perf_counter()
    async for _ in stream():
        count += 1
    return count / (time.perf_counter() - t0)


async def replay(root: Path, raw: bool, end: int | None = None, struct: bool = False) -> float:
    from replay.reading.session import ReplaySession

    session = ReplaySession(root, end=end)
    count = 0

    async def consume(sub: Any) -> None:
        nonlocal count
        async for _ in sub:
            count += 1

    async with session:
        subs = [await session.subscribe(c, raw=raw, struct=struct)
                for c in ("orderbook_delta", "ticker", "trade")]  # fmt: skip
        t0 = time.perf_counter()
        await asyncio.gather(*(consume(s) for s in subs))
        elapsed = time.perf_counter() - t0
    assert session.book is not None
    return count / elapsed


def bulk_ceiling(root: Path) -> float:
    count = 0
    t0 = time.perf_counter()
    channels = ["orderbook_delta", "ticker", "trade"]
    for files in segments(root, channels):
        table = read_sorted(files, list(pq.read_schema(files[0]).names))
        columns = []
        for column in table.columns:
            chunk = column.combine_chunks()
            if pa.types.is_dictionary(chunk.type):
                values = chunk.dictionary.to_pylist()
                columns.append([values[i] for i in chunk.indices.to_pylist()])
            else:
                columns.append(chunk.to_pylist())
        for _ in zip(*columns, strict=True):
            count += 1
    return count / (time.perf_counter() - t0)


def bulk(root: Path, batches: bool) -> float:
    from replay.reading.bulk import iter_batches, iter_frames

    t0 = time.perf_counter()
    if batches:
        count = sum(b.num_rows for b in iter_batches(root))
    else:
        count = sum(1 for _ in iter_frames(root))
    return count / (time.perf_counter() - t0)


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def replayed_frames(root: Path, n: int) -> list[bytes]:
    """The first n data frames of the capture, in replay order (for the typed ceiling)."""
    from replay.reading.capture import Capture

    out: list[bytes] = []
    for window in Capture(root).read(["orderbook_delta", "ticker", "trade"], columns=("raw",),
                                     with_state=False):  # fmt: skip
        out += window.table.column("raw").to_pylist()
        if len(out) >= n:
            break
    return out[:n]


def peak_rss_of_replay(n: int, pool: str, pandas: bool = False) -> float:
    """Peak RSS of a fresh process replaying the n-frame capture, with Arrow's `pool`;
    with pandas kept out (as the kalshi-tape commands run) unless `pandas`."""
    env = dict(os.environ, ARROW_DEFAULT_MEMORY_POOL=pool)
    cmd = [sys.executable, __file__, "--rss", str(n), *(["--with-pandas"] if pandas else [])]
    done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    if "--build" in sys.argv:
        i = sys.argv.index("--build")
        feeds = int(sys.argv[sys.argv.index("--feeds") + 1]) if "--feeds" in sys.argv else 1
        build(Path(sys.argv[-1]), int(sys.argv[i + 1]), feeds)  # --build N [--feeds K] ROOT
        return
    if "--rss" in sys.argv:  # replay alone in a fresh process: its own peak memory
        if "--with-pandas" not in sys.argv:
            keep_pandas_out()
        asyncio.run(replay(capture_root(int(sys.argv[sys.argv.index("--rss") + 1])), raw=True))
        print(f"{peak_rss_mib():.1f}")
        return
    n = 1_000_000
    if "--frames" in sys.argv:
        n = int(sys.argv[sys.argv.index("--frames") + 1])
    big = 10_000_000
    if "--rss-frames" in sys.argv:
        big = int(sys.argv[sys.argv.index("--rss-frames") + 1])
    root = capture_root(n)
    capture_root(big)  # built once, cached (its replay runs in a fresh process)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    ceiling = asyncio.run(engine_ceiling(root))
    decimal_ceiling = asyncio.run(engine_ceiling(root, fixed=False))
    raw_rate = asyncio.run(replay(root, raw=True))
    typed_n = min(n, 300_000)
    model_end = 1_795_244_476_000_000_000 + typed_n * 10_000
    validation = validate_rate(replayed_frames(root, typed_n))
    composed = 1 / (1 / ceiling + 1 / validation)
    model_rate = asyncio.run(replay(root, raw=False, end=model_end))
    struct_rate = asyncio.run(replay(root, raw=False, end=model_end, struct=True))
    b_ceiling = bulk_ceiling(root)
    tuples = bulk(root, batches=False)
    batches = bulk(root, batches=True)
    bbase = "bulk ceiling: parquet+tuples"
    size_mb = sum(p.stat().st_size for p in root.rglob("*.parquet")) / 1e6
    rss = peak_rss_of_replay(n, "jemalloc")
    big_rss = peak_rss_of_replay(big, "jemalloc")
    big_rss_default = peak_rss_of_replay(big, "mimalloc")
    big_rss_pandas = peak_rss_of_replay(big, "jemalloc", pandas=True)
    emit(
        [
            Metric(FIXED, ceiling, "frames/s"),
            Metric(DECIMAL, decimal_ceiling, "frames/s", baseline=FIXED),
            Metric(
                "ReplaySession, raw Frames, books maintained",
                raw_rate,
                "frames/s",
                baseline=FIXED,
                target=">= 400k, ratio >= 0.8",
            ),
            Metric(
                "ReplaySession, raw Frames (vs the Decimal ceiling)",
                raw_rate,
                "frames/s",
                baseline=DECIMAL,
            ),
            Metric(VALIDATION, validation, "frames/s"),
            Metric(COMPOSED, composed, "frames/s"),
            Metric(
                "ReplaySession, pydantic models",
                model_rate,
                "frames/s",
                baseline=COMPOSED,
                target="ratio >= 0.8",
            ),
            Metric(
                "ReplaySession, struct mirrors (typed fast path)",
                struct_rate,
                "frames/s",
                baseline=COMPOSED,
                target=">= 150k",
            ),
            Metric(bbase, b_ceiling, "frames/s"),
            Metric(
                "bulk: iter_frames tuples",
                tuples,
                "frames/s",
                baseline=bbase,
                target=">= 1M, ratio >= 0.8",
            ),
            Metric("bulk: iter_batches", batches, "rows/s", baseline=bbase),
            Metric(
                f"peak RSS replaying {n:,} frames (alone)",
                rss,
                "MiB",
                higher_is_better=False,
            ),
            Metric(
                f"peak RSS replaying {big:,} frames (alone)",
                big_rss,
                "MiB",
                higher_is_better=False,
                target="<= 200",
            ),
            Metric(
                f"peak RSS replaying {big:,} frames, pyarrow's default pool",
                big_rss_default,
                "MiB",
                higher_is_better=False,
            ),
            Metric(
                f"peak RSS replaying {big:,} frames, pandas importable (not kept out)",
                big_rss_pandas,
                "MiB",
                higher_is_better=False,
            ),
        ],
        notes=f"{n:,}-frame capture written by the recorder's write path ({size_mb:.0f} MB). "
        "Peak RSS: a fresh process replaying with ReplaySession (three raw consumers) and "
        "Arrow's jemalloc pool and pandas kept out, as the kalshi-tape commands run; "
        "pyarrow's default pool (mimalloc) retains more; where pandas is installed and "
        "not kept out (any pyarrow user's process), the read path gives pyarrow no "
        "Python object to convert, so pandas is never imported.",
    )


if __name__ == "__main__":
    main()
