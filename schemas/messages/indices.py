"""Reference index channels: `cfbenchmarks_value`, `cfbenchmarks_value_5hz`, `pyth_value`.

Owns the value and list models of the three index channels (docs/protocol.md sections 8.11-8.13),
all sequenced. `received_at`, `source_ts_ms` and the average windows are int ms.
`data` is the upstream JSON kept as the string it arrived as: it is the provider's
record, not ours to reinterpret. It knows nothing of index subscriptions or all-mode.
"""

from __future__ import annotations

from typing import Literal

from schemas.messages.base import Dollars, EpochMs, MessageBase, WireModel

__all__ = [
    "CfbenchmarksIndexListMsg",
    "CfbenchmarksValue",
    "CfbenchmarksValue5hz",
    "CfbenchmarksValue5hzIndexList",
    "CfbenchmarksValue5hzMsg",
    "CfbenchmarksValueIndexList",
    "CfbenchmarksValueMsg",
    "PythUnderlyingListMsg",
    "PythValue",
    "PythValueMsg",
    "PythValueUnderlyingList",
    "WindowedAverage",
]


class WindowedAverage(WireModel):
    """An average of index values over `[window_start_ts_ms, window_end_ts_exclusive)`.

    Both bounds are int ms on the wire (the end pairs with the start, and real
    frames carry 13-digit values).
    """

    value: Dollars  # 8 dp
    window_size: int
    window_start_ts_ms: EpochMs
    window_end_ts_exclusive: EpochMs


class CfbenchmarksValueMsg(WireModel):
    """A CF Benchmarks index tick, about once a second.

    `last_60s_windowed_average_15min` is present only in the final minute before
    :00, :15, :30 and :45.
    """

    index_id: str
    received_at: EpochMs
    data: str
    avg_60s_data: WindowedAverage
    last_60s_windowed_average_15min: WindowedAverage | None = None


class CfbenchmarksValue(MessageBase):
    """`cfbenchmarks_value`: seq required by the spec."""

    type: Literal["cfbenchmarks_value"]
    msg: CfbenchmarksValueMsg


class CfbenchmarksIndexListMsg(WireModel):
    """The subscribed index ids (`["all"]` in all-mode)."""

    index_ids: tuple[str, ...]


class CfbenchmarksValueIndexList(MessageBase):
    """`cfbenchmarks_value_indexlist`: the reply to `indexlist`, with the command `id`."""

    type: Literal["cfbenchmarks_value_indexlist"]
    msg: CfbenchmarksIndexListMsg


class CfbenchmarksValue5hzMsg(WireModel):
    """A 5 Hz CF Benchmarks index value (BRTI, ETHUSD_RTI...); no averages."""

    index_id: str
    value_usd: Dollars  # 8 dp
    source_ts_ms: EpochMs
    received_at: EpochMs
    data: str


class CfbenchmarksValue5hz(MessageBase):
    """`cfbenchmarks_value_5hz`: seq required by the spec."""

    type: Literal["cfbenchmarks_value_5hz"]
    msg: CfbenchmarksValue5hzMsg


class CfbenchmarksValue5hzIndexList(MessageBase):
    """`cfbenchmarks_value_5hz_indexlist`: the reply to `indexlist` on the 5 Hz channel."""

    type: Literal["cfbenchmarks_value_5hz_indexlist"]
    msg: CfbenchmarksIndexListMsg


class PythValueMsg(WireModel):
    """A Pyth price. For `InterestRate.*` underlyings `value_usd` is a percent."""

    underlying_ticker: str
    value_usd: Dollars  # 8 dp
    source_ts_ms: EpochMs
    received_at: EpochMs


class PythValue(MessageBase):
    """`pyth_value`: seq required by the spec."""

    type: Literal["pyth_value"]
    msg: PythValueMsg


class PythUnderlyingListMsg(WireModel):
    """Underlyings seen in the last 2 hours."""

    underlying_tickers: tuple[str, ...]


class PythValueUnderlyingList(MessageBase):
    """`pyth_value_underlying_list`: the reply to `underlying_list`, with the command `id`."""

    type: Literal["pyth_value_underlying_list"]
    msg: PythUnderlyingListMsg
