"""Backtests over a capture, spread over processes or machines with Dask distributed.

This module owns a backtest's run: its shards planned over a capture, handed to Dask
distributed (a local cluster of worker processes by default, or an existing cluster
by its scheduler address), and their results put back together. What a shard is and
how one runs is `replay.backtest.shards`. The project writes no cluster code of its own.

* **Shards**: the time range is cut on a UTC grid of a given width (a day by default),
  optionally also by market group; a shard is `[start, end)` on the replay's clock
  (`replay.reading.capture.merge_key`), so every record belongs to exactly one time slice.
* **One shard** is an ordinary `ReplaySession(root, start, end, markets=group)`: books
  at the shard's start are seeded from the latest checkpoint before it and
  fast-forwarded (the replay seek), so they are what a full replay had at that instant.
  The capture's index (listing and footers) is built once and shipped to the workers.
* **The strategy** is called once per shard, on a worker:
  - a function (async or not) `strategy(session, shard)` that subscribes, consumes
    the session to its end (`async for`, or `await session.run_forever()`) and returns
    its result; or
  - a class: `strategy(session, shard)` registers callbacks or subscriptions in its
    constructor, the session runs to its end, then `instance.result()` is the result.
  Give it as an object or as `"package.module:name"` / `"path/to/file.py:name"` (a
  file's code travels with the tasks, so remote workers need not have it).
* **Results** come back in shard order (time, then market group) and go through the
  reducer (default: the list of shard results). A shard whose strategy raises is
  reported with its time range and traceback; the others still run. A worker that dies
  mid-shard is replaced and the shard runs again (Dask's own retries).
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
import pickle
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replay.backtest.shards import (
    Shard,
    ShardOutcome,
    load_callable,
    market_groups_of,
    parse_width,
    plan_shards,
    run_shard,
)
from replay.reading.capture import Capture
from replay.reading.session import to_ns
from schemas.errors import ConfigError
from schemas.storage import StorageOptions

__all__ = [
    "BacktestResult",
    "Shard",
    "ShardOutcome",
    "dask_client",
    "load_callable",
    "require_dask",
    "run",
    "run_shard",
]


@dataclass(slots=True)
class BacktestResult:
    """The combined result (`value`) and every shard's outcome, in shard order."""

    value: Any
    shards: list[ShardOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[ShardOutcome]:
        return [s for s in self.shards if not s.ok]

    @property
    def ok(self) -> bool:
        return not self.failed


# ------------------------------------------------------------------ the whole run


def run(
    strategy: Any,
    root: str | Path | Capture,
    start: dt.datetime | str | int | None = None,
    end: dt.datetime | str | int | None = None,
    shard: str | int | dt.timedelta = "1d",
    client: Any = None,
    *,
    reducer: Callable[[list[Any]], Any] | None = None,
    channels: Sequence[str] | None = None,
    market_groups: int | Sequence[Sequence[str]] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    storage: StorageOptions | None = None,
    progress: bool = False,
    snapshots: bool = False,
) -> BacktestResult:
    """Run `strategy` over a capture, one shard at a time on Dask workers.

    Args:
        strategy: a function `strategy(session, shard)` or a class (see the module
            docstring), or `"module:name"` / `"file.py:name"` naming one.
        root: the capture root (a directory or `s3://bucket/prefix`), or a `Capture`.
        start, end: the time range (default: the whole capture).
        shard: the width of a time shard: `1d` (UTC days), `6h`, ..., a timedelta.
        client: a `distributed.Client` to run on (kept open). Default: a local cluster
            of `workers` processes (or the cluster at `scheduler`), closed at the end.
        reducer: combines the shard results (a list, in shard order); default: the list.
        channels: read only these channels (default: what the strategy subscribes to).
        market_groups: also split by market: a number of groups (by a stable hash), or
            the groups themselves.
        workers: worker processes of the local cluster (default: one per core); 0 runs
            the shards one after another in this process, without Dask.
        scheduler: the address of an existing cluster (`tcp://host:8786`).
        storage: endpoint, region and credentials of an object-store root.
        progress: show a progress bar over shards on stderr.
        snapshots: in each shard, consumers of raw frames, models or structs of
            `orderbook_delta` begin each market with a snapshot frame of its book at the
            shard's start (`ReplaySession(snapshots=True)`); book consumers always get
            the book there.

    Returns:
        The combined value and every shard's outcome; failed shards carry their time
        range and traceback (`result.failed`), and their results are left out.

    Raises:
        ConfigError: a bad strategy, range, width or market group.
    """
    if isinstance(strategy, str):
        strategy = load_callable(strategy)
    if not callable(strategy):
        raise ConfigError("strategy", f"{strategy!r} is neither a function nor a class")
    capture = root if isinstance(root, Capture) else Capture(root, storage=storage)
    shards = _plan(capture, start, end, parse_width(shard), channels, market_groups)
    reduce = reducer if reducer is not None else list
    if workers == 0 and client is None and scheduler is None:
        outcomes = []
        with _progress(len(shards), progress) as advance:
            for s in shards:
                outcomes.append(run_shard(strategy, capture, s, channels=channels,
                                          snapshots=snapshots))  # fmt: skip
                advance(outcomes[-1])
    else:
        with dask_client(client, workers, scheduler) as dask:
            outcomes = _distribute(dask, strategy, capture, shards, channels, snapshots,
                                   progress)  # fmt: skip
    values = [o.value for o in outcomes if o.ok]
    return BacktestResult(reduce(values), outcomes)


def _plan(
    capture: Capture,
    start: Any,
    end: Any,
    width_ns: int,
    channels: Sequence[str] | None,
    market_groups: int | Sequence[Sequence[str]] | None,
) -> list[Shard]:
    span = capture.time_range()
    try:
        lo, hi = to_ns(start, "start"), to_ns(end, "end")
    except ValueError as exc:
        field_name, _, problem = str(exc).partition(": ")
        raise ConfigError(field_name, problem, "use ISO-8601, like 2026-11-21T08:00:00Z") from None
    if span is None:
        raise ConfigError("ROOT", f"{capture.uri} holds no captured frames")
    lo = span[0] if lo is None else lo
    hi = span[1] + 1 if hi is None else hi  # the last record included
    if hi <= lo:
        raise ConfigError("end", "the time range is empty", "give an end after the start")
    groups: Sequence[Sequence[str]] | None
    if isinstance(market_groups, int):
        if market_groups < 1:
            raise ConfigError("market_groups", f"must be at least 1, got {market_groups}")
        wanted = channels or capture.data_channels
        held = set().union(*(capture.markets(c) for c in wanted))
        groups = market_groups_of(held, market_groups) if market_groups > 1 else None
    else:
        groups = market_groups
    return plan_shards(lo, hi, width_ns, groups)


def require_dask(in_process: str = "give --workers 0") -> None:
    """Raise `ConfigError` (naming the flags and the extra) where Dask distributed is not
    installed; callers check before they write anything."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--workers / --scheduler", "Dask distributed is not installed",
            f"pip install 'kalshi-tape[dask]', or {in_process} to run in this process",
        ) from None  # fmt: skip


@contextmanager
def dask_client(
    client: Any, workers: int | None, scheduler: str | None, *,
    in_process: str = "give --workers 0",
) -> Iterator[Any]:  # fmt: skip
    """The Dask client to use: the caller's, one to `scheduler`, or a local cluster's
    (backtests and the datasets' day shards). `in_process` says how the caller's user
    runs without Dask, for the error where Dask is not installed."""
    if client is not None:
        yield client
        return
    require_dask(in_process)
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            dask = Client(scheduler, timeout=10)
        except (OSError, TimeoutError) as exc:
            raise ConfigError("--scheduler", f"cannot reach {scheduler}: {exc}") from None
        try:
            yield dask
        finally:
            dask.close()
        return
    # No dashboard; the scheduler's HTTP routes (health, metrics) on any free port, so
    # that a taken 8787 (another cluster) is no warning on the user's stderr.
    cluster = LocalCluster(
        n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
        dashboard_address=None, silence_logs=logging.ERROR,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
    )  # fmt: skip
    dask = Client(cluster)
    try:
        pids = set(dask.run(os.getpid).values())  # the worker processes: our children
        yield dask
    except KeyboardInterrupt:  # Ctrl+C or SIGTERM: stop now, not when the shards finish
        _kill_children(pids)
        raise
    finally:
        dask.close()
        cluster.close()


def _kill_children(pids: set[int]) -> None:
    """Kill the local cluster's worker processes (our own children) at once.

    Closing the cluster asks each busy worker to stop and waits seconds for it (its
    shard is user code that cannot be interrupted); an interrupted backtest wants
    none of their results.
    """
    # The nannies (threads of this process) would say they restart the workers, and the
    # scheduler that their data is lost: both true, and nothing a stopped command's user
    # needs beside its one line.
    for name in ("distributed", "distributed.nanny", "distributed.scheduler"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for child in multiprocessing.active_children():
        if child.pid in pids:
            child.kill()


def _distribute(
    dask: Any,
    strategy: Any,
    capture: Capture,
    shards: list[Shard],
    channels: Sequence[str] | None,
    snapshots: bool,
    progress: bool,
) -> list[ShardOutcome]:
    import cloudpickle
    from distributed import as_completed

    # The index travels once per worker; a key of its own, whatever an earlier run left.
    [index] = dask.scatter([capture], broadcast=True, hash=False)
    # Pickled here, so that a strategy from a file goes by value (its code with it) even
    # inside the task's arguments, where Dask's own pickling would name it by reference.
    payload = cloudpickle.dumps(strategy)
    run_id = uuid.uuid4().hex[:8]
    futures = {
        dask.submit(_run_pickled, payload, index, s, channels, snapshots, pure=False,
                    key=f"kalshi-tape-shard-{run_id}-{s.index:05d}"): s
        for s in shards
    }  # fmt: skip
    outcomes: dict[int, ShardOutcome] = {}
    with _progress(len(shards), progress) as advance:
        for future in as_completed(futures):
            s = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # the task itself failed (a worker kept dying...)
                tb = "".join(traceback.format_exception(exc))
                outcome = ShardOutcome(s, None, tb)
            outcomes[s.index] = outcome
            advance(outcome)
    return [outcomes[s.index] for s in shards]


def _run_pickled(
    payload: bytes, capture: Capture, shard: Shard, channels: Sequence[str] | None,
    snapshots: bool,
) -> ShardOutcome:  # fmt: skip
    """A Dask task: the strategy as `_distribute` pickled it, then `run_shard`."""
    return run_shard(pickle.loads(payload), capture, shard, channels=channels,
                     snapshots=snapshots)  # fmt: skip


@contextmanager
def _progress(total: int, show: bool) -> Iterator[Callable[[ShardOutcome], None]]:
    if not show:
        yield lambda outcome: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("backtest"), BarColumn(), MofNCompleteColumn(), TextColumn("shards"),
        TextColumn("{task.fields[failed]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=False,
    ) as bar:  # fmt: skip
        task = bar.add_task("backtest", total=total, failed="")
        failed = 0

        def advance(outcome: ShardOutcome) -> None:
            nonlocal failed
            failed += not outcome.ok
            bar.update(task, advance=1, failed=f"{failed} failed" if failed else "")

        yield advance
