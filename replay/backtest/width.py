"""A shard's width in time (`1d`, `6h`, `30m`), in nanoseconds.

Standard library only, so that `kalshi-tape backtest` checks `--slice` while it parses
its flags, before the capture reader (pyarrow) loads; `replay.backtest.shards` cuts a
range at multiples of it.
"""

from __future__ import annotations

import datetime as dt

from schemas.errors import ConfigError

__all__ = ["parse_width"]

_UNITS_NS = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86_400 * 10**9}


def parse_width(width: str | int | dt.timedelta) -> int:
    """A shard width (`1d`, `6h`, `30m`, a timedelta, or ns) in nanoseconds.

    Raises:
        ConfigError: not a positive width.
    """
    if isinstance(width, dt.timedelta):
        ns = int(width.total_seconds() * 1e9)
    elif isinstance(width, int):
        ns = width
    else:
        text = width.strip().lower()
        unit = _UNITS_NS.get(text[-1:])
        try:
            ns = int(float(text[:-1]) * unit) if unit else int(float(text) * 1e9)
        except ValueError:
            ns = 0
    if ns <= 0:
        raise ConfigError("shard", f"{width!r} is not a shard width", "e.g. 1d, 6h or 30m")
    return ns
