"""The clock offset between two hosts' captures, from the trades both received.

Two recorders on two hosts, subscribed to the same markets, each receive every public
trade once and stamp it with their own host's wall clock (`recv_ns`). The frame's
`msg.trade_id` names the trade on both. For a trade both received,
`recv_ns_B - recv_ns_A` is B's clock offset plus the difference of the two network
paths for that one frame. The estimate is the median of these differences over every
trade both received: a frame held up on one side (a stall, a reconnect's burst) moves
the mean but not the median. Their spread (p5..p95 and the median absolute deviation)
says how far to trust it: on two hosts near one exchange it is a few milliseconds.

Everything here is a pure function of Arrow tables and dictionaries; reading the files
is the caller's (`replay.merge.api`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "TRADE_COLUMNS",
    "ClockOffset",
    "TradeEvidence",
    "choose_offset",
    "trade_evidence",
    "trade_receipts",
]

#: The columns `trade_receipts` reads from a `trade` partition file.
TRADE_COLUMNS: Final = ("type", "dir", "recv_ns", "raw")


class _TradeMsg(msgspec.Struct):
    trade_id: str | None = None


class _TradeFrame(msgspec.Struct):
    msg: _TradeMsg | None = None


_decoder = msgspec.json.Decoder(_TradeFrame)


def _plain(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A string column as plain strings (files hold some of them as dictionaries)."""
    if pa.types.is_dictionary(column.type):
        return pc.cast(column, pa.string())
    return column


def trade_receipts(table: pa.Table) -> dict[str, int]:
    """trade_id -> the first `recv_ns` it was received at, over the `trade` messages
    received (`dir` in) of `table` (columns `TRADE_COLUMNS`, rows in any order).

    A trade received twice by one capture (two connections overlapping during a
    make-before-break switch) counts at its first receipt. Frames that do not decode,
    or carry no trade_id, are left out.
    """
    if table.num_rows == 0:
        return {}
    keep = pc.and_(
        pc.equal(_plain(table.column("type")), "trade"), pc.equal(_plain(table.column("dir")), "in")
    )
    trades = table.filter(keep)
    receipts: dict[str, int] = {}
    decode = _decoder.decode
    for recv_ns, raw in zip(
        trades.column("recv_ns").to_pylist(), trades.column("raw").to_pylist(), strict=True
    ):
        try:
            msg = decode(raw).msg
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if msg is None or not msg.trade_id:
            continue
        seen = receipts.get(msg.trade_id)
        if seen is None or recv_ns < seen:
            receipts[msg.trade_id] = recv_ns
    return receipts


@dataclass(frozen=True, slots=True)
class TradeEvidence:
    """What the trades both captures received say about B's clock against A's.

    The `*_ns` figures are of `recv_ns_B - recv_ns_A` over the matched trades (None
    when no trade matched): positive when B's clock is ahead of A's.
    """

    trades_a: int  # distinct trades in A
    trades_b: int  # distinct trades in B
    matches: int  # trades in both
    median_ns: int | None = None
    p5_ns: int | None = None
    p95_ns: int | None = None
    mad_ns: int | None = None  # median absolute deviation from the median
    min_ns: int | None = None
    max_ns: int | None = None


def _median(sorted_values: np.ndarray) -> int:
    """The median of sorted int64 values, as an integer (the lower of two middles'
    mean, rounded down: exact, where a float would lose nanoseconds past 2**53)."""
    n = len(sorted_values)
    lo, hi = int(sorted_values[(n - 1) // 2]), int(sorted_values[n // 2])
    return lo + (hi - lo) // 2


def trade_evidence(a: Mapping[str, int], b: Mapping[str, int]) -> TradeEvidence:
    """The differences `b[t] - a[t]` over the trades `t` in both, summarized."""
    common = a.keys() & b.keys()
    if not common:
        return TradeEvidence(len(a), len(b), 0)
    diffs = np.sort(np.fromiter((b[t] - a[t] for t in common), np.int64, len(common)))
    median = _median(diffs)
    mad = _median(np.sort(np.abs(diffs - median)))
    p5, p95 = np.percentile(diffs, [5, 95], method="nearest")
    return TradeEvidence(
        len(a), len(b), len(common), median, int(p5), int(p95), mad,
        int(diffs[0]), int(diffs[-1]),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """B's clock minus A's, in ns, and where it came from.

    `source` is "trades" (the median of `evidence`) or "given" (`--offset-ns`, with
    the trades' evidence still reported beside it).
    """

    offset_ns: int
    source: str
    evidence: TradeEvidence

    def to_json(self) -> dict[str, Any]:
        return {"offset_ns": self.offset_ns, "source": self.source, **asdict(self.evidence)}


def choose_offset(evidence: TradeEvidence, given_ns: int | None) -> ClockOffset | None:
    """The offset to apply: `given_ns` when given, else the trades' median; None when
    neither is known (no trade in both, nothing given)."""
    if given_ns is not None:
        return ClockOffset(given_ns, "given", evidence)
    if evidence.median_ns is None:
        return None
    return ClockOffset(evidence.median_ns, "trades", evidence)
