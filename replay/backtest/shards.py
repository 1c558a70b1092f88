"""One shard of a backtest: what it is, how the strategy is found, and how it runs.

This module owns the unit of work of `replay.backtest.runner`: a `Shard` (a time slice
`[start_ns, end_ns)` on the replay's clock, `replay.reading.capture.merge_key`, and optionally
a market group), how a range is cut into shards (`plan_shards`, on a UTC grid), how a
strategy named `"module:name"` or `"file.py:name"` is loaded, and `run_shard`: one
ordinary `ReplaySession(capture, start, end, markets=group)` whose books at the start
are seeded by the replay seek (the latest checkpoint before it, fast-forwarded).
A strategy's exception becomes the outcome's traceback, never an exception here. It
imports no Dask: `replay.backtest.runner` hands these to the workers. A width (`1d`)
is read by `replay.backtest.width.parse_width`, which the command line uses alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import importlib
import importlib.util
import inspect
import os
import socket
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from replay.backtest.width import parse_width
from replay.reading.capture import Capture
from replay.reading.session import ReplaySession
from schemas.errors import ConfigError
from schemas.storage import StorageOptions

__all__ = [
    "Shard",
    "ShardOutcome",
    "load_callable",
    "market_groups_of",
    "parse_width",
    "plan_shards",
    "run_shard",
]


@dataclass(frozen=True, slots=True)
class Shard:
    """One unit of work: a time slice `[start_ns, end_ns)`, and a market group or all."""

    index: int
    start_ns: int
    end_ns: int
    markets: tuple[str, ...] | None = None  # None: every market
    group: int = 0

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.start_ns / 1e9, tz=dt.UTC)

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.end_ns / 1e9, tz=dt.UTC)

    @property
    def label(self) -> str:
        """`2026-11-21T00:00:00Z .. 2026-11-22T00:00:00Z` (and the group, if any)."""
        text = f"{_iso(self.start_ns)} .. {_iso(self.end_ns)}"
        return text if self.markets is None else f"{text} (market group {self.group})"


@dataclass(frozen=True, slots=True)
class ShardOutcome:
    """What one shard gave: its result, or the error that ended it, and its figures."""

    shard: Shard
    value: Any = None
    error: str | None = None  # the traceback, when the strategy (or the replay) raised
    records: int = 0  # records the replay fed to the engine (the seek's included)
    seconds: float = 0.0  # wall time on the worker, from the session's start to its end
    worker: str = ""  # host:pid that ran it

    @property
    def ok(self) -> bool:
        return self.error is None


def plan_shards(
    start_ns: int,
    end_ns: int,
    width_ns: int,
    market_groups: Sequence[Sequence[str]] | None = None,
) -> list[Shard]:
    """Cut `[start_ns, end_ns)` at multiples of `width_ns` since the epoch (UTC midnights
    for a day), times each market group; shards in time order, then group order."""
    if end_ns <= start_ns:
        return []
    groups: list[tuple[str, ...] | None] = (
        [tuple(g) for g in market_groups] if market_groups else [None]
    )
    shards: list[Shard] = []
    lo = start_ns
    while lo < end_ns:
        hi = min(end_ns, (lo // width_ns + 1) * width_ns)
        for g, markets in enumerate(groups):
            shards.append(Shard(len(shards), lo, hi, markets, g))
        lo = hi
    return shards


def market_groups_of(markets: Iterable[str], count: int) -> list[list[str]]:
    """`count` groups of markets by a stable hash (the same split on every machine)."""
    groups: list[list[str]] = [[] for _ in range(count)]
    for market in sorted(markets):
        digest = hashlib.blake2b(market.encode(), digest_size=8).digest()
        groups[int.from_bytes(digest, "big") % count].append(market)
    return [g for g in groups if g]


# ------------------------------------------------------------------ the strategy


def load_callable(spec: str, what: str = "strategy") -> Any:
    """The object `"package.module:name"` or `"path/to/file.py:name"` names.

    A file's module is imported under its own name and marked to travel with the tasks
    (cloudpickle by value), so remote workers need not have the file.

    Raises:
        ConfigError: the spec is malformed, or the module or the name does not exist.
    """
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            what, f"{spec!r} is not module:name", "e.g. examples/mid_bars.py:mid_bars"
        )
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            module = _import_file(Path(module_name), what)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(what, f"cannot import {module_name}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(what, f"{module_name} has no {attr!r}") from None


def _import_file(path: Path, what: str) -> ModuleType:
    if not path.is_file():
        raise ConfigError(what, f"no such file: {path}")
    name = (
        "kalshi_tape_user_"
        + hashlib.blake2b(str(path.resolve()).encode(), digest_size=6).hexdigest()
    )
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(what, f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(what, f"{path} failed to import: {exc!r}") from None
    try:  # the module's code is pickled with the tasks: workers need not have the file
        import cloudpickle

        cloudpickle.register_pickle_by_value(module)
    except ImportError:  # no Dask installed: only in-process runs, nothing to pickle
        pass
    return module


async def _drive(strategy: Any, session: ReplaySession, shard: Shard) -> Any:
    if inspect.isclass(strategy):
        instance = strategy(session, shard)
        await session.run_forever()
        return instance.result()
    value = strategy(session, shard)
    if inspect.isawaitable(value):
        value = await value
    return value


# ------------------------------------------------------------------ one shard


def run_shard(
    strategy: Any,
    capture: Capture | str | Path,
    shard: Shard,
    *,
    channels: Sequence[str] | None = None,
    storage: StorageOptions | None = None,
    snapshots: bool = False,
) -> ShardOutcome:
    """Replay one shard through `strategy` in this process (what each Dask task does);
    `snapshots`: `ReplaySession`'s.

    Never raises for the strategy's sake: an exception becomes the outcome's `error`
    (its traceback), so the other shards go on.
    """
    worker = f"{socket.gethostname()}:{os.getpid()}"
    t0 = time.perf_counter()
    records = 0

    async def replay() -> Any:
        nonlocal records
        session = ReplaySession(
            capture if isinstance(capture, Capture) else Capture(capture, storage=storage),
            start=shard.start_ns,
            end=shard.end_ns,
            channels=channels,
            markets=shard.markets,
            snapshots=snapshots,
        )
        try:
            async with session:
                return await _drive(strategy, session, shard)
        finally:
            records = session.source.records

    try:
        value = asyncio.run(replay())
    except Exception:
        return ShardOutcome(shard, None, traceback.format_exc(), records,
                            time.perf_counter() - t0, worker)  # fmt: skip
    return ShardOutcome(shard, value, None, records, time.perf_counter() - t0, worker)


def _iso(ns: int) -> str:
    moment = dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
