"""The report's per-market section: best YES bid, ask and mid over time, trades, and
the intervals when the book was not valid.

Quotes and trades come from the research datasets (`replay.datasets.table`, "quotes"
and "trades": the built dataset when it is fresh, else derived for the range on the
fly), so the report draws the book by the same rules as every other reader. Each
market is downsampled in DuckDB to bounded sizes: the last quote per time bucket
(`QUOTE_POINTS` buckets over the window), every trade up to `TRADE_POINTS` (past that,
one point per bucket and taker side at the VWAP with the summed count), and at most
`MAX_INVALID` invalid intervals. Without `--market`, the `DEFAULT_MARKETS` markets with
the most book and trade frames in the window are shown: `choose` picks them, `fetch`
reads the datasets (the report's longest step when they are not built: `gather_report`
runs it in a thread beside the SQL sections), `summarise` downsamples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import duckdb
import pyarrow as pa

from replay.report.window import Window
from schemas.errors import ConfigError
from schemas.storage import StorageOptions

__all__ = ["DEFAULT_MARKETS", "QUOTE_POINTS", "TRADE_POINTS", "choose", "fetch", "summarise"]

DEFAULT_MARKETS: Final = 10
QUOTE_POINTS: Final = 1000
TRADE_POINTS: Final = 1500
MAX_INVALID: Final = 300


def choose(
    con: duckdb.DuckDBPyConnection, window: Window, wanted: Sequence[str] | None
) -> dict[str, Any]:
    """{"chosen": [...], "held": n, "note": ..., "data": {}}: the markets to draw.

    Raises:
        ConfigError: a market asked for has no book or trade data in the window.
    """
    held = dict(
        con.execute(
            "SELECT market_ticker, count(*) FROM frames WHERE market_ticker IS NOT NULL "
            f"AND channel IN ('orderbook_delta', 'trade') AND {window.where()} "
            "GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    )
    if wanted:
        missing = sorted(set(wanted) - held.keys())
        if missing:
            shown = ", ".join(list(held)[:12]) or "none"
            raise ConfigError("--market", f"no book or trade data for {', '.join(missing)} in "
                              f"the range; markets with data: {shown}")  # fmt: skip
        chosen = list(dict.fromkeys(wanted))
        note = ""
    else:
        chosen = list(held)[:DEFAULT_MARKETS]
        note = (
            f"the {len(chosen)} most active of {len(held)} markets; choose others with --market"
            if len(held) > len(chosen) else ""
        )  # fmt: skip
    return {"chosen": chosen, "held": len(held), "note": note, "data": {}}


def summarise(
    con: duckdb.DuckDBPyConnection,
    window: Window,
    chosen: dict[str, Any],
    quotes: pa.Table,
    trades: pa.Table,
) -> dict[str, Any]:
    """`chosen` with each market's downsampled quotes, invalid intervals and trades."""
    out = dict(chosen, source="datasets", data={})
    con.register("report_quotes", quotes)
    con.register("report_trades", trades)
    try:
        for m in chosen["chosen"]:
            out["data"][m] = _one(con, window, m)
    finally:
        con.unregister("report_quotes")
        con.unregister("report_trades")
    return out


def fetch(
    root: str, window: Window, chosen: list[str], storage: StorageOptions | None
) -> tuple[pa.Table, pa.Table]:
    """The quotes and trades datasets of the chosen markets over the window (built, or
    derived on the fly: `replay.datasets.table` decides). Safe to run in a thread: it
    opens its own readers and touches no connection of the caller's."""
    from replay.datasets.api import table

    kw: dict[str, Any] = {"start": window.start_ns, "end": window.end_ns, "markets": chosen}
    return table(root, "quotes", storage=storage, **kw), table(
        root, "trades", storage=storage, **kw
    )


def _one(con: duckdb.DuckDBPyConnection, window: Window, market: str) -> dict[str, Any]:
    step = max(1, math.ceil((window.end_ns - window.start_ns) / QUOTE_POINTS))
    m = market.replace("'", "''")
    quotes = con.execute(
        "SELECT max(recv_ns // 1000) / 1e3, arg_max(bid::DOUBLE, recv_ns), "
        "arg_max(ask::DOUBLE, recv_ns), "
        f"arg_max(mid::DOUBLE, recv_ns) FROM report_quotes WHERE market = '{m}' "
        f"GROUP BY (recv_ns - {window.start_ns}) // {step} ORDER BY 1"
    ).fetchall()
    invalid = con.execute(
        f"""SELECT min(recv_ns // 1000) / 1e3, max(next_ns // 1000) / 1e3 FROM (
            SELECT recv_ns, valid, lead(recv_ns) OVER w AS next_ns,
                sum(CASE WHEN valid THEN 1 ELSE 0 END) OVER (w ROWS UNBOUNDED PRECEDING) AS grp
            FROM report_quotes WHERE market = '{m}' WINDOW w AS (ORDER BY recv_ns))
        WHERE NOT valid GROUP BY grp ORDER BY 1 LIMIT {MAX_INVALID}"""
    ).fetchall()
    ((n_trades,),) = con.execute(
        f"SELECT count(*) FROM report_trades WHERE market = '{m}'"
    ).fetchall()
    if n_trades <= TRADE_POINTS:
        sql = (f"SELECT (recv_ns // 1000) / 1e3, yes_price::DOUBLE, count::DOUBLE, taker_side, "
               f"valid FROM report_trades WHERE market = '{m}' ORDER BY recv_ns")  # fmt: skip
    else:
        tstep = max(1, math.ceil((window.end_ns - window.start_ns) / (TRADE_POINTS // 2)))
        sql = (f"SELECT min(recv_ns // 1000) / 1e3, sum(yes_price::DOUBLE * count::DOUBLE) / "
               f"sum(count::DOUBLE), sum(count::DOUBLE), taker_side, bool_and(valid) "
               "FROM report_trades "
               f"WHERE market = '{m}' GROUP BY (recv_ns - {window.start_ns}) // {tstep}, "
               "taker_side ORDER BY 1")  # fmt: skip
    trades = con.execute(sql).fetchall()
    end_ms = window.end_ms
    return {
        "t": [round(q[0]) for q in quotes],  # the bucket's last quote, to the ms
        "bid": [_price(q[1]) for q in quotes],
        "ask": [_price(q[2]) for q in quotes],
        "mid": [_price(q[3], 5) for q in quotes],
        "invalid": [[a, b if b is not None else end_ms] for a, b in invalid],
        "trades": {
            "t": [round(r[0], 1) for r in trades],
            "price": [_price(r[1]) for r in trades],
            "count": [round(r[2], 2) for r in trades],
            "side": [r[3] for r in trades],
            "valid": [bool(r[4]) for r in trades],
            "total": int(n_trades),
            "bucketed": n_trades > TRADE_POINTS,
        },
    }


def _price(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(value, places)
