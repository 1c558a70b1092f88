"""Deriving research datasets, against the same datasets built through ReplaySession.

For each dataset (book_changes, quotes, trades, depth:10@1s, bars:1m) `derive` writes it
from the 1M-frame capture of bench_replay (read, decode, books, write to Parquet), and
its rate in capture frames per second is reported against the same dataset built in the
same run by an ordinary consumer of `ReplaySession` (one attached book consumer for every
market and a raw trade consumer, rows made from what they receive: the fastest
ReplaySession route): for trades and quotes the derive's rows, every column, written as
the derive writes them; for the book datasets a floor (see `_replay_rows`). Rates divide
by the frames the capture holds, counted from its files; a route that takes under two
seconds is timed five times in a run and its median kept. The same for book_changes,
quotes and trades on that capture received by two redundant feeds (each frame twice: the
frames counted are both feeds'). Then day shards on a local Dask
cluster of 2 workers against 1 (a 2-day capture with checkpoints, bench_backtest's), and
the peak RSS of `kalshi-tape derive` in a fresh process over bench_replay's capture of
`--rss-frames` (default 10M; the recorder's write path, 500 markets).

    python bench/bench_derive.py [--frames N] [--rss-frames N]
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import Metric, capture_frames, emit  # noqa: E402

DATASETS = ("book_changes", "quotes", "trades", "depth:10@1s", "bars:1m")


def _arg(name: str, default: int) -> int:
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


#: The rows each route made for a dataset in its last run (trades and quotes: the same).
ROWS: dict[tuple[str, str], int] = {}


#: A route that takes less than this is timed five times and its median kept: one pass
#: of a tenth of a second (the trades' derive) moved by a third between runs, and the
#: two-feed trades' ratio, whose ReplaySession route (0.9 s) was timed once a run under
#: a 0.5 s threshold, spread from 4.8 to 6.3 between runs.
_SHORT_S = 2.0


def _median_seconds(once: Any) -> float:
    """`once()`'s seconds: one call, or the median of five where it is short."""
    first = once()
    if first >= _SHORT_S:
        return first
    return sorted([first, *(once() for _ in range(4))])[2]


def derive_rate(root: Path, name: str, frames: int) -> float:
    from replay.datasets import derive

    def once() -> float:
        out = Path(tempfile.mkdtemp(prefix="bench-derive-"))
        try:
            t0 = time.perf_counter()
            report = derive(root, to=out, datasets=name)
            seconds = time.perf_counter() - t0
            ROWS["derive", name] = report.rows.get(name, 0)
            return seconds
        finally:
            shutil.rmtree(out, ignore_errors=True)

    return frames / _median_seconds(once)


async def _replay_rows(root: Path, name: str, channels: list[str], out: Path | None) -> int:
    """The dataset built from what ReplaySession delivers (reading `channels`, those the
    derive reads for it) and, with `out`, written there as the derive writes it (its
    schema, its writer's options); returns the rows made.

    trades and quotes are the datasets' every column, `valid` included (but quotes'
    `exchange_ns`, left null: a book consumer never sees `ts_ms`), the same rows as the
    derive's (`main` checks their number), their integers made decimals by the
    datasets' own vectorised helpers: the per-frame loop is the route's own cost.
    book_changes (and depth and bars, which start from them) are a floor: each changed
    level's time, market, side, price and size, kept in memory, not written."""
    from replay import ReplaySession
    from stream.subscriptions import Delivery

    if name == "trades":
        async with ReplaySession(root, channels=channels) as session:
            sub = await session.subscribe("trade", raw=True, maxsize=1 << 16)
            cols: dict[str, list[Any]] = {n: [] for n in _TRADE_FIELDS}
            last: dict[tuple[int, int | None], int | None] = {}
            for_each = [cols[n].append for n in _TRADE_FIELDS]
            (recv_ns, exchange_ns, conn, sid, seq, trade_id, market, yes, no, count,
             taker, valid) = for_each  # fmt: skip
            async for frame in sub:
                msg = json.loads(frame.raw)["msg"]
                recv_ns(frame.recv_ns)
                ts_ms = msg.get("ts_ms")
                exchange_ns(ts_ms * 1_000_000 if ts_ms is not None else None)
                conn(frame.conn)
                sid(frame.sid)
                seq(frame.seq)
                trade_id(msg["trade_id"])
                market(frame.market_ticker)
                yes(_units(msg["yes_price_dollars"], 4))
                no(_units(msg["no_price_dollars"], 4))
                count(_units(msg["count_fp"], 2))
                side = msg.get("taker_side") or msg.get("taker_outcome_side")
                taker(side.lower() if side else None)
                before = last.get((frame.conn, frame.sid))
                valid(before is None or frame.seq == before + 1)
                last[frame.conn, frame.sid] = frame.seq
        if out is not None:
            _write_trades(cols, out)
        return len(cols["recv_ns"])
    rows: list[tuple[Any, ...]] = []
    async with ReplaySession(root, channels=channels) as session:
        sub = await session._subscribe("orderbook_delta", {}, Delivery.BOOK, None, 1 << 16,
                                       None, attach=True)  # fmt: skip
        tops: dict[str, Any] = {}
        books: dict[str, Any] = {}
        async for snap in sub:
            if name == "quotes":
                bid, ask = snap.best_yes_bid_units, snap.best_yes_ask_units
                top = (snap.valid, bid, ask)
                if tops.get(snap.market) != top:
                    tops[snap.market] = top
                    rows.append((snap.recv_ns, snap.conn, snap.market,
                                 *(bid if bid is not None else (-1, -1)),
                                 *(ask if ask is not None else (-1, -1)),
                                 1 if snap.valid else 0))  # fmt: skip
            else:  # what book_changes, depth and bars start from: the changed levels
                before = books.get(snap.market, ({}, {}))
                now = (dict(snap.yes_units), dict(snap.no_units))
                for side, old, new in (("yes", before[0], now[0]), ("no", before[1], now[1])):
                    for price in old.keys() | new.keys():
                        if old.get(price) != new.get(price):
                            rows.append((snap.recv_ns, snap.market, side, price, new.get(price)))
                books[snap.market] = now
    if out is not None:
        _write_quotes(rows, out)
    return len(rows)


_TRADE_FIELDS = ("recv_ns", "exchange_ns", "conn", "sid", "seq", "trade_id", "market",
                 "yes_price", "no_price", "count", "taker_side", "valid")  # fmt: skip


def _units(text: str, places: int) -> int:
    """A wire decimal string in integer units ("0.5600", 4 -> 5600)."""
    whole, _, frac = text.partition(".")
    return int(whole + frac.ljust(places, "0")[:places])


def _write(table: Any, out: Path) -> None:
    import pyarrow.parquet as pq

    from replay.datasets.sinks import _writer_options

    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "part-0.parquet", **_writer_options(table.schema))


def _write_trades(cols: dict[str, list[Any]], out: Path) -> None:
    import numpy as np
    import pyarrow as pa

    from replay.datasets import schema

    n = len(cols["recv_ns"])
    yes = np.array(cols["yes_price"], np.int64)
    count = np.array(cols["count"], np.int64)
    arrays = {
        "recv_ns": pa.array(cols["recv_ns"], pa.int64()),
        "exchange_ns": pa.array(cols["exchange_ns"], pa.int64()),
        "run_id": pa.array([_RUN] * n, pa.string()),
        "conn": pa.array(cols["conn"], pa.int32()),
        "sid": pa.array(cols["sid"], pa.int32()),
        "seq": pa.array(cols["seq"], pa.int64()),
        "trade_id": pa.array(cols["trade_id"], pa.string()),
        "market": pa.array(cols["market"], pa.string()),
        "yes_price": schema.decimals(yes, schema.PRICE),
        "no_price": schema.decimals(np.array(cols["no_price"], np.int64), schema.PRICE),
        "count": schema.decimals(count, schema.SIZE),
        "taker_side": pa.array(cols["taker_side"], pa.string()),
        "valid": pa.array(cols["valid"], pa.bool_()),
        "yes_price_f": pa.array(yes / 1e4),
        "count_f": pa.array(count / 1e2),
    }
    _write(pa.Table.from_pydict(arrays, schema=schema.TRADES), out)


def _write_quotes(rows: list[tuple[Any, ...]], out: Path) -> None:
    import numpy as np
    import pyarrow as pa

    from replay.datasets import schema

    q = np.array([r[3:] for r in rows], np.int64).reshape(-1, 5)
    arrays = {"recv_ns": pa.array([r[0] for r in rows], pa.int64()),
              "exchange_ns": pa.nulls(len(rows), pa.int64()),
              "run_id": pa.array([_RUN] * len(rows), pa.string()),
              "conn": pa.array([r[1] for r in rows], pa.int32()),
              "market": pa.array([r[2] for r in rows], pa.string()),
              **schema.quote_columns(q)}  # fmt: skip
    _write(pa.Table.from_pydict(arrays, schema=schema.QUOTES), out)


#: The run every row names (the capture's run id is a column of the datasets; one run).
_RUN = "bench"


def replay_rate(root: Path, name: str, frames: int) -> float:
    """Each route reads the channels the derive reads for the dataset: the trade channel
    for trades, the book channel for book datasets, both for bars."""
    channels = {"trades": ["trade"], "bars": ["orderbook_delta", "trade"]}.get(
        name.split(":")[0], ["orderbook_delta"]
    )
    start = name.startswith(("depth", "bars"))

    def once() -> float:
        out = (Path(tempfile.mkdtemp(prefix="bench-derive-replay-"))
               if name in ("trades", "quotes") else None)  # fmt: skip
        try:
            t0 = time.perf_counter()
            rows = asyncio.run(_replay_rows(root, "book_changes" if start else name, channels,
                                            out))  # fmt: skip
            seconds = time.perf_counter() - t0
            ROWS["replay", name] = rows
            return seconds
        finally:
            if out is not None:
                shutil.rmtree(out, ignore_errors=True)

    return frames / _median_seconds(once)


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
        if name in ("trades", "quotes") and ROWS["derive", name] != ROWS["replay", name]:
            raise SystemExit(f"{name}: the routes made different rows: {ROWS}")
        label = name.replace(":", " ")
        metrics += [
            Metric(f"replay session {label}", base, "frames/s"),
            Metric(f"derive {label}", mine, "frames/s", baseline=f"replay session {label}",
                   target="≥ 1M, ≥ 5x"),
        ]  # fmt: skip
    # Two redundant feeds (bench_replay's capture with every frame on both feeds): the
    # derive arbitrates as the engine does, each feed's book in the kernel.
    two = bench_replay.capture_root(nominal, 2)
    two_frames = capture_frames(two)
    for name in ("quotes", "trades"):  # the arbitrated paths' kernels loaded (or compiled)
        derive_rate(two, name, two_frames)
    for name in ("book_changes", "quotes", "trades"):
        mine = derive_rate(two, name, two_frames)
        base = replay_rate(two, name, two_frames)
        if name in ("trades", "quotes") and ROWS["derive", name] != ROWS["replay", name]:
            raise SystemExit(f"two feeds, {name}: the routes made different rows: {ROWS}")
        metrics += [
            Metric(f"two feeds: replay session {name}", base, "frames/s"),
            Metric(f"two feeds: derive {name}", mine, "frames/s",
                   baseline=f"two feeds: replay session {name}", target="≥ 1M, ≥ 5x"),
        ]  # fmt: skip
    notes = (f"{frames:,}-frame capture ({two_frames:,} frames with two feeds);"
             f" {os.cpu_count()} cores, shared; replay session:"
             " trades and quotes the same rows, every column, written; the book datasets"
             " the changed levels in memory (a floor)")  # fmt: skip
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
