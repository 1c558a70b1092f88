"""The exchange side of one connection: commands in, replies and subscriptions out.

This module owns the command handling of docs/protocol.md section 4 (subscribe,
unsubscribe, update_subscription with every action, list_subscriptions), the error
codes of section 5 with their exact names, the parameter rules of section 6, sids
per connection and the seq rules of the replies (`Switches.control_seq`). It is
pure: it is handed a command's bytes and writes reply frames to a sink; it reads
no clock and touches no socket, so it is tested without one.
"""

from __future__ import annotations

from typing import Any

import msgspec

from replay.server.config import ServerConfig
from replay.server.params import (
    AUTH_CHANNELS,
    CFB_CHANNELS,
    ERROR_NAMES,
    FILTERED_CHANNELS,
    KNOWN_PARAMS,
    SUBSCRIBABLE,
    Reject,
    flag,
    is_int,
    market_selectors,
    shard_params,
    str_list,
)
from replay.server.payloads import snapshot_payload
from replay.server.subscriptions import FrameSink, Router, Subscription
from replay.server.tape import Tape
from schemas.channels import Channel
from schemas.envelope import encode_json

__all__ = ["Session"]

_decode = msgspec.json.Decoder().decode


class Session:
    """One connection's subscriptions and command handling.

    Args:
        router: the routing table shared by every connection.
        tape: where books, ticker state and index lists come from.
        config: switches and auth mode.
        emit: the connection's send sink; every reply and data frame goes through it,
            so replies and data keep one order. Replies go as text.
        authenticated: False on a public-mode connection without valid headers
            (private channels then answer error 9).
    """

    def __init__(
        self,
        router: Router,
        tape: Tape,
        config: ServerConfig,
        emit: FrameSink,
        *,
        authenticated: bool = True,
    ) -> None:
        self._router = router
        self._tape = tape
        self._switches = config.switches
        self._emit = emit
        self._authenticated = authenticated
        self._next_sid = 1
        self.subscriptions: dict[int, Subscription] = {}

    # -- entry points ----------------------------------------------------------------

    def handle(self, raw: bytes | str) -> None:
        """Process one client frame; replies go to the sink. Never raises on bad input."""
        try:
            obj = _decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            self._error(1, None)
            return
        if not isinstance(obj, dict):
            self._error(1, None)
            return
        cid = obj.get("id")
        cid = cid if is_int(cid) and cid != 0 else None
        cmd = obj.get("cmd")
        handler = (
            {
                "subscribe": self._subscribe,
                "unsubscribe": self._unsubscribe,
                "update_subscription": self._update,
                "list_subscriptions": self._list,
            }.get(cmd)
            if isinstance(cmd, str)
            else None
        )
        if handler is None:
            self._error(5, cid)
            return
        params = obj.get("params")
        if cmd != "list_subscriptions" and not isinstance(params, dict):
            self._error(2, cid)
            return
        try:
            handler(cid, params if isinstance(params, dict) else {})
        except Reject as exc:
            self._error(exc.code, cid, **exc.extra)

    def close(self) -> None:
        """The connection ended: stop routing to its subscriptions."""
        for sub in self.subscriptions.values():
            self._router.remove(sub)
        self.subscriptions.clear()

    def end_subscription(self, sid: int, code: int | None = None) -> bool:
        """End a subscription from the server side (faults, overflow).

        Sends `unsubscribed` (code None) or a terminal `error` with `code` (25, 10).
        Returns False when there is no such sid.
        """
        sub = self.subscriptions.pop(sid, None)
        if sub is None:
            return False
        self._router.remove(sub)
        if code is None:
            frame = {"type": "unsubscribed", "sid": sid, "seq": self._reply_seq(sub)}
            self._emit(encode_json(frame), False)
        else:
            self._error(code, None, sub=sub)
        return True

    # -- replies ---------------------------------------------------------------------

    def _reply_seq(self, sub: Subscription) -> int:
        # Open question 2 (docs/protocol.md section 11.2): do control replies consume a seq number?
        return sub.take_seq() if self._switches.control_seq == "consume" else sub.last_seq()

    def _error(
        self, code: int, cid: int | None, *, sub: Subscription | None = None, **extra: Any
    ) -> None:
        frame: dict[str, Any] = {}
        if cid is not None:
            frame["id"] = cid
        if sub is not None:
            frame["sid"] = sub.sid
            if sub.sequenced:
                frame["seq"] = self._reply_seq(sub)
        elif "sid" in extra:
            frame["sid"] = extra.pop("sid")
        frame["type"] = "error"
        frame["msg"] = {"code": code, "msg": ERROR_NAMES[code], **extra}
        self._emit(encode_json(frame), False)

    def _ok(self, cid: int | None, sub: Subscription, msg: Any) -> None:
        frame: dict[str, Any] = {}
        if cid is not None:
            frame["id"] = cid
        frame.update(sid=sub.sid, seq=self._reply_seq(sub), type="ok", msg=msg)
        self._emit(encode_json(frame), False)

    def _data(
        self, sub: Subscription, type_: str, msg: Any, cid: int | None, seq: int | None = None
    ) -> None:
        frame: dict[str, Any] = {"type": type_, "sid": sub.sid}
        if sub.sequenced:
            frame["seq"] = sub.take_seq() if seq is None else seq
        if cid is not None:
            frame["id"] = cid
        frame["msg"] = msg
        self._emit(encode_json(frame), False)

    def _snapshots(self, sub: Subscription, tickers: list[str], cid: int | None) -> None:
        """One `orderbook_snapshot` per known market, on the sid's seq counter."""
        sw = self._switches
        shared_seq = None
        for ticker in tickers:
            view = self._tape.book(ticker)
            if view is None:
                continue
            if sw.snapshot_seq == "shared":  # open question 3
                shared_seq = sub.take_seq() if shared_seq is None else shared_seq
            payload = snapshot_payload(
                view, use_yes_price=sub.use_yes_price, empty_side=sw.empty_side, wire=sw.wire
            )
            self._data(sub, "orderbook_snapshot", payload, cid, shared_seq)

    def _tickers_now(self, sub: Subscription, tickers: list[str]) -> None:
        for ticker in tickers:
            payload = self._tape.ticker_payload(ticker)
            if payload is not None:
                self._data(sub, "ticker", payload, None)

    # -- parameters --------------------------------------------------------------------

    def _markets(self, params: dict[str, Any], *, ids_allowed: bool) -> list[str] | None:
        return market_selectors(
            params,
            self._tape,
            ids_allowed=ids_allowed,
            unknown_markets=self._switches.unknown_markets,
        )

    def _check_market_limit(self, count: int) -> None:
        limit = self._switches.max_markets_per_subscription
        if limit is not None and count > limit:
            raise Reject(26)

    # -- commands -----------------------------------------------------------------------

    def _subscribe(self, cid: int | None, params: dict[str, Any]) -> None:
        channels = params.get("channels")
        if channels is None or channels == []:
            raise Reject(3)
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise Reject(11)
        if self._switches.unknown_params == "error" and set(params) - KNOWN_PARAMS:
            raise Reject(11)
        for channel in dict.fromkeys(channels):
            try:
                self._subscribe_one(cid, channel, params)
            except Reject as exc:
                self._error(exc.code, cid, **exc.extra)

    def _subscribe_one(self, cid: int | None, channel: str, params: dict[str, Any]) -> None:
        sw = self._switches
        if channel not in SUBSCRIBABLE:
            raise Reject(8)
        if channel in AUTH_CHANNELS and not self._authenticated:
            raise Reject(9)
        options = {
            name: flag(params, name)
            for name in ("send_initial_snapshot", "skip_ticker_ack", "use_yes_price")
        }
        markets: list[str] | None = None
        keys: set[str] | None = None
        shard: tuple[int, int] | None = None
        has_filter = any(
            k in params for k in ("market_ticker", "market_tickers", "market_id", "market_ids")
        )
        if channel in FILTERED_CHANNELS:
            markets = self._markets(params, ids_allowed=channel == Channel.TICKER)
            # Open question 4: the spec answers 14; kalshi-sdk expects all markets.
            no_market = channel == Channel.ORDERBOOK_DELTA and markets is None
            if no_market and sw.orderbook_without_tickers == "error":
                raise Reject(14)
            if markets is not None:
                self._check_market_limit(len(markets))
        elif has_filter and sw.filter_on_unfiltered == "error":
            raise Reject(11)  # open question 4
        if channel in CFB_CHANNELS or channel == Channel.PYTH_VALUE:
            name = "underlying_tickers" if channel == Channel.PYTH_VALUE else "index_ids"
            keys = set()
            if name in params:
                ids = str_list(params[name])
                keys = None if "all" in ids else set(ids)
        if channel == Channel.COMMUNICATIONS:
            if params.get("user_filter", "") not in ("", "self"):
                raise Reject(11)
            shard = shard_params(params)
        sid = self._next_sid
        self._next_sid += 1
        sub = Subscription(
            sid,
            channel,
            self._emit,
            first_seq=sw.first_seq,
            markets=markets,
            keys=keys,
            shard=shard,
            options=options,
        )
        self.subscriptions[sid] = sub
        # The ack goes out before any data of the sid (kalshi-sdk drops data that
        # precedes its ack on a normal subscribe).
        ack: dict[str, Any] = {} if cid is None else {"id": cid}
        ack.update(type="subscribed", msg={"channel": channel, "sid": sid})
        self._emit(encode_json(ack), False)
        initial = markets if markets is not None else list(self._tape.market_tickers())
        if channel == Channel.ORDERBOOK_DELTA:
            self._snapshots(sub, initial, None)
        elif channel == Channel.TICKER and options["send_initial_snapshot"]:
            self._tickers_now(sub, initial)
        self._router.add(sub)

    def _unsubscribe(self, cid: int | None, params: dict[str, Any]) -> None:
        sids = params.get("sids")
        if sids is None or sids == []:
            raise Reject(4)
        if not isinstance(sids, list) or not all(is_int(s) for s in sids):
            raise Reject(11)
        for sid in sids:
            sub = self.subscriptions.pop(sid, None)
            if sub is None:
                self._error(7, cid, sid=sid)
                continue
            self._router.remove(sub)
            frame: dict[str, Any] = {}
            if cid is not None:
                frame["id"] = cid
            frame.update(sid=sid, seq=self._reply_seq(sub), type="unsubscribed")
            self._emit(encode_json(frame), False)

    def _list(self, cid: int | None, params: dict[str, Any]) -> None:
        msg = [{"channel": s.channel, "sid": s.sid} for s in self.subscriptions.values()]
        frame: dict[str, Any] = {} if cid is None else {"id": cid}
        frame.update(type="ok", msg=msg)
        self._emit(encode_json(frame), False)

    def _update(self, cid: int | None, params: dict[str, Any]) -> None:
        has_sid, has_sids = "sid" in params, "sids" in params
        if has_sid == has_sids:
            raise Reject(12)
        if has_sids:
            sids = params["sids"]
            if not isinstance(sids, list) or len(sids) != 1:
                raise Reject(12)
            sid = sids[0]
        else:
            sid = params["sid"]
        if not is_int(sid):
            raise Reject(11)
        sub = self.subscriptions.get(sid)
        if sub is None:
            raise Reject(7, sid=sid)
        action = params.get("action")
        if action is None or action == "":
            raise Reject(15)
        if not isinstance(action, str):
            raise Reject(11)
        try:
            self._act(cid, sub, action, params)
        except Reject as exc:
            self._error(exc.code, cid, sub=sub, **exc.extra)

    def _act(self, cid: int | None, sub: Subscription, action: str, params: dict[str, Any]) -> None:
        channel = sub.channel
        if action in ("add_markets", "delete_markets") and channel in FILTERED_CHANNELS:
            tickers = self._markets(params, ids_allowed=channel == Channel.TICKER)
            if tickers is None:
                raise Reject(14)
            if action == "add_markets":
                added = [t for t in tickers if sub.markets is not None and t not in sub.markets]
                if sub.markets is not None:
                    self._check_market_limit(len(sub.markets) + len(added))
                    self._router.add_markets(sub, added)
            else:
                added = []
                self._router.remove_markets(sub, tickers)
            listing = (
                {}
                if sub.options.get("skip_ticker_ack")
                else {"market_tickers": list(sub.markets or ())}
            )
            self._ok(cid, sub, listing)
            if channel == Channel.ORDERBOOK_DELTA:
                self._snapshots(sub, added, None)
            elif channel == Channel.TICKER and (
                sub.options.get("send_initial_snapshot") or flag(params, "send_initial_snapshot")
            ):
                self._tickers_now(sub, added)
        elif action == "get_snapshot" and channel == Channel.ORDERBOOK_DELTA:
            tickers = self._markets(params, ids_allowed=False)
            if tickers is None:
                raise Reject(14)
            outside = [t for t in tickers if sub.markets is not None and t not in sub.markets]
            if outside:
                raise Reject(11, market_tickers=outside)
            self._snapshots(sub, tickers, cid)
        elif channel in CFB_CHANNELS and action in (
            "subscribe_indices",
            "unsubscribe_indices",
            "indexlist",
        ):
            self._keys_action(cid, sub, action, params, "index_ids", 24)
        elif channel == Channel.PYTH_VALUE and action in (
            "subscribe_underlyings",
            "unsubscribe_underlyings",
            "underlying_list",
        ):
            self._keys_action(cid, sub, action, params, "underlying_tickers", 28)
        else:
            raise Reject(13)

    def _keys_action(
        self,
        cid: int | None,
        sub: Subscription,
        action: str,
        params: dict[str, Any],
        name: str,
        missing: int,
    ) -> None:
        """cfbenchmarks index ids and pyth underlyings; `["all"]` is all-mode."""
        if action in ("indexlist", "underlying_list"):
            type_ = (
                f"{sub.channel}_indexlist" if name == "index_ids" else "pyth_value_underlying_list"
            )
            self._data(sub, type_, {name: list(self._tape.index_ids(sub.channel))}, cid)
            return
        if name not in params or params[name] in (None, []):
            raise Reject(missing)
        ids = str_list(params[name])
        if action.startswith("subscribe"):
            if "all" in ids:
                sub.keys = None
            elif sub.keys is not None:
                sub.keys.update(ids)
        elif "all" in ids:
            sub.keys = set()  # all-mode off
        elif sub.keys is not None:
            # In all-mode an individual unsubscribe does not exclude (docs/protocol.md section 4).
            sub.keys.difference_update(ids)
        sub.keyed = True
        self._ok(cid, sub, {name: ["all"] if sub.keys is None else sorted(sub.keys)})
