"""The synthetic market: deterministic, realistic books, and frames that agree with the truth."""

from __future__ import annotations

import json
from decimal import Decimal

from replay.server import ServerConfig, Switches, SyntheticMarket
from tests.replay.server.conftest import apply_books, client, running

EPOCH_MS = 1_790_000_000_000


def _market(**overrides: object) -> SyntheticMarket:
    values: dict[str, object] = {"auth": "open", "markets": 12, "seed": 5, "rate_fps": 1000.0}
    values.update(overrides)
    return SyntheticMarket(ServerConfig(**values), EPOCH_MS)  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_events_and_another_seed_does_not() -> None:
    a = [e.msg for e in _market().step(3000)]
    b = [e.msg for e in _market().step(3000)]
    c = [e.msg for e in _market(seed=6).step(3000)]
    assert a == b
    assert a != c


def test_pacing_does_not_change_the_event_sequence() -> None:
    coarse = _market(index_hz=0)
    one_go = [e for i in range(1, 6) for e in coarse.pull(float(i))]
    m = _market(index_hz=0)
    in_steps = [e for i in range(1, 51) for e in m.pull(i / 10)]
    assert [e.msg for e in one_go] == [e.msg for e in in_steps]


def test_tickers_look_like_series_event_market_tickers() -> None:
    for ticker in _market().market_tickers():
        series, event_date, strike = ticker.split("-")
        assert series.startswith("KX") and series.isupper()
        assert len(event_date) >= 7 and strike[0] in "BT"


def test_books_start_with_both_ladders_within_the_depth_bounds() -> None:
    m = _market(depth_min=10, depth_max=30)
    for view in m.books():
        assert 10 <= len(view.yes) <= 30 and 10 <= len(view.no) <= 30


def test_deltas_keep_the_book_consistent_and_never_crossed() -> None:
    m = _market()
    books = {v.market_ticker: {"yes": dict(v.yes), "no": dict(v.no)} for v in m.books()}
    for event in m.step(20_000):
        if event.type != "orderbook_delta":
            continue
        p = event.payload
        side = books.setdefault(p["market_ticker"], {"yes": {}, "no": {}})[p["side"]]
        qty = Decimal(side.get(p["price_dollars"], "0")) + Decimal(p["delta_fp"])
        assert qty >= 0
        if qty:
            side[p["price_dollars"]] = f"{qty:.2f}"
        else:
            side.pop(p["price_dollars"], None)
    for view in m.books():
        assert dict(view.yes) == books[view.market_ticker]["yes"]
        assert dict(view.no) == books[view.market_ticker]["no"]
        if view.yes and view.no:
            best_yes = max(Decimal(p) for p, _ in view.yes)
            best_no = max(Decimal(p) for p, _ in view.no)
            assert best_yes + best_no < 1  # YES bid below the YES ask (1 - best NO bid)


def test_ticker_updates_agree_with_the_book() -> None:
    m = _market(mix={"ticker": 1.0})
    for event in m.step(200):
        view = m.book(event.market or "")
        assert view is not None
        best_yes = max((Decimal(p) for p, _ in view.yes), default=Decimal(0))
        best_no = max((Decimal(p) for p, _ in view.no), default=Decimal(0))
        assert Decimal(event.payload["yes_bid_dollars"]) == best_yes
        assert Decimal(event.payload["yes_ask_dollars"]) == (1 - best_no if view.no else 1)


def test_trades_move_the_book_and_emit_the_matching_delta_and_ticker() -> None:
    m = _market(mix={"trade": 1.0})
    events = m.step(300)
    trades = [i for i, e in enumerate(events) if e.type == "trade"]
    assert trades
    for i in trades:
        trade, delta, ticker = events[i : i + 3]
        assert delta.type == "orderbook_delta" and ticker.type == "ticker"
        assert Decimal(delta.payload["delta_fp"]) == -Decimal(trade.payload["count_fp"])
        assert ticker.payload["price_dollars"] == trade.payload["yes_price_dollars"]


def test_every_channel_of_the_spec_gets_traffic() -> None:
    m = _market(settle_every_s=0.5)
    types = {e.type for e in m.step(60_000)}
    assert {
        "orderbook_delta",
        "ticker",
        "trade",
        "fill",
        "user_order",
        "market_position",
        "order_group_updates",
        "market_lifecycle_v2",
        "event_lifecycle",
        "event_fee_update",
        "multivariate_market_lifecycle",
        "rfq_created",
        "quote_created",
    } <= types
    lifecycle = {
        e.payload["event_type"] for e in m.step(120_000) if e.type == "market_lifecycle_v2"
    }
    assert {
        "created",
        "activated",
        "close_date_updated",
        "determined",
        "settled",
        "metadata_updated",
    } <= lifecycle


def test_index_feeds_tick_at_about_one_hertz() -> None:
    m = _market(rate_fps=0)
    events = m.pull(10.0)
    brti = [e for e in events if e.type == "cfbenchmarks_value" and e.key == "BRTI"]
    pyth = [e for e in events if e.type == "pyth_value" and e.key == "Crypto.BTC/USD"]
    fast = [e for e in events if e.type == "cfbenchmarks_value_5hz" and e.key == "BRTI"]
    assert len(brti) == len(pyth) == 11 and len(fast) == 51
    assert json.loads(brti[0].payload["data"])["id"] == "BRTI"


def test_legacy_wire_sends_integer_cents() -> None:
    m = _market(switches=Switches(wire="legacy"), mix={"delta": 0.5, "trade": 0.5})
    events = m.step(100)
    delta = next(e for e in events if e.type == "orderbook_delta")
    trade = next(e for e in events if e.type == "trade")
    assert isinstance(delta.payload["price"], int) and isinstance(delta.payload["delta"], int)
    assert isinstance(trade.payload["yes_price"], int) and "yes_price_dollars" not in trade.payload


async def test_a_client_book_built_from_snapshot_and_deltas_equals_the_truth() -> None:
    async with running(rate_fps=3000, markets=8, settle_every_s=1.0) as server, client(server) as c:
        tickers = list(server.tape.market_tickers())
        (sid,) = await c.subscribe(["orderbook_delta"], market_tickers=tickers)
        while len(c.data(sid)) < 4000:
            await c.recv()
        await server.quiesce()
        await c.sync()
        books = apply_books(c.data(sid))
        assert set(books) == set(tickers)
        for ticker, book in books.items():
            truth = server.book(ticker)
            assert truth is not None and book.same_as(truth), ticker


async def test_two_connections_see_the_same_market_events() -> None:
    async with running(rate_fps=2000) as server, client(server) as a, client(server) as b:
        tickers = list(server.tape.market_tickers())
        await a.subscribe(["orderbook_delta"], market_tickers=tickers)
        await b.subscribe(["orderbook_delta"], market_tickers=tickers)
        for _ in range(300):
            await a.recv()
        await server.quiesce()
        await a.sync()
        await b.sync()
        clocks_a = [
            (f["msg"]["market_ticker"], f["msg"]["clock"]) for f in a.data(type_="orderbook_delta")
        ]
        clocks_b = [
            (f["msg"]["market_ticker"], f["msg"]["clock"]) for f in b.data(type_="orderbook_delta")
        ]
        common = set(clocks_a) & set(clocks_b)
        assert len(common) > 100
        msgs_a = {
            (f["msg"]["market_ticker"], f["msg"]["clock"]): f["msg"]
            for f in a.data(type_="orderbook_delta")
        }
        msgs_b = {
            (f["msg"]["market_ticker"], f["msg"]["clock"]): f["msg"]
            for f in b.data(type_="orderbook_delta")
        }
        assert all(msgs_a[k] == msgs_b[k] for k in common)


async def test_two_servers_with_the_same_seed_send_the_same_bytes() -> None:
    async def first_frames() -> list[bytes]:
        async with running(rate_fps=2000, index_hz=0) as server:
            server.pause()  # before the pump's first step: no event precedes the subscribe
            async with client(server) as c:
                await c.command(
                    "subscribe",
                    {
                        "channels": ["orderbook_delta", "trade"],
                        "market_tickers": list(server.tape.market_tickers()),
                    },
                )
                await c.sync()
                server.resume()
                return [await c.ws.recv(decode=False) for _ in range(500)]

    assert await first_frames() == await first_frames()


async def test_one_sided_snapshots_omit_the_empty_side_or_send_an_empty_list() -> None:
    for empty_side, expected in (("omit", None), ("empty_list", [])):
        async with (
            running(
                rate_fps=0, one_sided_markets=1, switches=Switches(empty_side=empty_side)
            ) as server,
            client(server) as c,
        ):
            ticker = list(server.tape.market_tickers())[-1]
            (sid,) = await c.subscribe(["orderbook_delta"], market_ticker=ticker)
            await c.sync()
            msg = c.data(sid, "orderbook_snapshot")[0]["msg"]
            assert msg.get("no_dollars_fp") == expected and msg["yes_dollars_fp"]
            assert ("no_dollars_fp" in msg) is (expected is not None)
