"""Every command and error code of docs/protocol.md sections 4 and 5, over a real socket."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from replay.server import Switches
from tests.replay.server.conftest import client, running


def _error_code(frame: dict[str, Any]) -> int:
    assert frame["type"] == "error", frame
    return int(frame["msg"]["code"])


async def test_subscribe_answers_one_subscribed_per_channel_with_the_command_id() -> None:
    async with running() as server, client(server) as c:
        tickers = list(server.tape.market_tickers())[:2]
        cid = await c.command(
            "subscribe",
            {"channels": ["orderbook_delta", "ticker", "trade"], "market_tickers": tickers},
        )
        acks = await c.replies(cid, 3)
        assert [a["type"] for a in acks] == ["subscribed"] * 3
        assert [a["msg"]["channel"] for a in acks] == ["orderbook_delta", "ticker", "trade"]
        assert [a["msg"]["sid"] for a in acks] == [1, 2, 3]
        assert all("sid" not in a and "seq" not in a for a in acks)


async def test_orderbook_subscription_starts_with_one_snapshot_per_market_from_seq_1() -> None:
    async with running() as server, client(server) as c:
        tickers = list(server.tape.market_tickers())[:3]
        (sid,) = await c.subscribe(["orderbook_delta"], market_tickers=tickers)
        for _ in range(20):
            await c.recv()
        frames = c.data(sid)
        assert [f["type"] for f in frames[:3]] == ["orderbook_snapshot"] * 3
        assert {f["msg"]["market_ticker"] for f in frames[:3]} == set(tickers)
        assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))


async def test_each_subscription_counts_its_own_seq() -> None:
    async with running(rate_fps=1500) as server, client(server) as c:
        tickers = list(server.tape.market_tickers())
        book_sid, trade_sid, life_sid = await c.subscribe(
            ["orderbook_delta", "trade"], market_tickers=tickers
        ) + await c.subscribe(["market_lifecycle_v2"])
        for _ in range(400):
            await c.recv()
        for sid in (book_sid, trade_sid):
            seqs = [f["seq"] for f in c.data(sid)]
            assert seqs and seqs == list(range(1, len(seqs) + 1))
        assert all("seq" not in f for f in c.data(type_="ticker"))
        assert life_sid == 3


async def test_unsubscribe_answers_unsubscribed_with_id_sid_and_seq_and_stops_data() -> None:
    async with running() as server, client(server) as c:
        (sid,) = await c.subscribe(
            ["orderbook_delta"], market_tickers=list(server.tape.market_tickers())
        )
        cid = await c.command("unsubscribe", {"sids": [sid]})
        reply = await c.reply(cid)
        assert (
            reply["type"] == "unsubscribed"
            and reply["sid"] == sid
            and isinstance(reply["seq"], int)
        )
        await c.sync()
        before = len(c.data(sid))
        listing = await c.sync()
        assert listing["msg"] == []
        assert len(c.data(sid)) == before


async def test_list_subscriptions_answers_ok_with_an_array_of_channel_and_sid() -> None:
    async with running() as server, client(server) as c:
        await c.subscribe(["ticker", "trade"])
        reply = await c.sync()
        assert reply["type"] == "ok"
        assert reply["msg"] == [{"channel": "ticker", "sid": 1}, {"channel": "trade", "sid": 2}]


async def test_add_and_delete_markets_answer_ok_with_the_full_market_set() -> None:
    async with running() as server, client(server) as c:
        a, b, d = list(server.tape.market_tickers())[:3]
        (sid,) = await c.subscribe(["orderbook_delta"], market_ticker=a)
        cid = await c.command(
            "update_subscription", {"sid": sid, "action": "add_markets", "market_tickers": [b, d]}
        )
        ok = await c.reply(cid)
        assert ok["type"] == "ok" and ok["sid"] == sid and ok["msg"]["market_tickers"] == [a, b, d]
        await c.sync()
        snapshots = {f["msg"]["market_ticker"] for f in c.data(sid, "orderbook_snapshot")}
        assert snapshots == {a, b, d}
        cid = await c.command(
            "update_subscription", {"sids": [sid], "action": "delete_markets", "market_ticker": b}
        )
        ok = await c.reply(cid)
        assert ok["msg"]["market_tickers"] == [a, d]
        after = [await c.recv() for _ in range(60)]
        assert [f for f in after if f.get("sid") == sid and f["msg"]["market_ticker"] == b] == []


async def test_get_snapshot_replies_with_the_command_id_on_the_sid_seq_counter() -> None:
    async with running() as server, client(server) as c:
        ticker = server.tape.market_tickers()[0]
        (sid,) = await c.subscribe(["orderbook_delta"], market_ticker=ticker)
        await c.sync()
        last = c.data(sid)[-1]["seq"]
        cid = await c.command(
            "update_subscription",
            {"sid": sid, "action": "get_snapshot", "market_tickers": [ticker]},
        )
        snap = await c.reply(cid)
        assert snap["type"] == "orderbook_snapshot" and snap["sid"] == sid
        assert snap["seq"] > last
        seqs = [f["seq"] for f in c.data(sid)]
        assert seqs == list(range(1, len(seqs) + 1))


async def test_ticker_send_initial_snapshot_sends_the_current_ticker_of_each_market() -> None:
    async with running(rate_fps=0) as server, client(server) as c:
        tickers = list(server.tape.market_tickers())[:2]
        (sid,) = await c.subscribe(["ticker"], market_tickers=tickers, send_initial_snapshot=True)
        await c.sync()
        assert [f["msg"]["market_ticker"] for f in c.data(sid)] == tickers


async def test_cfbenchmarks_indices_can_be_added_listed_and_removed() -> None:
    async with running(rate_fps=0, index_hz=20) as server, client(server) as c:
        (sid,) = await c.subscribe(["cfbenchmarks_value"])
        cid = await c.command(
            "update_subscription",
            {"sid": sid, "action": "subscribe_indices", "index_ids": ["BRTI"]},
        )
        ok = await c.reply(cid)
        assert (
            ok["type"] == "ok"
            and ok["sid"] == sid
            and "seq" in ok
            and ok["msg"] == {"index_ids": ["BRTI"]}
        )
        for _ in range(3):
            frame = await c.recv()
            assert frame["type"] == "cfbenchmarks_value" and frame["msg"]["index_id"] == "BRTI"
        cid = await c.command("update_subscription", {"sid": sid, "action": "indexlist"})
        listing = await c.reply(cid)
        assert (
            listing["type"] == "cfbenchmarks_value_indexlist"
            and "BRTI" in listing["msg"]["index_ids"]
        )
        cid = await c.command(
            "update_subscription",
            {"sid": sid, "action": "unsubscribe_indices", "index_ids": ["BRTI"]},
        )
        assert (await c.reply(cid))["msg"] == {"index_ids": []}


async def test_pyth_all_mode_ignores_single_unsubscribes_until_all_is_removed() -> None:
    async with running(rate_fps=0, index_hz=20) as server, client(server) as c:
        (sid,) = await c.subscribe(["pyth_value"], underlying_tickers=["all"])
        frame = await c.recv()
        assert frame["type"] == "pyth_value"
        cid = await c.command(
            "update_subscription",
            {
                "sid": sid,
                "action": "unsubscribe_underlyings",
                "underlying_tickers": ["Crypto.BTC/USD"],
            },
        )
        assert (await c.reply(cid))["msg"] == {"underlying_tickers": ["all"]}
        cid = await c.command("update_subscription", {"sid": sid, "action": "underlying_list"})
        assert (await c.reply(cid))["type"] == "pyth_value_underlying_list"
        cid = await c.command(
            "update_subscription",
            {"sid": sid, "action": "unsubscribe_underlyings", "underlying_tickers": ["all"]},
        )
        assert (await c.reply(cid))["msg"] == {"underlying_tickers": []}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["nope"]}}, 8),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["multivariate"]}}, 8),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}}, 14),
        ({"id": 1, "cmd": "unsubscribe", "params": {"sids": [99]}}, 7),
        (
            {"id": 1, "cmd": "update_subscription", "params": {"sid": 99, "action": "add_markets"}},
            7,
        ),
        ({"id": 1, "cmd": "frobnicate", "params": {}}, 5),
        ({"id": 1}, 5),
        ({"id": 1, "cmd": "subscribe"}, 2),
        ({"id": 1, "cmd": "unsubscribe"}, 2),
        ({"id": 1, "cmd": "update_subscription"}, 2),
        ({"id": 1, "cmd": "subscribe", "params": {}}, 3),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": []}}, 3),
        ({"id": 1, "cmd": "unsubscribe", "params": {}}, 4),
        ({"id": 1, "cmd": "update_subscription", "params": {"action": "add_markets"}}, 12),
        (
            {
                "id": 1,
                "cmd": "update_subscription",
                "params": {"sids": [1, 2], "action": "add_markets"},
            },
            12,
        ),
        (
            {
                "id": 1,
                "cmd": "update_subscription",
                "params": {"sid": 1, "sids": [1], "action": "x"},
            },
            12,
        ),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": "ticker"}}, 11),
        (
            {
                "id": 1,
                "cmd": "subscribe",
                "params": {"channels": ["ticker"], "market_tickers": "X"},
            },
            11,
        ),
        (
            {
                "id": 1,
                "cmd": "subscribe",
                "params": {"channels": ["ticker"], "market_ticker": "A", "market_tickers": ["B"]},
            },
            11,
        ),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["trade"], "market_ids": ["x"]}}, 11),
        (
            {
                "id": 1,
                "cmd": "subscribe",
                "params": {"channels": ["ticker"], "skip_ticker_ack": "yes"},
            },
            11,
        ),
        ({"id": 1, "cmd": "unsubscribe", "params": {"sids": ["one"]}}, 11),
        (
            {
                "id": 1,
                "cmd": "subscribe",
                "params": {"channels": ["communications"], "shard_factor": 0},
            },
            19,
        ),
        (
            {
                "id": 1,
                "cmd": "subscribe",
                "params": {"channels": ["communications"], "shard_key": 1},
            },
            20,
        ),
        (
            {
                "id": 1,
                "cmd": "subscribe",
                "params": {"channels": ["communications"], "shard_factor": 4, "shard_key": 4},
            },
            21,
        ),
        (
            {
                "id": 1,
                "cmd": "subscribe",
                "params": {"channels": ["communications"], "shard_factor": 101},
            },
            22,
        ),
    ],
)
async def test_bad_commands_get_the_spec_error_code(body: dict[str, Any], code: int) -> None:
    async with running(rate_fps=0) as server, client(server) as c:
        await c.send_raw(json.dumps(body))
        reply = await c.reply(1)
        assert _error_code(reply) == code
        assert reply["msg"]["msg"]  # the spec's name, never empty
        assert (await c.sync())["type"] == "ok"  # and the connection lives on


@pytest.mark.parametrize(
    ("action", "extra", "code"),
    [
        (None, {}, 15),
        ("", {}, 15),
        ("teleport", {}, 13),
        ("subscribe_indices", {"index_ids": ["BRTI"]}, 13),  # not a cfbenchmarks sid
        ("add_markets", {}, 14),
        ("get_snapshot", {}, 14),
        ("get_snapshot", {"market_tickers": ["NOT-SUBSCRIBED"]}, 11),
    ],
)
async def test_update_subscription_errors_name_the_missing_or_bad_part(
    action: str | None, extra: dict[str, Any], code: int
) -> None:
    async with running(rate_fps=0) as server, client(server) as c:
        (sid,) = await c.subscribe(
            ["orderbook_delta"], market_ticker=server.tape.market_tickers()[0]
        )
        params: dict[str, Any] = {"sid": sid, **extra}
        if action is not None:
            params["action"] = action
        reply = await c.reply(await c.command("update_subscription", params))
        assert _error_code(reply) == code


async def test_index_and_underlying_actions_without_ids_answer_24_and_28() -> None:
    async with running(rate_fps=0) as server, client(server) as c:
        cfb, pyth = await c.subscribe(["cfbenchmarks_value", "pyth_value"])
        r1 = await c.reply(
            await c.command("update_subscription", {"sid": cfb, "action": "subscribe_indices"})
        )
        r2 = await c.reply(
            await c.command("update_subscription", {"sid": pyth, "action": "subscribe_underlyings"})
        )
        assert (_error_code(r1), _error_code(r2)) == (24, 28)
        assert (
            r1["sid"] == cfb and "seq" in r1
        )  # a subscription-scoped error on a sequenced channel


async def test_market_limit_answers_26() -> None:
    limited = Switches(max_markets_per_subscription=2)
    async with running(rate_fps=0, switches=limited) as server, client(server) as c:
        tickers = list(server.tape.market_tickers())
        reply = await c.reply(
            await c.command("subscribe", {"channels": ["ticker"], "market_tickers": tickers[:3]})
        )
        assert _error_code(reply) == 26


async def test_malformed_and_non_object_frames_answer_error_1_and_keep_the_connection() -> None:
    async with running(rate_fps=0) as server, client(server) as c:
        for raw in ("{not json", "[1, 2]", "42", b"\xff\xfe"):
            await c.send_raw(raw)
            frame = await c.recv()
            assert _error_code(frame) == 1 and "id" not in frame
        assert (await c.sync())["type"] == "ok"


async def test_a_subscription_acks_before_any_of_its_data() -> None:
    async with running(rate_fps=2000) as server, client(server) as c:
        cid = await c.command(
            "subscribe",
            {"channels": ["orderbook_delta"], "market_tickers": list(server.tape.market_tickers())},
        )
        first = await c.recv()
        assert first["id"] == cid and first["type"] == "subscribed"


async def test_use_yes_price_reports_no_bids_on_the_yes_scale() -> None:
    async with running(rate_fps=0) as server, client(server) as c:
        ticker = server.tape.market_tickers()[0]
        (sid,) = await c.subscribe(["orderbook_delta"], market_ticker=ticker, use_yes_price=True)
        await c.sync()
        snap = c.data(sid, "orderbook_snapshot")[0]
        truth = server.book(ticker)
        assert truth is not None
        expected = sorted((Decimal(1) - Decimal(p), Decimal(q)) for p, q in truth["no"].items())
        assert [(Decimal(p), Decimal(q)) for p, q in snap["msg"]["no_dollars_fp"]] == expected


# -- the open-question switches (docs/protocol.md section 11) ----------------------------------


@pytest.mark.parametrize(("control_seq", "offset"), [("peek", 0), ("consume", 1)])
async def test_control_seq_decides_whether_replies_consume_a_seq(
    control_seq: str, offset: int
) -> None:
    async with (
        running(rate_fps=0, switches=Switches(control_seq=control_seq)) as server,  # type: ignore[arg-type]
        client(server) as c,
    ):
        tickers = server.tape.market_tickers()[:2]
        (sid,) = await c.subscribe(["orderbook_delta"], market_tickers=tickers)
        await c.sync()
        last = c.data(sid)[-1]["seq"]
        reply = await c.reply(await c.command("unsubscribe", {"sids": [sid]}))
        assert reply["seq"] == last + offset


async def test_first_seq_and_shared_snapshot_seq_switches() -> None:
    switches = Switches(first_seq=0, snapshot_seq="shared")
    async with running(rate_fps=0, switches=switches) as server, client(server) as c:
        (sid,) = await c.subscribe(
            ["orderbook_delta"], market_tickers=server.tape.market_tickers()[:3]
        )
        await c.sync()
        assert [f["seq"] for f in c.data(sid)] == [0, 0, 0]


async def test_orderbook_without_tickers_can_serve_all_markets() -> None:
    switches = Switches(orderbook_without_tickers="all")
    async with running(rate_fps=0, switches=switches) as server, client(server) as c:
        (sid,) = await c.subscribe(["orderbook_delta"], send_initial_snapshot=True)
        await c.sync()
        snapshots = {f["msg"]["market_ticker"] for f in c.data(sid, "orderbook_snapshot")}
        assert snapshots == set(server.tape.market_tickers())


@pytest.mark.parametrize(
    ("switches", "params", "code"),
    [
        (Switches(), {"channels": ["market_lifecycle_v2"], "market_ticker": "X"}, None),
        (
            Switches(filter_on_unfiltered="error"),
            {"channels": ["market_lifecycle_v2"], "market_ticker": "X"},
            11,
        ),
        (Switches(), {"channels": ["ticker"], "frobnicate": 1}, None),
        (Switches(unknown_params="error"), {"channels": ["ticker"], "frobnicate": 1}, 11),
        (Switches(), {"channels": ["ticker"], "market_ticker": "NO-SUCH-MARKET"}, None),
        (
            Switches(unknown_markets="error"),
            {"channels": ["ticker"], "market_ticker": "NO-SUCH-MARKET"},
            11,
        ),
    ],
)
async def test_unsupported_params_are_ignored_or_refused_by_switch(
    switches: Switches, params: dict[str, Any], code: int | None
) -> None:
    async with running(rate_fps=0, switches=switches) as server, client(server) as c:
        reply = await c.reply(await c.command("subscribe", params))
        if code is None:
            assert reply["type"] == "subscribed"
        else:
            assert _error_code(reply) == code


async def test_legacy_wire_snapshots_use_integer_cents() -> None:
    async with running(rate_fps=0, switches=Switches(wire="legacy")) as server, client(server) as c:
        ticker = server.tape.market_tickers()[0]
        (sid,) = await c.subscribe(["orderbook_delta"], market_ticker=ticker)
        await c.sync()
        msg = c.data(sid, "orderbook_snapshot")[0]["msg"]
        assert "yes_dollars_fp" not in msg
        assert all(isinstance(p, int) and isinstance(q, int) for p, q in msg["yes"] + msg["no"])
