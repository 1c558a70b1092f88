"""A longer fault soak: random faults and controls for a while; the consumer never notices.

Behind `@pytest.mark.soak`; the duration is KALSHI_TAPE_SOAK_S seconds (default 5).
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from recorder.link.policies import DisconnectReason as R
from stream import Overflow

from .live_helpers import (
    Observer,
    Reader,
    book_matches_truth,
    sim_server,
    trade_id,
    watched_session,
)

pytestmark = [pytest.mark.soak, pytest.mark.timeout(600)]

FAULTS = [
    ("close", {"code": 1000}),
    ("close", {"code": 1001}),
    ("close", {"code": 1011}),
    ("close", {"code": 1013}),
    ("drop", {}),
    ("no_pong", {}),
    ("stall", {"duration_s": 2.0}),
    ("gap", {}),
    ("dup", {}),
    ("reorder", {}),
    ("malformed", {}),
    ("bad_utf8", {}),
    ("oversized", {}),
]


async def test_a_session_survives_a_storm_of_faults_and_ends_with_the_true_book() -> None:
    duration_s = float(os.environ.get("KALSHI_TAPE_SOAK_S", "5"))
    rng = random.Random(int(os.environ.get("KALSHI_TAPE_SOAK_SEED", "1")))
    async with sim_server(markets=3, rate_fps=800.0) as server:
        ticker = server.tape.market_tickers()[0]
        async with Observer(server.url) as observer:
            observer_no = server.connections[0].conn_no  # faults are for the session only
            watched = watched_session(
                server,
                max_reconnect_attempts=1000,
                ping_interval_s=0.3,
                ping_timeout_s=0.3,
                close_timeout_s=0.3,
                stale_floor_s=0.5,
                stale_min_observations=10,
                stale_check_interval_s=0.1,
                server_unavailable_delay_s=0.1,
            )
            live = await watched.session.open()
            trades = Reader(
                await live.subscribe_trade(
                    raw=True, overflow=Overflow.DROP_OLDEST, maxsize=1_000_000
                )
            )
            book = Reader(await live.orderbook(ticker, maxsize=1_000_000))
            injected = 0
            loop = asyncio.get_running_loop()
            end = loop.time() + duration_s
            while loop.time() < end:
                await asyncio.sleep(rng.uniform(0.1, 0.5))
                choice = rng.random()
                if choice < 0.1:
                    await live.rotate()
                elif choice < 0.15:
                    await live.kill()
                elif live.is_connected:
                    kind, args = rng.choice(FAULTS)
                    for conn in server.connections:
                        if conn.conn_no != observer_no:
                            injected += server.inject(kind, conn.conn_no, **args)
            await asyncio.sleep(1.0)  # let the last fault play out
            assert live.is_connected
            assert await book_matches_truth(live, server, ticker, timeout_s=10)
            await observer.sync(7)
            got = [trade_id(frame) for frame in trades.items]
            assert len(got) == len(set(got))  # never a trade twice
            assert set(got) <= set(observer.trade_ids)  # never one the exchange did not send
        assert not trades.ended and not book.ended  # the iterators never stopped
        stats = live.stats
        assert stats.connects == stats.disconnects + 1
        assert stats.reactive_disconnects + stats.proactive_disconnects == stats.disconnects
        assert sum(stats.disconnects_by_reason.values()) == stats.disconnects
        assert R.USER_REQUESTED in stats.disconnects_by_reason or stats.rotations == 0
        await live.close()
