"""Payloads of the synthetic exchange's non-book channels.

This module owns what the lifecycle channels (`market_lifecycle_v2`, `event_lifecycle`,
`event_fee_update`, `multivariate_market_lifecycle`) and the simulated user's private
channels (`fill`, `user_orders`, `market_positions`, `order_group_updates`,
`communications`) carry, field by field as docs/protocol.md section 8 lists them. It
draws from the market's random generator (so the whole event sequence stays one
deterministic stream) and keeps the little state these channels need (the user's
positions, the RFQ and order-group cycles). It knows nothing of books or sockets.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from replay.server.payloads import PRICE_DOLLARS, count_fp, dollars6
from replay.server.tape import TapeEvent
from schemas.channels import Channel

__all__ = ["Activity", "MarketRef"]

_FEE_TYPES: Final = ("quadratic", "quadratic_with_maker_fees", "flat", None)
_GROUP_CYCLE: Final = ("created", "limit_updated", "triggered", "reset", "deleted")
_RFQ_CYCLE: Final = (
    "rfq_created",
    "quote_created",
    "quote_accepted",
    "quote_executed",
    "rfq_deleted",
)
#: SHA-256 of empty input: the obscured creator id (docs/protocol.md section 8.10).
_OBSCURED: Final = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@dataclass(frozen=True)
class MarketRef:
    """What a non-book payload needs to know about a market."""

    ticker: str
    market_id: str
    event_ticker: str
    series_ticker: str


def _rfc3339_s(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Activity:
    """Lifecycle, fee, multivariate and private-channel payloads for one exchange."""

    def __init__(self, rng: random.Random, user_id: str, new_uuid: Callable[[], str]) -> None:
        self._rng = rng
        self._user_id = user_id
        self._uuid = new_uuid
        self._positions: dict[str, int] = {}
        self._group_step = 0
        self._group_id = ""
        self._rfq_step = 0
        self._rfq: dict[str, str] = {}
        self._mve_step = 0
        self._mve_ticker = ""

    def emit(self, action: str, ref: MarketRef, ts_ms: int) -> list[TapeEvent]:
        """Events of one mix action other than book, ticker, trade and lifecycle."""
        if action == "communications":
            return [self._communication(ref, ts_ms)]
        if action == "order_group":
            return [self._order_group(ts_ms)]
        if action == "fee":
            return [self._fee(ref)]
        return self._multivariate(ref, ts_ms)

    def lifecycle(
        self,
        ref: MarketRef,
        event_type: str,
        ts_ms: int,
        channel: str = Channel.MARKET_LIFECYCLE_V2,
    ) -> list[TapeEvent]:
        """One `market_lifecycle_v2` (or multivariate) event for `ref`."""
        rng = self._rng
        ts_s = ts_ms // 1000
        msg: dict[str, Any] = {"market_ticker": ref.ticker, "event_type": event_type}
        if event_type == "created":
            msg.update(
                market_id=ref.market_id,
                exchange_index=1,
                open_ts=ts_s,
                close_ts=ts_s + 86_400 * rng.randrange(1, 60),
                price_level_structure="linear_cent",
                price_ranges=[{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
                additional_metadata={
                    "name": ref.ticker,
                    "title": f"Will {ref.ticker} resolve yes?",
                    "yes_sub_title": "Yes",
                    "no_sub_title": "No",
                    "rules_primary": "Resolves yes if the source reports the outcome.",
                    "rules_secondary": "",
                    "can_close_early": True,
                    "event_ticker": ref.event_ticker,
                    "expected_expiration_ts": ts_s + 86_400,
                    "strike_type": "greater",
                    "floor_strike": rng.randrange(10, 1000) * 5,
                },
            )
        elif event_type == "close_date_updated":
            msg["close_ts"] = ts_s + 3_600 * rng.randrange(1, 200)
        elif event_type == "determined":
            result = "yes" if rng.random() < 0.5 else "no"
            msg.update(
                determination_ts=ts_s,
                result=result,
                settlement_value="1.0000" if result == "yes" else "0.0000",
            )
        elif event_type == "settled":
            msg["settled_ts"] = ts_s
        elif event_type == "metadata_updated":
            msg.update(
                yes_sub_title=f"Above {rng.randrange(10, 1000) * 5}",
                floor_strike=rng.randrange(10, 1000) * 5,
            )
        type_ = (
            "multivariate_market_lifecycle"
            if channel == Channel.MULTIVARIATE_MARKET_LIFECYCLE
            else "market_lifecycle_v2"
        )
        return [TapeEvent(channel, type_, ref.ticker, msg)]

    def event_created(self, ref: MarketRef, ts_ms: int, channel: str) -> list[TapeEvent]:
        """An `event_lifecycle` message (a new event lists) on `channel`."""
        msg = {
            "event_ticker": ref.event_ticker,
            "exchange_index": 1,
            "title": f"{ref.series_ticker} {ref.event_ticker}",
            "subtitle": "",
            "collateral_return_type": "MECNET",
            "series_ticker": ref.series_ticker,
            "strike_date": ts_ms // 1000 + 86_400,
        }
        return [TapeEvent(channel, "event_lifecycle", None, msg)]

    def _fee(self, ref: MarketRef) -> TapeEvent:
        fee_type = _FEE_TYPES[self._rng.randrange(len(_FEE_TYPES))]
        msg = {
            "event_ticker": ref.event_ticker,
            "fee_type_override": fee_type,
            "fee_multiplier_override": None
            if fee_type is None
            else round(self._rng.uniform(0.5, 1.5), 2),
        }
        return TapeEvent(Channel.MARKET_LIFECYCLE_V2, "event_fee_update", None, msg)

    def _multivariate(self, ref: MarketRef, ts_ms: int) -> list[TapeEvent]:
        step = self._mve_step % 4
        self._mve_step += 1
        out = []
        if step == 0:
            self._mve_ticker = f"KXMVESPORTS-{self._rng.randrange(10**8):08d}"
            mve = MarketRef(
                self._mve_ticker, self._uuid(), "KXMVESPORTS-" + ref.event_ticker, "KXMVESPORTS"
            )
            out += self.event_created(mve, ts_ms, Channel.MULTIVARIATE_MARKET_LIFECYCLE)
        mve = MarketRef(self._mve_ticker, "", "KXMVESPORTS-" + ref.event_ticker, "KXMVESPORTS")
        kind = ("created", "activated", "determined", "settled")[step]
        out += self.lifecycle(mve, kind, ts_ms, Channel.MULTIVARIATE_MARKET_LIFECYCLE)
        return out

    def _order_group(self, ts_ms: int) -> TapeEvent:
        kind = _GROUP_CYCLE[self._group_step % len(_GROUP_CYCLE)]
        if kind == "created":
            self._group_id = self._uuid()
        self._group_step += 1
        msg: dict[str, Any] = {"event_type": kind, "order_group_id": self._group_id, "ts_ms": ts_ms}
        if kind in ("created", "limit_updated"):
            msg["contracts_limit_fp"] = count_fp(self._rng.randrange(10, 1000))
        return TapeEvent(Channel.ORDER_GROUP_UPDATES, "order_group_updates", None, msg)

    def _communication(self, ref: MarketRef, ts_ms: int) -> TapeEvent:
        kind = _RFQ_CYCLE[self._rfq_step % len(_RFQ_CYCLE)]
        self._rfq_step += 1
        when = _rfc3339_s(ts_ms)
        rfq = self._rfq
        if kind == "rfq_created":
            rfq.clear()
            rfq.update(
                id=self._uuid(), market=ref.ticker, event=ref.event_ticker, quote=self._uuid()
            )
            msg: dict[str, Any] = {
                "id": rfq["id"],
                "creator_id": _OBSCURED,
                "market_ticker": rfq["market"],
                "event_ticker": rfq["event"],
                "contracts_fp": count_fp(self._rng.randrange(1, 500)),
                "created_ts": when,
            }
        elif kind == "rfq_deleted":
            msg = {
                "id": rfq["id"],
                "creator_id": _OBSCURED,
                "market_ticker": rfq["market"],
                "deleted_ts": when,
            }
        else:
            msg = {
                "quote_id": rfq["quote"],
                "rfq_id": rfq["id"],
                "quote_creator_id": self._user_id,
                "rfq_creator_id": _OBSCURED,
                "market_ticker": rfq["market"],
            }
            if kind == "quote_executed":
                msg.update(order_id=self._uuid(), client_order_id="", executed_ts=when)
            else:
                yes_bid = self._rng.randrange(1, 99)
                msg.update(
                    yes_bid_dollars=PRICE_DOLLARS[yes_bid],
                    no_bid_dollars=PRICE_DOLLARS[99 - yes_bid],
                )
                if kind == "quote_created":
                    msg["created_ts"] = when
                else:
                    msg["accepted_side"] = "yes"
        return TapeEvent(Channel.COMMUNICATIONS, kind, rfq["market"], msg, rfq["id"])

    def user_fill(
        self, ref: MarketRef, trade_id: str, side: str, yes_price: int, count: int, ts_ms: int
    ) -> list[TapeEvent]:
        """The simulated user was the taker of a trade: fill, user_order, market_position."""
        order_id = self._uuid()
        position = self._positions.get(ref.ticker, 0) + (count if side == "yes" else -count)
        self._positions[ref.ticker] = position
        book_side = "bid" if side == "yes" else "ask"
        price = yes_price if side == "yes" else 100 - yes_price
        cost_e6 = count * price * 10_000
        fee_e6 = (count * 700 * yes_price * (100 - yes_price)) // 100 * 10 // 100  # 0.07 p (1-p)
        fill = {
            "trade_id": trade_id,
            "order_id": order_id,
            "client_order_id": f"sim-{order_id[:8]}",
            "market_ticker": ref.ticker,
            "exchange_index": 1,
            "is_taker": True,
            "side": side,
            "ts": ts_ms // 1000,
            "ts_ms": ts_ms,
            "yes_price_dollars": PRICE_DOLLARS[yes_price],
            "count_fp": count_fp(count),
            "fee_cost": dollars6(fee_e6),
            "action": "buy",
            "post_position_fp": count_fp(position),
            "purchased_side": side,
            "outcome_side": side,
            "book_side": book_side,
        }
        order = {
            "order_id": order_id,
            "user_id": self._user_id,
            "ticker": ref.ticker,
            "exchange_index": 1,
            "status": "executed",
            "side": side,
            "is_yes": side == "yes",
            "outcome_side": side,
            "book_side": book_side,
            "yes_price_dollars": PRICE_DOLLARS[yes_price],
            "fill_count_fp": count_fp(count),
            "remaining_count_fp": "0.00",
            "initial_count_fp": count_fp(count),
            "taker_fill_cost_dollars": dollars6(cost_e6),
            "maker_fill_cost_dollars": "0.000000",
            "taker_fees_dollars": dollars6(fee_e6),
            "maker_fees_dollars": "0.000000",
            "client_order_id": fill["client_order_id"],
            "created_time": _rfc3339_s(ts_ms),
            "created_ts_ms": ts_ms,
            "last_update_reason": "Trade",
        }
        pos = {
            "user_id": self._user_id,
            "market_ticker": ref.ticker,
            "position_fp": count_fp(position),
            "position_cost_dollars": dollars6(abs(position) * price * 10_000),
            "realized_pnl_dollars": "0.000000",
            "fees_paid_dollars": dollars6(fee_e6),
            "position_fee_cost_dollars": dollars6(fee_e6),
            "volume_fp": count_fp(count),
        }
        return [
            TapeEvent(Channel.FILL, "fill", ref.ticker, fill),
            TapeEvent(Channel.USER_ORDERS, "user_order", ref.ticker, order),
            TapeEvent(Channel.MARKET_POSITIONS, "market_position", ref.ticker, pos),
        ]
