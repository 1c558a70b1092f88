"""Index feeds of the synthetic exchange: cfbenchmarks (1 Hz and 5 Hz) and pyth values.

This module owns the time-driven feeds (docs/protocol.md sections 8.11 to 8.13): a random walk
per index, ticked on a fixed virtual schedule (tick k at `epoch_ms + k * period`),
from its own random generator, so the market's event sequence does not depend on
how wall-clock pacing interleaves the two. It knows nothing of books or sockets.
"""

from __future__ import annotations

import json
import random
from typing import Final

from replay.server.tape import TapeEvent
from schemas.channels import Channel

__all__ = ["CFB_5HZ_IDS", "CFB_IDS", "PYTH_UNDERLYINGS", "IndexFeeds"]

CFB_IDS: Final[tuple[str, ...]] = ("BRTI", "ETHUSD_RTI", "SOLUSD_RTI", "XRPUSD_RTI", "DOGEUSD_RTI")
CFB_5HZ_IDS: Final[tuple[str, ...]] = CFB_IDS
PYTH_UNDERLYINGS: Final[tuple[str, ...]] = (
    "Crypto.BTC/USD",
    "Crypto.ETH/USD",
    "Crypto.SOL/USD",
    "Equity.US.SPY/USD",
    "InterestRate.US10Y",
)
_START_VALUES: Final[dict[str, float]] = {
    "BRTI": 97_500.0,
    "ETHUSD_RTI": 3_450.0,
    "SOLUSD_RTI": 182.0,
    "XRPUSD_RTI": 2.31,
    "DOGEUSD_RTI": 0.41,
    "Crypto.BTC/USD": 97_480.0,
    "Crypto.ETH/USD": 3_449.0,
    "Crypto.SOL/USD": 181.9,
    "Equity.US.SPY/USD": 672.0,
    "InterestRate.US10Y": 4.12,  # a percent, as pyth sends InterestRate.*
}
_QUARTER_MS = 15 * 60 * 1000


class IndexFeeds:
    """Index values due by a given time, at about `hz` ticks per second each."""

    def __init__(self, seed: int, epoch_ms: int, hz: float) -> None:
        self._rng = random.Random(seed * 7919 + 17)
        self._epoch_ms = epoch_ms
        self._period_ms = 1000.0 / hz if hz > 0 else 0.0
        self._values = dict(_START_VALUES)
        self._tick = 0  # next 1x tick
        self._tick5 = 0  # next 5x tick

    def _walk(self, name: str) -> float:
        value = self._values[name] * (1.0 + self._rng.gauss(0.0, 0.0002))
        self._values[name] = value
        return value

    def pull(self, elapsed_s: float) -> list[TapeEvent]:
        """Every tick due by `elapsed_s` seconds after start (none when hz is 0)."""
        if not self._period_ms:
            return []
        out: list[TapeEvent] = []
        elapsed_ms = elapsed_s * 1000.0
        while self._tick5 * self._period_ms / 5 <= elapsed_ms:
            ts_ms = self._epoch_ms + int(self._tick5 * self._period_ms / 5)
            for index_id in CFB_5HZ_IDS:
                value = self._walk(index_id)
                data = json.dumps(
                    {"type": "rti", "id": index_id, "value": f"{value:.8f}", "time": ts_ms}
                )
                payload = {
                    "index_id": index_id,
                    "value_usd": f"{value:.8f}",
                    "source_ts_ms": ts_ms - 3,
                    "received_at": ts_ms,
                    "data": data,
                }
                out.append(
                    TapeEvent(
                        Channel.CFBENCHMARKS_VALUE_5HZ,
                        "cfbenchmarks_value_5hz",
                        None,
                        payload,
                        index_id,
                    )
                )
            self._tick5 += 1
        while self._tick * self._period_ms <= elapsed_ms:
            ts_ms = self._epoch_ms + int(self._tick * self._period_ms)
            out.extend(self._cfb(ts_ms))
            for name in PYTH_UNDERLYINGS:
                payload = {
                    "underlying_ticker": name,
                    "value_usd": f"{self._walk(name):.8f}",
                    "source_ts_ms": ts_ms - 5,
                    "received_at": ts_ms,
                }
                out.append(TapeEvent(Channel.PYTH_VALUE, "pyth_value", None, payload, name))
            self._tick += 1
        return out

    def _cfb(self, ts_ms: int) -> list[TapeEvent]:
        out = []
        window_end = ts_ms - ts_ms % 1000
        to_quarter = _QUARTER_MS - ts_ms % _QUARTER_MS
        for index_id in CFB_IDS:
            value = self._values[index_id]
            data = json.dumps(
                {"type": "rti", "id": index_id, "value": f"{value:.8f}", "time": ts_ms}
            )
            avg = {
                "value": f"{value:.8f}",
                "window_size": 60,
                "window_start_ts_ms": window_end - 60_000,
                "window_end_ts_exclusive": window_end,
            }
            payload: dict[str, object] = {
                "index_id": index_id,
                "received_at": ts_ms,
                "data": data,
                "avg_60s_data": avg,
            }
            # Only in the final minute before :00/:15/:30/:45 (docs/protocol.md section 8.11).
            if to_quarter <= 60_000:
                payload["last_60s_windowed_average_15min"] = dict(avg)
            out.append(
                TapeEvent(Channel.CFBENCHMARKS_VALUE, "cfbenchmarks_value", None, payload, index_id)
            )
        return out
