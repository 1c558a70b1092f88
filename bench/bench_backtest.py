"""Backtests on Dask: 1 against 2 worker processes, a shard's start, S3 against local reads.

    python bench/bench_backtest.py [--frames N] [--days D]

The capture (cached in bench/out/) is the realistic mix of bench/mix.py spread over D
UTC days, written through the recorder's write path (JournalWriter + JournalSink +
Publisher) with connection checkpoints every hour, made by an engine fed the same
frames, as the live edge makes them. Measured in one process:

  index            building the capture's index (listing and every footer): done once
                   per backtest on the client, then shipped to the workers
Each way of running is warmed first (imports, a first replay in every process), then
timed twice, the ways interleaved; the best of the two counts, so that a noisy
neighbour on a shared machine slows every way alike rather than one.

  in-process       the D day shards one after another in this process (`workers=0`)
  pool ceiling     the same shards (`replay.backtest.shards.run_shard`) in a plain pool of two
                   processes, no Dask: what this machine's two cores give in parallel
                   (a shared machine gives less than 2x; measured in the same run)
  1 worker         `replay.backtest.runner.run` over the D day shards on a local cluster of one
                   worker process: frames/s and shards/s (the cluster started beforehand)
  2 workers        the same on two worker processes (this machine's cores)
  shard start      one shard's seek: restore the latest checkpoint before a day's start
                   and fast-forward to it (a ReplaySession from the day's start to 1 ms
                   after), median of the days after the first
  local / S3 read  `replay.reading.bulk.iter_batches` of every column, from the local root and
                   from the same files on an S3-protocol server on loopback (moto)

The strategy reads every frame raw with books maintained (orderbook_delta, ticker and
trade callbacks), the way a backtest's hot loop does.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import PACE, Metric, built, complete, emit  # noqa: E402
from mix import realistic_frames  # noqa: E402

RUN_ID = "20261121T000000Z-0000bac7"
DAY_NS = 86_400 * 10**9
START_NS = 1_795_219_200 * 10**9  # 2026-11-21T00:00:00Z
CHECKPOINT_S = 3600.0


def build(root: Path, n: int, days: int) -> None:
    """The capture, through the recorder's write path; checkpoints from a live engine."""
    from recorder.storage.journal import JournalWriter
    from recorder.storage.journal_sink import JournalSink
    from recorder.storage.publisher import Publisher
    from schemas.events import Attempt, Opened, RunStop
    from stream import Engine, EngineConfig
    from stream.events import Checkpoint

    mix = realistic_frames(n)
    step = days * DAY_NS // n
    journal_dir = Path(tempfile.mkdtemp(prefix="bench-journal-"))
    publisher = Publisher(journal_dir, root)
    engine = Engine(EngineConfig(checkpoint_interval_s=CHECKPOINT_S))
    with JournalWriter(journal_dir, RUN_ID, segment_max_bytes=32 << 20,
                       on_sealed=publisher.publish) as journal:  # fmt: skip
        sink = JournalSink(journal)

        def drain() -> None:
            while engine.outbox:
                out = engine.outbox.popleft()
                if isinstance(out, Checkpoint):
                    sink.checkpoint(out)

        t = START_NS
        sink.event(0, t, 0, Attempt(url="ws://bench", attempt=1))
        engine.connection_attempt(t, 0)
        sink.event(1, t, 0, Opened(url="ws://bench"))
        engine.connection_opened(1, t, 0)
        for raw in mix.subscribes:
            sink.command_out(1, t, 0, raw)
            engine.command_sent(raw, t, 0, 1)
        for raw in mix.acks:
            sink.frame_in(1, t, 0, raw)
            engine.frame_received(raw, t, 0, 1)
        drain()
        for i, raw in enumerate(mix.frames):
            recv, mono = t + i * step, i * step
            sink.frame_in(1, recv, mono, raw)
            engine.frame_received(raw, recv, mono, 1)
            if i % 1000 == 0:
                engine.tick(recv, mono)
                drain()
            if i % PACE == 0:  # the journal drops what exceeds its memory limit: keep pace
                journal.wait_durable(sink.last_idx)
        last = (n - 1) * step + 1  # still inside the last day
        sink.event(0, t + last, last, RunStop(reason="bench"))
        complete(journal.close())


def capture_root(n: int, days: int) -> Path:
    return built(
        HERE / "out" / f"backtest-{n}-{days}d-f4",
        [sys.executable, __file__, "--build", str(n), str(days)],
    )


async def every_frame(session: Any, shard: Any) -> int:
    """The benchmark's strategy: every frame, raw, books maintained by the engine."""
    count = 0

    def seen(frame: Any) -> None:
        nonlocal count
        count += 1

    for channel in ("orderbook_delta", "ticker", "trade"):
        session.on(channel, raw=True)(seen)
    await session.run_forever()
    return count


def _warm(run: Callable[..., Any], capture: Any, **where: Any) -> None:
    """Two one-hour shards first, so that every worker has imported and replayed once (the
    pool ceiling warms its processes the same way)."""
    run(every_frame, capture, start=START_NS, end=START_NS + 2 * 3600 * 10**9, shard="1h",
        **where)  # fmt: skip


def timings(capture: Any, repeats: int) -> dict[str, tuple[float, int, int]]:
    """Best of `repeats` (seconds, frames, shards) per way of running, the ways interleaved
    so that a noisy neighbour slows them alike: in this process, a plain 2-process pool,
    a Dask cluster of 1 worker process and one of 2."""
    from multiprocessing import get_context

    from distributed import Client, LocalCluster

    from replay.backtest.runner import _plan, run

    shards = _plan(capture, None, None, DAY_NS, None, None)
    best: dict[str, tuple[float, int, int]] = {}

    def keep(name: str, seconds: float, frames: int) -> None:
        if name not in best or seconds < best[name][0]:
            best[name] = (seconds, frames, len(shards))

    quiet = {"threads_per_worker": 1, "processes": True, "dashboard_address": None,
             "silence_logs": logging.ERROR}  # fmt: skip
    with LocalCluster(n_workers=1, **quiet) as one, Client(one) as c1, \
            LocalCluster(n_workers=2, **quiet) as two, Client(two) as c2, \
            get_context("spawn").Pool(2) as pool:  # fmt: skip
        c2.wait_for_workers(2)
        _warm(run, capture, workers=0)
        _warm(run, capture, client=c1)
        _warm(run, capture, client=c2)
        pool.map(_pool_shard, [(capture, shards[-1])] * 2, chunksize=1)
        for _ in range(repeats):
            t0 = time.perf_counter()
            frames = sum(run(every_frame, capture, workers=0).value)
            keep("inline", time.perf_counter() - t0, frames)
            t0 = time.perf_counter()
            frames = sum(pool.map(_pool_shard, [(capture, s) for s in shards], chunksize=1))
            keep("pool", time.perf_counter() - t0, frames)
            for name, client in (("1 worker", c1), ("2 workers", c2)):
                t0 = time.perf_counter()
                result = run(every_frame, capture, client=client)
                assert result.ok, [s.error for s in result.failed]
                keep(name, time.perf_counter() - t0, sum(result.value))
    return best


def _pool_shard(args: tuple[Any, Any]) -> int:
    from replay.backtest.shards import run_shard

    outcome = run_shard(every_frame, args[0], args[1])
    assert outcome.ok, outcome.error
    return int(outcome.value)


def shard_start_ms(capture: Any, days: int) -> float:
    """Median time of one shard's seek: to each day's start, from its checkpoint."""
    from replay.reading.session import ReplaySession

    async def seek(start: int) -> float:
        t0 = time.perf_counter()
        session = ReplaySession(capture, start=start, end=start + 1_000_000)
        async with session:
            await every_frame(session, None)
        return time.perf_counter() - t0

    times = [asyncio.run(seek(START_NS + d * DAY_NS)) for d in range(1, days)]
    return statistics.median(times) * 1000


def read_rate(root: str, storage: Any = None) -> float:
    from replay.reading.bulk import iter_batches

    t0 = time.perf_counter()
    rows = sum(b.num_rows for b in iter_batches(root, storage=storage))
    return rows / (time.perf_counter() - t0)


def s3_rates(root: Path) -> tuple[float, float, float]:
    """(local rows/s, S3 rows/s, seconds to upload) with a moto server on loopback."""
    sys.path.insert(0, str(HERE.parent))
    from tests.objectstore import S3Server

    with tempfile.TemporaryDirectory() as tmp:
        server = S3Server.start(Path(tmp) / "moto.log")
        try:
            t0 = time.perf_counter()
            uri = server.upload(root, server.new_root("bench"))
            upload_s = time.perf_counter() - t0
            local = read_rate(str(root))
            remote = read_rate(uri, server.options)
        finally:
            server.stop()
    return local, remote, upload_s


def main() -> None:
    if "--build" in sys.argv:
        i = sys.argv.index("--build")
        build(Path(sys.argv[i + 3]), int(sys.argv[i + 1]), int(sys.argv[i + 2]))  # N DAYS ROOT
        return
    n = int(sys.argv[sys.argv.index("--frames") + 1]) if "--frames" in sys.argv else 1_000_000
    days = int(sys.argv[sys.argv.index("--days") + 1]) if "--days" in sys.argv else 4
    root = capture_root(n, days)
    from replay.reading.capture import Capture

    t0 = time.perf_counter()
    capture = Capture(root)
    index_ms = (time.perf_counter() - t0) * 1000
    best = timings(capture, repeats=2)
    assert len({frames for _, frames, _ in best.values()}) == 1, best
    (inline_s, frames, shards), (pool_s, _, _) = best["inline"], best["pool"]
    one_s, two_s = best["1 worker"][0], best["2 workers"][0]
    start_ms = shard_start_ms(capture, days)
    local, remote, upload_s = s3_rates(root)
    size_mb = sum(p.stat().st_size for p in root.rglob("*.parquet")) / 1e6
    files = sum(1 for _ in root.rglob("*.parquet"))
    emit(
        [
            Metric("in-process, shards one after another", frames / inline_s, "frames/s"),
            Metric(
                "ceiling: 2-process pool of the same shards, no Dask",
                frames / pool_s,
                "frames/s",
                baseline="in-process, shards one after another",
            ),
            Metric(
                "1 worker: frames/s",
                frames / one_s,
                "frames/s",
                baseline="in-process, shards one after another",
            ),
            Metric(
                "2 workers: frames/s",
                frames / two_s,
                "frames/s",
                baseline="1 worker: frames/s",
                target="ratio >= 1.6",
            ),
            Metric("1 worker: shards/s", shards / one_s, "shards/s"),
            Metric(
                "2 workers: shards/s", shards / two_s, "shards/s", baseline="1 worker: shards/s"
            ),
            Metric(
                "capture index (listing + footers), once per backtest",
                index_ms,
                "ms",
                higher_is_better=False,
            ),
            Metric(
                "one shard's start: checkpoint restore + fast-forward",
                start_ms,
                "ms",
                higher_is_better=False,
            ),
            Metric("local read: iter_batches, every column", local, "rows/s"),
            Metric(
                "S3 read (moto on loopback): iter_batches, every column",
                remote,
                "rows/s",
                baseline="local read: iter_batches, every column",
            ),
        ],
        notes=(
            f"{n:,} frames over {days} UTC days ({size_mb:.0f} MB in {files} files), "
            f"{shards} day shards, checkpoints every {CHECKPOINT_S / 60:.0f} min; cluster "
            f"start-up excluded; upload to S3 {upload_s:.1f} s."
        ),
    )


if __name__ == "__main__":
    main()
