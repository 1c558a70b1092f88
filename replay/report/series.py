"""The report's time series: frames per second per channel, and receive latency.

* `rates`: frames received per second on each channel, per bucket of the window
  (`Window.bucket_ns`), with empty buckets as zeros so a disconnect shows as a drop.
* `latency`: the receive time minus the exchange's own timestamp (`msg.ts_ms`, in ms,
  on trades, tickers, book deltas and the other messages that carry it), per channel:
  quantiles, a histogram over shared bins (from the 0.1st to the 99.9th percentile;
  values beyond are counted in the end bins) and p50 / p99 per bucket. At most
  `LATENCY_SAMPLE` frames are parsed: past that, every k-th frame by `idx`.

Everything is aggregated in DuckDB; what comes out is bounded by the bucket count.
It reads the `frames` view of `replay.sql` only.
"""

from __future__ import annotations

import math
from typing import Any, Final

import duckdb

from replay.report.window import Window

__all__ = ["HISTOGRAM_BINS", "LATENCY_SAMPLE", "latency", "rates"]

#: The most frames whose JSON is parsed for latency.
LATENCY_SAMPLE: Final = 500_000  # plenty for p99 and an 80-bin histogram
HISTOGRAM_BINS: Final = 80
#: Channels that are the recorder's own records, not the wire's.
_OWN: Final = "('_session', '_checkpoint', '_control', '_unknown')"


def rates(con: duckdb.DuckDBPyConnection, window: Window) -> dict[str, Any]:
    """{bucket_s, t (epoch ms of each bucket), channels: {channel: frames/s per bucket}}."""
    step = window.bucket_ns
    n = max(1, math.ceil((window.end_ns - window.start_ns) / step))
    rows = con.execute(
        f"SELECT channel, (recv_ns - {window.start_ns}) // {step} AS b, count(*) FROM frames "
        f"WHERE dir = 'in' AND channel NOT IN ('_session', '_checkpoint') AND {window.where()} "
        "GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    per_s = step / 1e9
    channels: dict[str, list[float]] = {}
    for channel, b, count in rows:
        channels.setdefault(channel, [0.0] * n)[int(b)] = round(count / per_s, 3)
    t = [(window.start_ns + i * step) / 1e6 for i in range(n)]
    return {"bucket_s": per_s, "t": t, "channels": channels}


def latency(con: duckdb.DuckDBPyConnection, window: Window) -> dict[str, Any]:
    """Per channel: quantiles (ms), a histogram, and p50 / p99 over time."""
    where = f"dir = 'in' AND channel NOT IN {_OWN} AND type <> 'orderbook_snapshot' AND " + (
        window.where()
    )
    ((candidates,),) = con.execute(f"SELECT count(*) FROM frames WHERE {where}").fetchall()
    every = max(1, math.ceil(candidates / LATENCY_SAMPLE))
    sample = f" AND idx % {every} = 0" if every > 1 else ""
    table = con.sql(
        f"SELECT channel, recv_ns, recv_ns / 1e6 - ts_ms AS ms FROM ("
        "SELECT channel, recv_ns, TRY_CAST(json_extract_string(TRY(decode(raw)), '$.msg.ts_ms') "
        f"AS BIGINT) AS ts_ms FROM frames WHERE {where}{sample}) WHERE ts_ms IS NOT NULL"
    ).to_arrow_table()
    out: dict[str, Any] = {"every": every, "frames": table.num_rows, "channels": {}}
    if table.num_rows == 0:
        return out
    con.register("report_latency", table)
    try:
        stats = con.execute(
            "SELECT channel, count(*), min(ms), quantile_cont(ms, [0.001, 0.5, 0.9, 0.99, 0.999]), "
            "max(ms) FROM report_latency GROUP BY channel ORDER BY channel"
        ).fetchall()
        lo = min(q[0] for _, _, _, q, _ in stats)
        hi = max(q[4] for _, _, _, q, _ in stats)
        width = _nice_width((hi - lo) / HISTOGRAM_BINS) if hi > lo else 1.0
        lo = math.floor(lo / width) * width
        bins = max(1, min(HISTOGRAM_BINS + 2, math.ceil((hi - lo) / width) + 1))
        hist = con.execute(
            f"SELECT channel, least({bins - 1}, greatest(0, floor((ms - {lo}) / {width})))::INT "
            "AS b, count(*) FROM report_latency GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        over_time = con.execute(
            f"SELECT channel, {window.bucket_ms()} AS t, quantile_cont(ms, 0.5), "
            "quantile_cont(ms, 0.99) FROM report_latency GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    finally:
        con.unregister("report_latency")
    out["bins"] = {"start": lo, "width": width, "count": bins}
    for channel, count, low, q, high in stats:
        out["channels"][channel] = {
            "count": count, "min": low, "p50": q[1], "p90": q[2], "p99": q[3], "max": high,
            "hist": [0] * bins, "t": [], "p50_t": [], "p99_t": [],
        }  # fmt: skip
    for channel, b, count in hist:
        out["channels"][channel]["hist"][b] = count
    for channel, t, p50, p99 in over_time:
        c = out["channels"][channel]
        c["t"].append(t)
        c["p50_t"].append(round(p50, 3))
        c["p99_t"].append(round(p99, 3))
    return out


def _nice_width(raw: float) -> float:
    """The round bin width (1, 2 or 5 times a power of ten) at or above `raw`."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
