"""SQL over a 10M-frame capture: count by channel, 1-second OHLCV bars, final books.

The capture (70% orderbook deltas, 20% ticker, 8% trade, 2% snapshots over 500
markets, the current wire form) is generated once with pyarrow in the capture
layout and cached under `bench/out/` (git-ignored). Each figure is measured on the
views of `replay.sql.connection.connect` (sandboxed, typed) and on a hand-written ceiling in
the same run: the same question asked of the files directly, extracting only the
JSON fields it needs, with no views and no sandbox.

    python bench/bench_sql.py                   # readable
    python bench/bench_sql.py --json            # for bench/run.py
    python bench/bench_sql.py --frames 1000000  # a smaller capture (cached apart)
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from common import Metric, emit, timed

from replay.sql.connection import connect
from schemas.arrow import CAPTURE_SCHEMA, DICTIONARY_COLUMNS
from schemas.envelope import encode_json
from schemas.events import Closed, Opened, RunStart, RunStop
from schemas.record import partition_file

HERE = Path(__file__).resolve().parent
RUN_ID = "20261121T000000Z-5eed0001"
START_NS = 1_795_219_200_000_000_000  # 2026-11-21T00:00:00Z
STEP_NS = 2_000_000  # one frame every 2 ms: 10M frames span 5.6 hours
SEGMENT_ROWS = 1_000_000
CHANNELS = ("orderbook_delta", "ticker", "trade", "_control", "_session")
TYPES = ("orderbook_delta", "orderbook_snapshot", "ticker", "trade")
_TYPE_CHANNEL = (0, 0, 1, 2)
_SID = (1, 1, 2, 3)


def _levels(book: dict[int, int]) -> str:
    return ",".join(f'["0.{p:02d}00","{q}.00"]' for p, q in sorted(book.items()))


class Generator:
    """A deterministic, self-consistent frame stream (books never go negative)."""

    def __init__(self, n_markets: int, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.markets = [
            f"KXHIGH{('NY', 'CHI', 'MIA', 'AUS', 'DEN')[i % 5]}-26NOV21-B{i}"
            for i in range(n_markets)
        ]
        self.books: dict[int, tuple[dict[int, int], dict[int, int]]] = {}
        self.seq = [0, 0, 0, 0]  # per sid 1..3

    def snapshot(self, m: int, ts_ms: int) -> bytes:
        rng = self.rng
        mid = rng.randint(25, 75)
        yes = {p: rng.randint(1, 900) for p in range(mid - 12, mid)}
        no = {p: rng.randint(1, 900) for p in range(100 - mid - 12, 100 - mid)}
        self.books[m] = (yes, no)
        self.seq[1] += 1
        return (
            f'{{"type":"orderbook_snapshot","sid":1,"seq":{self.seq[1]},"msg":{{"market_ticker":'
            f'"{self.markets[m]}","market_id":"c0ffee00-0000-4000-8000-{m:012d}","clock":{ts_ms},'
            f'"yes_dollars_fp":[{_levels(yes)}],"no_dollars_fp":[{_levels(no)}]}}}}'
        ).encode()

    def frame(self, ts_ms: int) -> tuple[int, int, bytes]:
        """(type code, market index, raw) of the next frame."""
        rng = self.rng
        m = rng.randrange(len(self.markets))
        if m not in self.books:
            return 1, m, self.snapshot(m, ts_ms)
        r = rng.random()
        name = self.markets[m]
        if r < 0.70:
            side = rng.random() < 0.5
            levels = self.books[m][0 if side else 1]
            if levels and rng.random() < 0.5:
                price = rng.choice(list(levels))
                delta = -rng.randint(1, levels[price])
                levels[price] += delta
                if not levels[price]:
                    del levels[price]
            else:
                price = rng.randint(1, 99)
                delta = rng.randint(1, 300)
                levels[price] = levels.get(price, 0) + delta
            self.seq[1] += 1
            raw = (
                f'{{"type":"orderbook_delta","sid":1,"seq":{self.seq[1]},"msg":{{"market_ticker":'
                f'"{name}","market_id":"c0ffee00-0000-4000-8000-{m:012d}","clock":{ts_ms},'
                f'"price_dollars":"0.{price:02d}00","delta_fp":"{delta}.00",'
                f'"side":"{"yes" if side else "no"}","ts_ms":{ts_ms}}}}}'
            )
            return 0, m, raw.encode()
        if r < 0.90:
            p = rng.randint(2, 98)
            raw = (
                f'{{"type":"ticker","sid":2,"msg":{{"market_ticker":"{name}",'
                f'"market_id":"c0ffee00-0000-4000-8000-{m:012d}","price_dollars":"0.{p:02d}00",'
                f'"yes_bid_dollars":"0.{p - 1:02d}00","yes_ask_dollars":"0.{p + 1:02d}00",'
                f'"volume_fp":"{rng.randint(0, 99999)}.00",'
                f'"open_interest_fp":"{rng.randint(0, 9999)}.00",'
                f'"dollar_volume":{rng.randint(0, 99999)},'
                f'"dollar_open_interest":{rng.randint(0, 9999)},'
                f'"yes_bid_size_fp":"{rng.randint(1, 500)}.00",'
                f'"yes_ask_size_fp":"{rng.randint(1, 500)}.00",'
                f'"last_trade_size_fp":"1.00","ts":{ts_ms // 1000},"ts_ms":{ts_ms}}}}}'
            )
            return 2, m, raw.encode()
        if r < 0.98:
            p = rng.randint(2, 98)
            self.seq[3] += 1
            raw = (
                f'{{"type":"trade","sid":3,"seq":{self.seq[3]},"msg":{{"trade_id":'
                f'"{rng.getrandbits(64):016x}-0000-4000-8000-000000000000",'
                f'"market_ticker":"{name}",'
                f'"yes_price_dollars":"0.{p:02d}00","no_price_dollars":"0.{100 - p:02d}00",'
                f'"count_fp":"{rng.randint(1, 200)}.00","taker_side":"yes",'
                f'"taker_outcome_side":"yes","taker_book_side":"bid","is_block_trade":false,'
                f'"ts":{ts_ms // 1000},"ts_ms":{ts_ms}}}}}'
            )
            return 3, m, raw.encode()
        return 1, m, self.snapshot(m, ts_ms)


def _dict(codes: list[int], values: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(codes, pa.int32()), pa.array(values, pa.string())
    )


def _write(root: Path, channel: str, segment: int, columns: dict[str, pa.Array]) -> None:
    table = pa.Table.from_pydict(columns, schema=CAPTURE_SCHEMA)
    path = root / partition_file(channel, "2026-11-21", RUN_ID, segment)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        table,
        path,
        compression="zstd",
        compression_level=3,
        row_group_size=131_072,
        data_page_size=8 << 20,
        use_dictionary=list(DICTIONARY_COLUMNS),
    )


def _small(root: Path, channel: str, rows: list[tuple[int, int, str, str, bytes]]) -> None:
    """Write the few _control / _session rows (idx, recv_ns, dir, type, raw)."""
    n = len(rows)
    sid = [None] * n
    _write(
        root,
        channel,
        0,
        {
            "run_id": pa.array([RUN_ID] * n).dictionary_encode(),
            "idx": pa.array([r[0] for r in rows], pa.int64()),
            "conn": pa.array([1] * n, pa.int32()),
            "recv_ns": pa.array([r[1] for r in rows], pa.int64()),
            "mono_ns": pa.array([r[1] - START_NS for r in rows], pa.int64()),
            "dir": pa.array([r[2] for r in rows]).dictionary_encode(),
            "channel": pa.array([channel] * n).dictionary_encode(),
            "type": pa.array([r[3] for r in rows]).dictionary_encode(),
            "sid": pa.array(sid, pa.int32()),
            "seq": pa.array(sid, pa.int64()),
            "market_ticker": pa.array(sid, pa.string()).dictionary_encode(),
            "raw": pa.array([r[4] for r in rows], pa.binary()),
            "opcode": pa.array([None if r[2] == "event" else 1 for r in rows], pa.int8()),
            "feed": pa.array([0] * n, pa.int8()),
        },
    )


def generate(root: Path, frames: int, n_markets: int = 500) -> None:
    """Write a capture of `frames` data frames (plus acks, commands, events) under root."""
    gen = Generator(n_markets)
    url = "wss://external-api-ws.kalshi.com/trade-api/ws/v2"
    session = [
        (1, START_NS, "event", "run_start", RunStart(run_id=RUN_ID, version="bench").to_bytes()),
        (2, START_NS + 1, "event", "open", Opened(url=url).to_bytes()),
    ]
    control = []
    for i, channel in enumerate(("orderbook_delta", "ticker", "trade")):
        cmd = {"id": i + 1, "cmd": "subscribe", "params": {"channels": [channel]}}
        control.append((3 + i, START_NS + 2 + i, "out", "subscribe", encode_json(cmd)))
    for i, channel in enumerate(("orderbook_delta", "ticker", "trade")):
        ack = {"id": i + 1, "type": "subscribed", "msg": {"channel": channel, "sid": i + 1}}
        control.append((6 + i, START_NS + 5 + i, "in", "subscribed", encode_json(ack)))
    idx = 9
    for segment in range((frames + SEGMENT_ROWS - 1) // SEGMENT_ROWS):
        n = min(SEGMENT_ROWS, frames - segment * SEGMENT_ROWS)
        types, markets, raws, seqs = [], [], [], []
        for i in range(n):
            ts_ms = (START_NS + (idx - 9 + i) * STEP_NS) // 1_000_000
            t, m, raw = gen.frame(ts_ms)
            types.append(t)
            markets.append(m)
            raws.append(raw)
            seqs.append(None if t == 2 else gen.seq[_SID[t]])
        idxs = list(range(idx, idx + n))
        recv = [START_NS + (i - 9) * STEP_NS + 10 for i in idxs]
        for code, channel in enumerate(CHANNELS[:3]):
            keep = [i for i, t in enumerate(types) if _TYPE_CHANNEL[t] == code]
            _write(
                root,
                channel,
                segment,
                {
                    "run_id": _dict([0] * len(keep), [RUN_ID]),
                    "idx": pa.array([idxs[i] for i in keep], pa.int64()),
                    "conn": pa.array([1] * len(keep), pa.int32()),
                    "recv_ns": pa.array([recv[i] for i in keep], pa.int64()),
                    "mono_ns": pa.array([recv[i] - START_NS for i in keep], pa.int64()),
                    "dir": _dict([0] * len(keep), ["in"]),
                    "channel": _dict([0] * len(keep), [channel]),
                    "type": _dict([types[i] for i in keep], list(TYPES)),
                    "sid": pa.array([_SID[types[i]] for i in keep], pa.int32()),
                    "seq": pa.array([seqs[i] for i in keep], pa.int64()),
                    "market_ticker": _dict([markets[i] for i in keep], gen.markets),
                    "raw": pa.array([raws[i] for i in keep], pa.binary()),
                    "opcode": pa.array([1] * len(keep), pa.int8()),
                    "feed": pa.array([0] * len(keep), pa.int8()),
                },
            )
        idx += n
        print(f"generated segment {segment} ({idx - 9:,} frames)", file=sys.stderr)
    end = START_NS + (idx - 9) * STEP_NS + 100
    close = Closed(code=1000, disconnect_reason="shutdown").to_bytes()
    session += [
        (idx, end, "event", "close", close),
        (idx + 1, end + 1, "event", "run_stop", RunStop(reason="bench").to_bytes()),
    ]
    _small(root, "_control", control)
    _small(root, "_session", session)


def capture(frames: int) -> Path:
    """The cached capture of this size, generated on first use."""
    root = HERE / "out" / f"sql_capture_{frames}"
    done = HERE / "out" / f"sql_capture_{frames}.done"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        generate(root, frames)
        done.write_text("ok\n")
    return root


COUNT_BY_CHANNEL = "SELECT channel, count(*) FROM frames GROUP BY channel"
OHLCV = """SELECT market_ticker, date_trunc('second', exchange_time) AS second,
    arg_min(yes_price_dollars, idx) AS open, max(yes_price_dollars) AS high,
    min(yes_price_dollars) AS low, arg_max(yes_price_dollars, idx) AS close,
    sum(count) AS volume, count(*) AS trades
FROM trades GROUP BY ALL"""
FINAL_BOOK = """WITH last_snap AS (
    SELECT market_ticker, arg_max(run_id, (run_id, idx)) AS run_id, max((run_id, idx)) AS k
    FROM book_snapshots GROUP BY market_ticker
), base AS (
    SELECT l.market_ticker, l.side, l.price_dollars, l.quantity, s.k
    FROM book_snapshot_levels l JOIN last_snap s
      ON l.market_ticker = s.market_ticker AND (l.run_id, l.idx) = s.k
), later AS (
    SELECT d.market_ticker, d.side, d.price_dollars, d.delta AS quantity
    FROM book_deltas d JOIN last_snap s
      ON d.market_ticker = s.market_ticker AND d.run_id = s.run_id AND (d.run_id, d.idx) > s.k
)
SELECT market_ticker, side, price_dollars, sum(quantity) AS quantity
FROM (SELECT market_ticker, side, price_dollars, quantity FROM base
      UNION ALL SELECT * FROM later)
GROUP BY ALL HAVING sum(quantity) > 0"""

# Hand-written ceilings: the same questions of the files directly, fields by path.
CEIL_COUNT = (
    "SELECT channel, count(*) FROM read_parquet('{root}/*/*/*.parquet', hive_partitioning = true) "
    "GROUP BY channel"
)
CEIL_OHLCV = """SELECT market_ticker, ts_ms // 1000 AS second,
    arg_min(p, idx) AS open, max(p) AS high, min(p) AS low, arg_max(p, idx) AS close,
    sum(c) AS volume, count(*) AS trades
FROM (SELECT market_ticker, idx, CAST(f[1] AS DECIMAL(18,4)) AS p,
        CAST(f[2] AS DECIMAL(18,2)) AS c, CAST(f[3] AS BIGINT) AS ts_ms
      FROM (SELECT market_ticker, idx, json_extract_string(decode(raw),
              ['$.msg.yes_price_dollars', '$.msg.count_fp', '$.msg.ts_ms']) AS f
            FROM read_parquet('{root}/channel=trade/*/*.parquet')))
GROUP BY ALL"""
CEIL_BOOK = """WITH src AS (
    SELECT market_ticker, idx, type, decode(raw) AS j
    FROM read_parquet('{root}/channel=orderbook_delta/*/*.parquet')
), last_snap AS (
    SELECT market_ticker, max(idx) AS k FROM src WHERE type = 'orderbook_snapshot' GROUP BY 1
), base AS (
    SELECT s.market_ticker, side, CAST(l[1] AS DECIMAL(18,4)) AS price,
        CAST(l[2] AS DECIMAL(18,2)) AS q
    FROM (SELECT market_ticker, idx, 'yes' AS side,
            unnest(CAST(j->'$.msg.yes_dollars_fp' AS VARCHAR[][])) AS l
          FROM src WHERE type = 'orderbook_snapshot'
          UNION ALL
          SELECT market_ticker, idx, 'no', unnest(CAST(j->'$.msg.no_dollars_fp' AS VARCHAR[][]))
          FROM src WHERE type = 'orderbook_snapshot') s
    JOIN last_snap USING (market_ticker) WHERE s.idx = last_snap.k
), later AS (
    SELECT d.market_ticker, f[1] AS side, CAST(f[2] AS DECIMAL(18,4)) AS price,
        CAST(f[3] AS DECIMAL(18,2)) AS q
    FROM (SELECT market_ticker, idx,
            json_extract_string(j, ['$.msg.side', '$.msg.price_dollars', '$.msg.delta_fp']) AS f
          FROM src WHERE type = 'orderbook_delta') d
    JOIN last_snap USING (market_ticker) WHERE d.idx > last_snap.k
)
SELECT market_ticker, side, price, sum(q) FROM (SELECT * FROM base UNION ALL SELECT * FROM later)
GROUP BY ALL HAVING sum(q) > 0"""


def best_of(con: duckdb.DuckDBPyConnection, sql: str, runs: int) -> tuple[float, int]:
    """Median seconds over runs (after one warm-up) and the result's row count.

    Results are fetched as Arrow (TIMESTAMPTZ to Python objects would need pytz).
    """
    rows = con.sql(sql).to_arrow_table().num_rows
    times = [timed(lambda: con.sql(sql).to_arrow_table()) for _ in range(runs)]
    return statistics.median(times), rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = capture(args.frames)
    t0 = time.perf_counter()
    con = connect(root)
    connect_s = time.perf_counter() - t0
    plain = duckdb.connect()
    counts = dict(con.execute(COUNT_BY_CHANNEL).fetchall())  # no TIMESTAMPTZ here
    trades, deltas = counts.get("trade", 0), counts.get("orderbook_delta", 0)

    count_s, _ = best_of(con, COUNT_BY_CHANNEL, args.runs)
    ceil_count_s, _ = best_of(plain, CEIL_COUNT.format(root=root), args.runs)
    ohlcv_s, bars = best_of(con, OHLCV, args.runs)
    ceil_ohlcv_s, ceil_bars = best_of(plain, CEIL_OHLCV.format(root=root), args.runs)
    book_s, levels = best_of(con, FINAL_BOOK, args.runs)
    ceil_book_s, ceil_levels = best_of(plain, CEIL_BOOK.format(root=root), args.runs)
    assert (bars, levels) == (ceil_bars, ceil_levels), (bars, ceil_bars, levels, ceil_levels)
    frames = sum(counts.values())
    emit(
        [
            Metric(
                "connect (views over the capture)", connect_s * 1e3, "ms", higher_is_better=False
            ),
            Metric(
                "count by channel",
                count_s * 1e3,
                "ms",
                False,
                "count by channel, ceiling",
                "< 500 ms",
            ),
            Metric("count by channel, ceiling", ceil_count_s * 1e3, "ms", higher_is_better=False),
            Metric(
                "1 s OHLCV bars of trades",
                trades / ohlcv_s,
                "rows/s",
                baseline="1 s OHLCV bars, ceiling",
            ),
            Metric("1 s OHLCV bars, ceiling", trades / ceil_ohlcv_s, "rows/s"),
            Metric(
                "final book from deltas", deltas / book_s, "rows/s", baseline="final book, ceiling"
            ),
            Metric("final book, ceiling", deltas / ceil_book_s, "rows/s"),
        ],
        notes=(
            f"{frames:,} frames ({trades:,} trades -> {bars:,} bars; "
            f"{deltas:,} orderbook frames -> {levels:,} final levels). Ceilings: plain "
            "DuckDB over the files with only the needed JSON paths, no views, no sandbox."
        ),
    )


if __name__ == "__main__":
    main()
