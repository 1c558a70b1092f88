"""A recorded capture as the exchange's tape: the replay server's source of events.

This module owns `CaptureTape`, the `AsyncTape` that `kalshi-tape serve --from ROOT`
serves. A `ReplaySession` runs as a task in the server's loop, with one raw
callback per served channel, so the tape receives exactly what the live consumer
saw (gap-dropped deltas dropped, make-before-break duplicates removed, books
reset at reconnects). Each delivered frame becomes a `TapeEvent` whose `msg` is
the recorded payload byte for byte; the router gives it each subscriber's own sid
and seq. Events wait in a bounded buffer: when it is full the callback waits,
and the replay with it (backpressure). Each keeps its capture time, so `pull`
serves what is due at `speed` times real time; unpaced (speed None), the server
`take`s events only while its clients have room.

Books, ticker state, market ids and index ids change as events are SERVED, not
as they are read, so `book()` (a new subscriber's snapshot) is the truth at the
served position (`replay.server.capture_books`). With `reproduce_disconnects`,
the recorded reactive disconnects (`replay.server.capture_closes`) become close
events at their place among the frames. It knows nothing of sockets or sids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from replay.reading.capture import Capture
from replay.reading.session import ReplaySession, to_ns
from replay.server.capture_books import CaptureBooks
from replay.server.capture_closes import RecordedClose, RunClock, recorded_closes
from replay.server.tape import CLOSE_CHANNEL, BookView, TapeEvent, close_event
from schemas.channels import Channel
from schemas.errors import ConfigError
from schemas.storage import StorageOptions
from stream.decode import msg_bytes
from stream.events import ErrorReport, Frame
from stream.queues import DeliveryQueue, Overflow
from stream.subscriptions import Delivery

__all__ = ["CaptureTape"]

log = logging.getLogger(__name__)

_decode = msgspec.json.Decoder().decode
#: Replies to the recorder's own commands: nobody else asked for them (docs/protocol.md section 4).
_REPLY_TYPES: Final = frozenset(
    {"cfbenchmarks_value_indexlist", "cfbenchmarks_value_5hz_indexlist",
     "pyth_value_underlying_list"}
)  # fmt: skip
_INDEX_FIELD: Final = {
    Channel.CFBENCHMARKS_VALUE: "index_id",
    Channel.CFBENCHMARKS_VALUE_5HZ: "index_id",
    Channel.PYTH_VALUE: "underlying_ticker",
}
#: The most events one paced pull returns, so the pump yields to the senders.
_MAX_PULL: Final = 4096

_Item = tuple[int, TapeEvent]  # (capture offset ns, event)


def _shard_key(payload: dict[str, Any]) -> str | None:
    # Communications shard by RFQ (batch events by rfq_batch_id: docs/protocol.md section 8.10), as
    # the synthetic market keys them (replay.server.activity).
    for name in ("rfq_batch_id", "rfq_id", "id"):
        value = payload.get(name)
        if isinstance(value, str):
            return value
    return None


class CaptureTape:
    """A capture served as the exchange's events (an `AsyncTape`).

    Args:
        root: the capture root, or the `Capture` index of one already opened.
        channels: channels to serve (default: every channel the capture holds).
        markets: serve only these markets (and events of no market).
        start, end: serve from / until these times (datetime, ISO-8601, ns); at
            `start` the books are what they were live then.
        speed: 1.0 real time, k times real time, or None: as fast as clients read.
        reproduce_disconnects: close every client where the recorder met a reactive
            disconnect, with the recorded code (no close frame for 1006).
        buffer_events: events read ahead of the served position at most.
        storage: endpoint, region and credentials of an object-store root (default:
            the AWS environment).

    Raises:
        ConfigError: a bad root, time or speed; a channel or market the capture lacks.
    """

    waits_for_subscriber = True

    def __init__(
        self,
        root: str | Path | Capture,
        *,
        channels: Iterable[str] | None = None,
        markets: Iterable[str] | None = None,
        start: Any = None,
        end: Any = None,
        speed: float | None = 1.0,
        reproduce_disconnects: bool = False,
        buffer_events: int = 20_000,
        storage: StorageOptions | None = None,
    ) -> None:
        if speed is not None and not 0 < speed < float("inf"):
            raise ConfigError("speed", f"{speed!r} is not a positive number", "or None: max")
        if buffer_events < 16:
            raise ConfigError("buffer_events", "must be >= 16")
        try:
            start_ns, end_ns = to_ns(start, "start"), to_ns(end, "end")
        except ValueError as exc:
            field, _, problem = str(exc).partition(": ")
            raise ConfigError(field, problem, "use ISO-8601, like 2026-11-21T08:00:00Z") from None
        self.speed = speed
        self.paced = speed is not None
        self.reproduces_disconnects = reproduce_disconnects
        self._session = ReplaySession(root, start_ns, end_ns, channels=None, markets=markets,
                                      speed=None, on_error=self._on_error,
                                      storage=storage)  # fmt: skip
        capture = self._session.capture
        if not capture.data_channels:
            raise ConfigError("root", f"{str(capture.root)!r} holds no captured frames",
                              "give the directory `kalshi-tape record` wrote")  # fmt: skip
        self.channels: tuple[str, ...] = tuple(dict.fromkeys(channels or capture.data_channels))
        source = self._session.source
        for channel in self.channels:
            source.validate_subscription(channel, None)  # NotInCapture lists what it holds
        held = frozenset().union(*(capture.markets(c) for c in self.channels))
        wanted = None if markets is None else frozenset(markets)
        if wanted is not None and not wanted <= held:
            sample = ", ".join(sorted(held)[:20]) + (" ..." if len(held) > 20 else "")
            missing = sorted(wanted - held)
            raise ConfigError(
                "markets",
                f"the capture holds no {list(self.channels)} data for {missing}",
                f"it holds {len(held)}: {sample}",
            )
        self._markets = sorted(held if wanted is None else wanted)
        self._market_set = frozenset(self._markets)
        # Markets with book data get a (possibly empty) snapshot before their first one.
        serves_books = Channel.ORDERBOOK_DELTA in self.channels
        self._book_markets = self._market_set & (
            capture.markets(Channel.ORDERBOOK_DELTA) if serves_books else frozenset()
        )
        self._clock = RunClock(capture)
        self._closes: deque[RecordedClose] = deque(
            recorded_closes(capture, self._clock, start_ns, end_ns) if reproduce_disconnects else ()
        )
        # After a seek the replay restores its books silently; a book consumer attached
        # now receives each market's book at the start the moment the replay unmutes,
        # before the first frame after it: the tape's books start from those.
        self._seed: DeliveryQueue | None = None
        if start_ns is not None and Channel.ORDERBOOK_DELTA in self.channels:
            self._seed = DeliveryQueue(1 << 30, Overflow.BLOCK)
            self._seed_cid = self._session.engine.add_consumer(
                Channel.ORDERBOOK_DELTA, owns_wire=False, delivery=Delivery.BOOK, queue=self._seed
            ).cid
        self._buffer: deque[_Item] = deque()
        self._bound = buffer_events
        self._space: asyncio.Future[None] | None = None
        self._origin_ns: int | None = None
        self._last_key = 0
        self._books = CaptureBooks()
        self._tickers: dict[str, dict[str, Any]] = {}
        self._by_id: dict[str, str] = {}
        self._index_ids: dict[str, dict[str, None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._done = False
        self._stopping = False
        #: Engine reports of the replay by kind (gaps and resyncs the capture holds...).
        self.reports: Counter[str] = Counter()
        self.served = 0  # events handed to the server so far
        self.closes_served = 0
        for channel in self.channels:
            self._session.on(channel, raw=True)(self._on_frame)

    # -- lifecycle (AsyncTape) -----------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="capture-tape")

    async def _run(self) -> None:
        try:
            await self._session.run_forever()
        finally:
            while self._closes:  # disconnects after the last frame still happened
                self._append_close(self._closes.popleft())
            self._done = True

    async def stop(self) -> None:
        self._stopping = True
        self._wake()
        await self._session.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    @property
    def finished(self) -> bool:
        """True once the capture is read to its end and every event was served."""
        return self._done and not self._buffer

    def _on_error(self, report: ErrorReport) -> None:
        self.reports[report.kind] += 1
        if report.kind == "session":
            log.error("reading the capture failed: %s; nothing more is served from it (run "
                      "`kalshi-tape verify %s` to find the damaged file)", report.message,
                      self._session.capture.root)  # fmt: skip

    # -- the feed: frames in, in capture order --------------------------------------------

    def _on_frame(self, frame: Frame) -> Awaitable[None] | None:
        if self._stopping:
            return None
        self._add(frame)
        if len(self._buffer) >= self._bound:
            return self._wait_for_space()
        return None

    async def _wait_for_space(self) -> None:
        while len(self._buffer) >= self._bound // 2 and not self._stopping:
            self._space = asyncio.get_running_loop().create_future()
            await self._space

    def _wake(self) -> None:
        if self._space is not None and not self._space.done():
            self._space.set_result(None)

    def _append_close(self, close: RecordedClose) -> None:
        if self._origin_ns is None:
            self._origin_ns = close.key_ns
        offset = max(close.key_ns, self._last_key) - self._origin_ns
        self._buffer.append((offset, close_event(close.code, close.reason)))

    def _add(self, frame: Frame) -> None:
        key = max(self._clock.key(frame.conn, frame.mono_ns), self._last_key)
        closes = self._closes
        while closes and closes[0].key_ns < key:  # a frame at the close's time came first
            self._append_close(closes.popleft())
        self._last_key = key
        if self._origin_ns is None:
            self._origin_ns = key
        if self._seed is not None:
            self._seed_books(key)
        msg = msg_bytes(frame.raw)
        try:
            payload = _decode(msg)
        except (msgspec.DecodeError, ValueError):
            payload = None
        if not isinstance(payload, dict):
            self.reports["not_served"] += 1
            return
        channel, type_, market = frame.channel, frame.type, frame.market_ticker
        index_field = _INDEX_FIELD.get(channel)
        if type_ in _REPLY_TYPES:
            ids = payload.get("index_ids") or payload.get("underlying_tickers")
            for index_id in ids if isinstance(ids, list) else ():
                self._index_ids.setdefault(channel, {})[str(index_id)] = None
            return
        key_id: str | None = None
        if index_field is not None:
            value = payload.get(index_field)
            key_id = value if isinstance(value, str) else None
            if key_id is not None:
                self._index_ids.setdefault(channel, {})[key_id] = None
        elif channel == Channel.COMMUNICATIONS:
            key_id = _shard_key(payload)
        market_id = payload.get("market_id")
        if market_id not in self._by_id and market is not None and isinstance(market_id, str):
            self._by_id[market_id] = market
            self._books.note_market_id(market, market_id)
        event = TapeEvent(channel, type_, market, payload, key_id, msg=msg, binary=frame.binary)
        self._buffer.append((key - self._origin_ns, event))

    def _seed_books(self, key: int) -> None:
        """Served first: the books at the seek's start, as snapshots (diffed like any)."""
        assert self._seed is not None
        assert self._origin_ns is not None
        seen: set[str] = set()
        for book in self._seed.drain(len(self._seed)):
            if book.market in seen or not book.valid:
                continue  # later items are the books after the first frame
            seen.add(book.market)
            payload = {
                "market_ticker": book.market,
                "clock": book.clock or 0,
                "yes_dollars_fp": [[str(p), str(q)] for p, q in book.yes.items()],
                "no_dollars_fp": [[str(p), str(q)] for p, q in book.no.items()],
            }
            event = TapeEvent(Channel.ORDERBOOK_DELTA, "orderbook_snapshot", book.market, payload)
            self._buffer.append((key - self._origin_ns, event))
        self._session.engine.remove_consumer(self._seed_cid)
        self._seed = None

    # -- serving: events out, books move ----------------------------------------------------

    def pull(self, elapsed_s: float) -> list[TapeEvent]:
        """Events due `elapsed_s` seconds after serving started, at `speed`."""
        if self.speed is None:
            return self.take(_MAX_PULL)
        return self._serve(int(elapsed_s * self.speed * 1e9), _MAX_PULL)

    def take(self, limit: int) -> list[TapeEvent]:
        """The next events, at most about `limit` (a snapshot's deltas are kept whole)."""
        return self._serve(None, limit)

    def _serve(self, horizon_ns: int | None, limit: int) -> list[TapeEvent]:
        out: list[TapeEvent] = []
        buffer = self._buffer
        books = self._books
        while buffer and len(out) < limit:
            offset, event = buffer[0]
            if horizon_ns is not None and offset > horizon_ns:
                break
            buffer.popleft()
            type_ = event.type
            if event.channel == CLOSE_CHANNEL:
                self.closes_served += 1
                out.append(event)
                break  # the server closes its clients before anything after this
            if type_ == "orderbook_delta":
                books.apply_delta(event.payload)
            elif type_ == "orderbook_snapshot":
                ts_ms = ((self._origin_ns or 0) + offset) // 1_000_000
                out.extend(books.replace(event.payload, ts_ms))
                continue
            elif type_ == "ticker" and event.market is not None:
                self._tickers[event.market] = event.payload
            out.append(event)
        self.served += len(out)
        if len(buffer) < self._bound // 2:
            self._wake()
        return out

    # -- the Tape interface ---------------------------------------------------------------

    def market_tickers(self) -> Sequence[str]:
        return self._markets

    def has_market(self, ticker: str) -> bool:
        return ticker in self._market_set

    def ticker_of_id(self, market_id: str) -> str | None:
        return self._by_id.get(market_id)

    def book(self, ticker: str) -> BookView | None:
        if ticker not in self._books and ticker not in self._book_markets:
            return None
        return self._books.view(ticker)

    def books(self) -> Iterator[BookView]:
        return self._books.views()

    def ticker_payload(self, ticker: str) -> dict[str, Any] | None:
        return self._tickers.get(ticker)

    def index_ids(self, channel: str) -> Sequence[str]:
        return list(self._index_ids.get(channel, ()))
