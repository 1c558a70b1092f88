"""Bytes per frame on disk, and publish throughput, against their ceilings.

    python bench/bench_storage.py [--frames N] [--json]

Frames: a realistic Kalshi mix in the current wire form (docs/protocol.md section 8): 70%
orderbook deltas, 20% ticker, 8% trade, 2% snapshots over 500 markets, about 345 B a
frame, arriving at about 5k frames/s. They go through the real write path (JournalWriter
with default segments, Publisher, then compaction) and are read back to check the round
trip is byte-exact.

Baselines measured in the same run:
* the same frames as NDJSON compressed by `zstd -3` (the archive format of tardis-style
  vendors): published Parquet should be no larger, compacted at most 0.8 of it;
* the same again with each line carrying its receive time at microseconds
  (`{"localTimestamp": ..., "message": <frame>}`), closer to what such archives keep;
  the capture record carries more still (idx, recv_ns and mono_ns at ns, seq);
* `pq.write_table` of the same rows already in one Arrow table, sorted, zstd-3 (the
  Parquet write ceiling of docs/performance.md section 2): publish throughput is judged against it.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import Metric, emit

from recorder.storage.compaction import compact
from recorder.storage.journal import JournalWriter
from recorder.storage.publisher import Publisher
from schemas.envelope import encode_json
from schemas.parquet import ParquetSettings, encode_parquet, sort_for_storage
from schemas.record import ColumnDeriver, live_files, new_run_id

__all__ = ["Frame", "kalshi_frames"]

Frame = tuple[int, bytes]  # (recv_ns, raw)
_START_NS = 1_795_244_400_000_000_000  # 2026-11-21T07:00:00Z


def _iso(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac // 1000:06d}Z"


class _Market:
    """What a market looks like between frames, so consecutive frames agree (as on the wire)."""

    def __init__(self, rng: random.Random, ticker: str) -> None:
        self.ticker = ticker
        self.market_id = str(uuid.UUID(int=rng.getrandbits(128)))
        self.mid = rng.randint(8, 92)
        self.volume = rng.randint(0, 400_000)
        self.open_interest = self.volume // 3
        self.last_price = self.mid
        self.last_size = 1
        self.book: dict[str, dict[int, int]] = {"yes": {}, "no": {}}
        for side, top in (("yes", self.mid - 1), ("no", 99 - self.mid)):
            for p in range(max(1, top - rng.randint(8, 30)), top + 1):
                self.book[side][p] = rng.randint(1, 3000)

    def best(self, side: str) -> tuple[int, int]:
        levels = self.book[side]
        if not levels:
            return 0, 0
        price = max(levels)
        return price, levels[price]


def _ladder(levels: dict[int, int]) -> list[list[str]]:
    return [[f"0.{p:02d}00", f"{q}.00"] for p, q in sorted(levels.items())]


def kalshi_frames(
    n: int, n_markets: int = 500, rate_per_s: float = 5000, seed: int = 7
) -> list[Frame]:
    """n frames with their receive times, deterministic for a seed.

    Each market keeps a book, a mid price, volume and open interest; deltas move the book
    near the touch, trades move volume, ticker frames report the resulting state.
    """
    rng = random.Random(seed)
    series = ["KXHIGHNY", "KXHIGHCHI", "KXBTCD", "KXETHD", "KXNBAGAME", "KXFEDDECISION", "KXCPI"]
    markets = [
        _Market(rng, f"{series[i % len(series)]}-26NOV{21 + i % 9:02d}-B{40 + i % 60}.5")
        for i in range(n_markets)
    ]
    seq = {1: 0, 3: 0}
    clock = 1_000_000
    now = _START_NS
    frames: list[Frame] = []

    def snapshot(m: _Market) -> dict[str, object]:
        seq[1] += 1
        return {"type": "orderbook_snapshot", "sid": 1, "seq": seq[1], "msg": {
            "market_ticker": m.ticker, "market_id": m.market_id, "clock": clock,
            "yes_dollars_fp": _ladder(m.book["yes"]), "no_dollars_fp": _ladder(m.book["no"]),
        }}  # fmt: skip

    for m in markets:
        frames.append((now, encode_json(snapshot(m))))
    while len(frames) < n:
        now += int(rng.expovariate(rate_per_s) * 1e9)
        clock += rng.randint(1, 3)
        ts_ms = (now - rng.randint(5_000_000, 60_000_000)) // 1_000_000
        # Half the traffic on a few busy markets, half spread over all of them.
        busy = min(int(rng.paretovariate(1.2)) - 1, n_markets - 1)
        m = markets[busy if rng.random() < 0.5 else rng.randrange(n_markets)]
        if rng.random() < 0.01:
            m.mid = min(95, max(5, m.mid + rng.choice((-1, 1))))
            for side, top in (("yes", m.mid - 1), ("no", 99 - m.mid)):  # never crossed
                for p in [p for p in m.book[side] if p > top]:
                    del m.book[side][p]
        r = rng.random()
        if r < 0.70:
            side = rng.choice(("yes", "no"))
            top = m.mid - 1 if side == "yes" else 99 - m.mid
            levels = m.book[side]
            price = max(1, min(99, top - min(int(rng.expovariate(0.4)), 30)))
            if price in levels and rng.random() < 0.6:
                delta = -rng.randint(1, levels[price])
            else:
                delta = rng.choice(
                    (1, 2, 5, 10, 10, 25, 50, 100, 100, 250, 500, rng.randint(1, 999))
                )
            levels[price] = levels.get(price, 0) + delta
            if not levels[price]:
                del levels[price]
            seq[1] += 1
            msg: dict[str, object] = {"type": "orderbook_delta", "sid": 1, "seq": seq[1], "msg": {
                "market_ticker": m.ticker, "market_id": m.market_id, "clock": clock,
                "price_dollars": f"0.{price:02d}00", "delta_fp": f"{delta}.00", "side": side,
                "ts": _iso(ts_ms * 1_000_000), "ts_ms": ts_ms,
            }}  # fmt: skip
        elif r < 0.90:
            bid, bid_size = m.best("yes")
            no_bid, ask_size = m.best("no")
            msg = {"type": "ticker", "sid": 2, "msg": {
                "market_ticker": m.ticker, "market_id": m.market_id,
                "price_dollars": f"0.{m.last_price:02d}00",
                "yes_bid_dollars": f"0.{bid:02d}00", "yes_ask_dollars": f"0.{100 - no_bid:02d}00",
                "volume_fp": f"{m.volume}.00", "open_interest_fp": f"{m.open_interest}.00",
                "dollar_volume": m.volume * m.last_price // 100,
                "dollar_open_interest": m.open_interest * m.last_price // 100,
                "yes_bid_size_fp": f"{bid_size}.00", "yes_ask_size_fp": f"{ask_size}.00",
                "last_trade_size_fp": f"{m.last_size}.00",
                "ts": ts_ms // 1000, "ts_ms": ts_ms, "time": _iso(ts_ms * 1_000_000),
            }}  # fmt: skip
        elif r < 0.98:
            side = rng.choice(("yes", "no"))
            price = m.mid + (rng.randint(0, 2) if side == "yes" else -rng.randint(0, 2))
            price = min(99, max(1, price))
            count = rng.choice((1, 1, 2, 5, 10, 10, 20, 50, 100, rng.randint(1, 1000)))
            m.volume += count
            m.open_interest += rng.choice((-count, 0, count))
            m.open_interest = max(0, m.open_interest)
            m.last_price, m.last_size = price, count
            no = 100 - price
            seq[3] += 1
            msg = {"type": "trade", "sid": 3, "seq": seq[3], "msg": {
                "trade_id": str(uuid.UUID(int=rng.getrandbits(128))), "market_ticker": m.ticker,
                "yes_price_dollars": f"0.{price:02d}00", "no_price_dollars": f"0.{no:02d}00",
                "count_fp": f"{count}.00", "taker_side": side, "taker_outcome_side": side,
                "taker_book_side": "bid" if side == "yes" else "ask", "is_block_trade": False,
                "ts": ts_ms // 1000, "ts_ms": ts_ms,
            }}  # fmt: skip
        else:
            msg = snapshot(m)
        frames.append((now, encode_json(msg)))
    return frames[:n]


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def _live(root: Path) -> list[Path]:
    out = []
    for part in sorted(root.glob("channel=*/date=*")):
        out += [part / n for n in live_files([p.name for p in part.iterdir()])]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300_000)
    ap.add_argument("--markets", type=int, default=500)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    frames = kalshi_frames(args.frames, n_markets=args.markets)
    n = len(frames)
    raw_bytes = sum(len(raw) for _, raw in frames)

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        tmp_path = Path(tmp)
        ndjson = tmp_path / "frames.ndjson"
        ndjson.write_bytes(b"".join(raw + b"\n" for _, raw in frames))
        subprocess.run(["zstd", "-q", "-3", "-f", str(ndjson)], check=True)
        zstd_bytes = (tmp_path / "frames.ndjson.zst").stat().st_size
        # The same with the receive time on each line, as archives that keep one store it.
        stamped = tmp_path / "stamped.ndjson"
        stamped.write_bytes(
            b"".join(
                b'{"localTimestamp":"%s","message":%s}\n' % (_iso(recv).encode(), raw)
                for recv, raw in frames
            )
        )
        subprocess.run(["zstd", "-q", "-3", "-f", str(stamped)], check=True)
        stamped_bytes = (tmp_path / "stamped.ndjson.zst").stat().st_size

        run_id = new_run_id(_START_NS, b"\x00\x00\x00\x01")
        deriver = ColumnDeriver()
        rows = [(recv, deriver.derive("in", raw, 1), raw) for recv, raw in frames]
        journal, root = tmp_path / "journal", tmp_path / "root"
        with JournalWriter(journal, run_id, memory_limit_bytes=2 << 30) as writer:
            jitter = random.Random(3)
            for recv, d, raw in rows:
                # Both clocks are read one after the other: a fixed offset, some ns of jitter.
                mono = recv - _START_NS + 5_000_000_000 + jitter.randint(20, 400)
                writer.append(
                    1, recv, mono, "in", d.channel, d.type, d.sid, d.seq, d.market_ticker, raw
                )
        t0 = time.perf_counter()
        Publisher(journal, root).publish_pending()
        publish_s = time.perf_counter() - t0
        published_bytes = _dir_bytes(root)

        # The Parquet write ceiling: the same rows already in one Arrow table, in order.
        table = pa.concat_tables(pq.read_table(p) for p in _live(root))
        table = table.unify_dictionaries().combine_chunks()
        table = sort_for_storage(table, ParquetSettings().sort_orders[0])
        t0 = time.perf_counter()
        encode_parquet(table, ParquetSettings())
        ceiling_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for part in sorted(root.glob("channel=*/date=*")):
            rel = part.relative_to(root).as_posix()
            compact(root, rel, min_age_s=0, delete_grace_s=0, target_rows=10**7)
        compact_s = time.perf_counter() - t0
        compacted_bytes = _dir_bytes(root)

        back = pa.concat_tables(pq.read_table(p, columns=["idx", "raw"]) for p in _live(root))
        back = back.take(pc.sort_indices(back, sort_keys=[("idx", "ascending")]))
        exact = back.column("raw").to_pylist() == [raw for _, raw in frames]
        exact = exact and back.column("idx").to_pylist() == list(range(n))

    zstd_per = zstd_bytes / n
    emit(
        [
            Metric("raw NDJSON", (raw_bytes + n) / n, "B/frame", higher_is_better=False),
            Metric("NDJSON + zstd -3 (baseline)", zstd_per, "B/frame", higher_is_better=False),
            Metric(
                "published Parquet",
                published_bytes / n,
                "B/frame",
                higher_is_better=False,
                baseline="NDJSON + zstd -3 (baseline)",
                target="<= 1.0 of baseline",
            ),
            Metric(
                "compacted Parquet",
                compacted_bytes / n,
                "B/frame",
                higher_is_better=False,
                baseline="NDJSON + zstd -3 (baseline)",
                target="<= 0.8 of baseline",
            ),
            Metric(
                "NDJSON with receive times + zstd -3",
                stamped_bytes / n,
                "B/frame",
                higher_is_better=False,
            ),
            Metric(
                "published Parquet, vs timestamped NDJSON",
                published_bytes / n,
                "B/frame",
                higher_is_better=False,
                baseline="NDJSON with receive times + zstd -3",
            ),
            Metric(
                "compacted Parquet, vs timestamped NDJSON",
                compacted_bytes / n,
                "B/frame",
                higher_is_better=False,
                baseline="NDJSON with receive times + zstd -3",
            ),
            Metric("round trip byte-exact", 1.0 if exact else 0.0, "bool", target="1"),
            Metric("Parquet write ceiling (sorted table, zstd-3)", n / ceiling_s, "rows/s"),
            Metric(
                "publish (segment -> Parquet files)",
                n / publish_s,
                "rows/s",
                baseline="Parquet write ceiling (sorted table, zstd-3)",
            ),
            Metric("compaction (zstd-9)", n / compact_s, "rows/s"),
        ],
        notes=f"{n} frames, {raw_bytes / n:.0f} B average, {args.markets} markets.",
    )
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
