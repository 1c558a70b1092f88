"""The receive loop shares the event loop: a burst never starves consumers; a recorder's
capture never stops because an attached consumer is slow."""

from __future__ import annotations

import asyncio

import pytest

from stream import BackpressureError, EngineConfig, Overflow

from .live_helpers import Reader, sim_server, watched_session

pytestmark = pytest.mark.timeout(60)


async def test_a_burst_does_not_starve_a_consumer_that_keeps_up() -> None:
    # websockets' recv() returns without suspending while frames are buffered: a receive
    # loop that never yields would run through a whole burst before any consumer.
    async with sim_server(rate_fps=30_000, markets=8) as server:
        w = watched_session(server)
        async with w.session.connect():
            markets = list(server.tape.market_tickers())
            trades = await w.session.subscribe(
                "orderbook_delta", {"market_tickers": markets}, raw=True, maxsize=300,
                overflow=Overflow.ERROR,
            )  # fmt: skip
            reader = Reader(trades)
            # 10,000 frames through a queue of 300 that fails on overflow: about a third of
            # a second at the server's rate on an idle machine, longer on a busy one; how
            # long does not matter, only that the consumer was never starved into overflow
            while len(reader.items) <= 10_000:
                assert reader.error is None, reader.error
                await asyncio.sleep(0.05)
            assert reader.error is None, reader.error
            await reader.stop()


async def test_in_a_recorder_a_slow_consumer_ends_alone_and_the_capture_goes_on() -> None:
    async with sim_server(rate_fps=5000, markets=4) as server:
        w = watched_session(server, engine_config=EngineConfig(backpressure_fatal=False))
        async with w.session.connect():
            await w.session.subscribe_wire("trade", {})
            stuck = await w.session.subscribe("trade", raw=True, attach=True, maxsize=5,
                                              overflow=Overflow.ERROR)  # fmt: skip
            alive = Reader(await w.session.subscribe("trade", raw=True, attach=True))
            await asyncio.sleep(1.0)  # nobody reads `stuck`
            with pytest.raises(BackpressureError):
                async for _ in stuck:
                    pass
            before, recorded = len(alive.items), len(w.sink.records)
            await asyncio.sleep(0.5)
            assert len(alive.items) > before  # the session and the other consumer go on
            assert w.session.state.value == "STREAMING"
            assert len(w.sink.records) > recorded + 50  # and so does the capture
            await alive.stop()
