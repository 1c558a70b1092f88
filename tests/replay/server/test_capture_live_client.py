"""Our own live client (`recorder.link.live.LiveSession`) against the replay server.

The client meets the capture as it met Kalshi: it subscribes, streams, is dropped
where the recorder was dropped (`--reproduce-disconnects`), reconnects on its own,
resubscribes, and ends with the books of the truth and every recorded trade.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from replay.server.capture_tape import CaptureTape
from stream import ConnectionState
from stream.decode import msg_bytes

from ...recorder.live_helpers import Reader, book_matches_truth, eventually, watched_session
from ..test_replay_session import MARKETS, record_live
from .capture_helpers import consumer_view, recorded, serving
from .test_capture_serving import book_story

pytestmark = pytest.mark.timeout(60)


async def test_our_live_client_reconnects_where_the_recorder_did_and_ends_with_the_truth(
    tmp_path: Path,
) -> None:
    await record_live(tmp_path, book_story)  # one reactive disconnect (NETWORK_ERROR, 1006)
    live = await consumer_view(tmp_path, ["trade"])
    tape = CaptureTape(tmp_path, speed=None, reproduce_disconnects=True)
    async with serving(tape) as server:
        watched = watched_session(server)
        session = watched.session
        await session.open()
        books = Reader(await session.subscribe_orderbook_delta(MARKETS, raw=True))
        trades = Reader(await session.subscribe_trade(raw=True))
        await eventually(lambda: tape.finished, 20.0)
        for ticker in MARKETS:
            assert await book_matches_truth(session, server, ticker), ticker
        assert ConnectionState.RECONNECTING in watched.states
        assert [e.event.code for e in watched.events("close")] == [1006]
        server.resume()
        await session.close()
        await books.stop()
        await trades.stop()
    assert tape.closes_served == 1
    got = [("trade", msg_bytes(f.raw)) for f in trades.items]
    assert got == recorded(live.frames)  # type: ignore[attr-defined]
