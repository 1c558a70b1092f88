"""Backtests at scale: a strategy over shards of a capture, on a Dask cluster.

`run(strategy, root, start, end, shard="1d", client=None)` splits the time range
into shards (`shards`: by width, optionally by market group), replays each through
a `replay.reading.ReplaySession` with books seeded at the shard's start, and
combines the shards' results in time order (`runner`); `cli` is
`kalshi-tape backtest`. Dask loads only when a cluster is used.
"""

from schemas.lazy import lazy_exports

_EXPORTS = {
    "run": "replay.backtest.runner",
    "BacktestResult": "replay.backtest.runner",
    "Shard": "replay.backtest.shards",
    "ShardOutcome": "replay.backtest.shards",
    "plan_shards": "replay.backtest.shards",
    "load_callable": "replay.backtest.shards",
    "run_shard": "replay.backtest.shards",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
