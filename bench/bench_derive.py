"""Deriving research datasets, against the same datasets built through ReplaySession.

For each dataset (book_changes, quotes, trades, depth:10@1s, bars:1m) `derive` writes it
from the 1M-frame capture of bench_replay (read, decode, books, write to Parquet), and
its rate in capture frames per second is reported against the same dataset built in the
same run by an ordinary consumer of `ReplaySession` (one attached book consumer for every
market and a raw trade consumer, rows made from what they receive: the fastest
ReplaySession route). Rates divide by the frames the capture holds, counted from its
files. Then day shards on a local Dask cluster of 2 workers against 1 (a 2-day capture
with checkpoints, bench_backtest's), and the peak RSS of `kalshi-tape derive` in a fresh
process over bench_replay's capture of `--rss-frames` (default 10M; the recorder's write
path, 500 markets).

    python bench/bench_derive.py [--frames N] [--rss-frames N]
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import Metric, capture_frames, emit  # noqa: E402

DATASETS = ("book_changes", "quotes", "trades", "depth:10@1s", "bars:1m")


def _arg(name: str, default: int) -> int:
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def derive_rate(root: Path, name: str, frames: int) -> float:
    from replay.datasets import derive

    out = Path(tempfile.mkdtemp(prefix="bench-derive-"))
    try:
        t0 = time.perf_counter()
        derive(root, to=out, datasets=name)
        return frames / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(out, ignore_errors=True)


async def _replay_rows(root: Path, name: str, channels: list[str]) -> int:
    """The dataset built from what ReplaySession delivers (reading `channels`, those the
    derive reads for it); returns the rows made."""
    from replay import ReplaySession
    from stream.subscriptions import Delivery

    rows: list[tuple[Any, ...]] = []
    async with ReplaySession(root, channels=channels) as session:
        if name == "trades":
            sub = await session.subscribe("trade", raw=True, maxsize=1 << 16)
            import json

            async for frame in sub:
                msg = json.loads(frame.raw)["msg"]
                rows.append(
                    (
                        frame.recv_ns,
                        frame.seq,
                        msg["trade_id"],
                        frame.market_ticker,
                        Decimal(msg["yes_price_dollars"]),
                        Decimal(msg["count_fp"]),
                    )
                )
            return len(rows)
        sub = await session._subscribe("orderbook_delta", {}, Delivery.BOOK, None, 1 << 16,
                                       None, attach=True)  # fmt: skip
        last: dict[str, Any] = {}
        async for snap in sub:
            if name == "quotes":
                top = (snap.valid, snap.best_yes_bid, snap.best_yes_ask)
                if last.get(snap.market) != top:
                    last[snap.market] = top
                    rows.append((snap.recv_ns, snap.market, *top, snap.spread, snap.mid))
            else:  # book_changes (and what depth and bars start from): the changed levels
                before = last.get(snap.market, ({}, {}))
                now = (dict(snap.yes_units), dict(snap.no_units))
                for side, old, new in (("yes", before[0], now[0]), ("no", before[1], now[1])):
                    for price in old.keys() | new.keys():
                        if old.get(price) != new.get(price):
                            rows.append((snap.recv_ns, snap.market, side, price, new.get(price)))
                last[snap.market] = now
    return len(rows)


def replay_rate(root: Path, name: str, frames: int) -> float:
    """Each route reads the channels the derive reads for the dataset: the trade channel
    for trades, the book channel for book datasets, both for bars."""
    channels = {"trades": ["trade"], "bars": ["orderbook_delta", "trade"]}.get(
        name.split(":")[0], ["orderbook_delta"]
    )
    t0 = time.perf_counter()
    asyncio.run(_replay_rows(root, "book_changes" if name.startswith(("depth", "bars"))
                             else name, channels))  # fmt: skip
    return frames / (time.perf_counter() - t0)


def dask_seconds(root: Path, workers: int) -> float:
    from distributed import Client, LocalCluster

    from replay.datasets import derive

    out = Path(tempfile.mkdtemp(prefix="bench-derive-dask-"))
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:  # fmt: skip
        client.run(lambda: __import__("replay.datasets.kernel"))
        derive(root, to=out / "warm", datasets="quotes", scheduler=cluster.scheduler_address)
        t0 = time.perf_counter()
        derive(root, to=out / "run", datasets="quotes,trades,bars:1m",
               scheduler=cluster.scheduler_address)  # fmt: skip
        seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def rss_of_derive(root: Path) -> float:
    """Peak RSS (MiB) of `kalshi-tape derive ROOT` (the default datasets) in a fresh
    process, as a user runs it."""
    out = Path(tempfile.mkdtemp(prefix="bench-derive-rss-"))
    code = (
        "import resource, subprocess, sys;"
        f"subprocess.run([{str(Path(sys.executable).parent / 'kalshi-tape')!r}, 'derive',"
        f" {str(root)!r}, '--to', {str(out)!r}], check=True, capture_output=True);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    try:
        done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                              text=True, cwd=HERE.parent)  # fmt: skip
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    import bench_backtest
    import bench_replay

    nominal = _arg("--frames", 1_000_000)
    root = bench_replay.capture_root(nominal)
    frames = capture_frames(root)  # what the capture holds, counted
    # Both routes warm for every dataset (each route's code paths, imports and numba
    # kernels used once: a dataset's first derive in a process is slower, the trades'
    # 0.26-0.36 s against 0.21 after) and the OS's page cache warm, so each rate below is
    # the route's own work.
    sample = HERE.parent / "examples" / "sample"
    for name in DATASETS:
        derive_rate(sample, name, 1)
        replay_rate(sample, name, 1)
    derive_rate(root, "quotes", frames)
    metrics = []
    for name in DATASETS:
        mine = derive_rate(root, name, frames)
        base = replay_rate(root, name, frames)
        label = name.replace(":", " ")
        metrics += [
            Metric(f"replay session {label}", base, "frames/s"),
            Metric(f"derive {label}", mine, "frames/s", baseline=f"replay session {label}",
                   target="≥ 1M, ≥ 5x"),
        ]  # fmt: skip
    notes = f"{frames:,}-frame capture; {os.cpu_count()} cores, shared"
    if len(os.sched_getaffinity(0)) >= 2:  # two workers on one core would measure nothing
        days = bench_backtest.capture_root(nominal, 2)
        one, two = dask_seconds(days, 1), dask_seconds(days, 2)
        metrics += [
            Metric("dask 1 worker, 2 days", one, "s", higher_is_better=False),
            Metric("dask 2 workers, 2 days", two, "s", higher_is_better=False,
                   baseline="dask 1 worker, 2 days"),
        ]  # fmt: skip
    else:
        notes += "; pinned to one core, so no Dask rows"
    # A day written by the recorder's own write path (its row groups: 64k rows or 16 MiB),
    # the capture bench_replay measures replay's memory on.
    rss_root = bench_replay.capture_root(_arg("--rss-frames", 10_000_000))
    metrics.append(Metric(f"derive peak RSS, {capture_frames(rss_root):,} frames",
                          rss_of_derive(rss_root), "MiB", higher_is_better=False,
                          target="≤ 200 MiB"))  # fmt: skip
    emit(metrics, notes=notes)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    main()
