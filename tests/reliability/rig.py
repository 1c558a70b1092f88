"""The reliability rig: a real recorder recording the simulated exchange, with a consumer attached.

This module owns the running half of a reliability case: an in-process
`replay.server.SimServer` (its truth kept in memory and in an NDJSON file), an
in-process `recorder.service.app.Recorder` (journal, publisher, live client) writing a capture
into a temporary root, and a `Consumer` attached in `on_ready` to the recorder's own
subscriptions (the books of a few markets, every trade), as a user of the recorder
would. It offers what a case needs: wait until a fault has played out and the books
are whole again (timed), compare the consumer's books with the exchange's truth at
a quiesced moment, and stop cleanly. What the capture holds afterwards is
`tests.reliability.capture_facts`'.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from recorder.link.live import LiveSession
from recorder.service.app import Recorder
from recorder.service.config import load_config
from replay.server import ServerConfig, SimServer, Switches
from replay.server.faults import FaultSpec
from stream import ConnectionState, SubscriptionTerminated

from .proxy import DOWN, FaultProxy, Faults

__all__ = ["BOOK_MARKETS", "RECORDER_LIVE", "Consumer", "Rig", "behind_proxy", "server_config"]

#: Markets whose books the consumer follows.
BOOK_MARKETS = 3
#: The recorder's live limits in these tests: defaults scaled down so a case takes
#: seconds (reconnect backoff, 1013 wait, close timeout); rows override what they test.
RECORDER_LIVE: dict[str, float] = {
    "reconnect_delay_s": 0.05,
    "max_reconnect_delay_s": 0.2,
    "server_unavailable_delay_s": 0.3,
    "stable_connection_s": 0.5,
    "close_timeout_s": 0.5,
    "open_timeout_s": 2.0,
    "tick_interval_s": 0.02,
}


def server_config(
    truth_path: Path, *, faults: tuple[FaultSpec, ...] = (), **overrides: Any
) -> ServerConfig:
    """The exchange of the reliability tests: a few markets at a moderate rate, open auth."""
    settings: dict[str, Any] = {
        "auth": "open",
        "markets": 4,
        "rate_fps": 400.0,
        "settle_every_s": 0.0,
        "seed": 5,
        "epoch_ms": 1_795_000_000_000,
        "switches": Switches(orderbook_without_tickers="all"),
        "record_truth": True,
        "truth_path": truth_path,
        "faults": faults,
    }
    settings.update(overrides)
    return ServerConfig(**settings)


def _decimals(side: dict[str, str]) -> dict[Decimal, Decimal]:
    return {Decimal(price): Decimal(count) for price, count in side.items()}


class Consumer:
    """A user of the recorder: books of a few markets and every trade, riding its subscriptions.

    An iterator that the server ends (docs/protocol.md sections 9.8 and 9.18: the user must
    resubscribe) is attached again, as a careful consumer would.
    """

    def __init__(self, markets: list[str]) -> None:
        self.markets = markets
        self.last: dict[str, Any] = {}
        self.invalid: Counter[str] = Counter()
        self.trades = 0
        self.ends: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []

    def attach(self, session: LiveSession) -> None:
        loop = asyncio.get_running_loop()
        for market in self.markets:
            self._tasks.append(loop.create_task(self._follow_book(session, market)))
        self._tasks.append(loop.create_task(self._follow_trades(session)))

    async def _follow_book(self, session: LiveSession, market: str) -> None:
        while True:
            try:
                sub = await session.orderbook(market, attach=True, maxsize=1_000_000)
            except Exception:
                return  # the session is closing
            try:
                async for book in sub:
                    self.last[market] = book
                    if not book.valid:
                        self.invalid[market] += 1
            except SubscriptionTerminated as exc:
                self.ends.append(f"book {market}: {exc}")
            except Exception as exc:  # the session ended in error (a permanent close)
                self.ends.append(f"book {market}: {exc!r}")
                return
            if session.state is ConnectionState.CLOSED:
                return
            self.ends.append(f"book {market}: ended")
            await asyncio.sleep(0.05)

    async def _follow_trades(self, session: LiveSession) -> None:
        while True:
            try:
                sub = await session.subscribe("trade", raw=True, attach=True, maxsize=1_000_000)
            except Exception:
                return  # the session is closing
            try:
                async for _ in sub:
                    self.trades += 1
            except SubscriptionTerminated as exc:
                self.ends.append(f"trades: {exc}")
            except Exception as exc:
                self.ends.append(f"trades: {exc!r}")
                return
            if session.state is ConnectionState.CLOSED:
                return
            await asyncio.sleep(0.05)

    def matches(self, server: SimServer) -> dict[str, bool]:
        """Per market: the last book delivered is valid and equals the exchange's book now."""
        out = {}
        for market in self.markets:
            book, truth = self.last.get(market), server.book(market)
            out[market] = (
                book is not None
                and truth is not None
                and book.valid
                and dict(book.yes) == _decimals(truth["yes"])
                and dict(book.no) == _decimals(truth["no"])
            )
        return out

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class Rig:
    """One recorder run against one exchange; use `async with Rig(...)`.

    Args:
        root: the capture root (a fresh temporary directory).
        server: the running exchange.
        live: `[live]` limits on top of `RECORDER_LIVE`.
        url: where the recorder connects (default the server; a proxy in front of it).
        channels: recorder channel settings (default every book and every trade).
    """

    def __init__(
        self,
        root: Path,
        server: SimServer,
        *,
        live: dict[str, float] | None = None,
        url: str | None = None,
        channels: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.server = server
        overrides: dict[str, Any] = {
            "connection.url": url or server.url,
            "storage.root": str(root),
            "storage.commit_interval_ms": 20,
            "storage.checkpoint_interval_s": 1,
            "health.status_interval_s": 0.1,
            "jobs.compaction": "",
        }
        for channel, markets in (channels or {"orderbook_delta": "all", "trade": "all"}).items():
            overrides[f"channels.{channel}"] = markets
        for name, value in {**RECORDER_LIVE, **(live or {})}.items():
            overrides[f"live.{name}"] = value
        self.consumer = Consumer(sorted(server.tape.market_tickers())[:BOOK_MARKETS])
        self.recorder = Recorder(load_config(None, overrides), progress=False, on_ready=self._ready)
        self._session: LiveSession | None = None
        self.runner: asyncio.Task[int] | None = None
        self.exit_code: int | None = None
        self.extra: list[Callable[[], str]] = []  # more state for `describe`

    async def _ready(self, session: LiveSession) -> None:
        self._session = session
        self.consumer.attach(session)

    @property
    def session(self) -> LiveSession:
        assert self._session is not None, "the recorder has not connected yet"
        return self._session

    async def __aenter__(self) -> Rig:
        self.runner = asyncio.get_running_loop().create_task(self.recorder.run())
        await self.until(lambda: self._session is not None, 10.0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.runner is not None and not self.runner.done():
            await self.stop()
        await self.consumer.stop()

    async def wait_streaming(self, timeout_s: float = 10.0) -> float:
        """Wait for a streaming recorder whose followed books are all valid; returns seconds."""
        return await self.until(self.settled, timeout_s)

    def settled(self) -> bool:
        """STREAMING, and every followed market has a valid book in the engine."""
        session = self._session
        if session is None or session.state is not ConnectionState.STREAMING:
            return False
        books = [session.book(m) for m in self.consumer.markets]
        return all(b is not None and b.valid for b in books)

    @property
    def running(self) -> bool:
        return self.runner is not None and not self.runner.done()

    async def until(self, predicate: Callable[[], bool], timeout_s: float) -> float:
        """Wait until `predicate()`; returns the seconds it took. Fails the test on timeout."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    if self.runner is not None and self.runner.done():
                        self.runner.result()  # the recorder exited: surface why
                        if not predicate():
                            raise AssertionError("the recorder exited while the test waited")
                    await asyncio.sleep(0.005)
        except TimeoutError:
            raise TimeoutError(f"still waiting after {timeout_s} s: {self.describe()}") from None
        return time.monotonic() - started

    def describe(self) -> str:
        """The rig's state in one line, for a wait that timed out."""
        session = self._session
        if session is None:
            return "the recorder has not connected"
        stats = session.stats
        books = {m: (b is not None and b.valid) for m in self.consumer.markets
                 for b in [session.book(m)]}  # fmt: skip
        counters = {name: getattr(stats, name) for name in (
            "connects", "disconnects", "messages_received", "bytes_received", "gaps",
            "resets", "resyncs", "stale")}  # fmt: skip
        return (
            f"state {session.state.name}, valid books {books}, {counters}, "
            f"consumer ends {self.consumer.ends[-3:]}, " + "; ".join(f() for f in self.extra)
        )

    async def books_match_truth(self, timeout_s: float = 5.0) -> dict[str, bool]:
        """Quiesce the exchange; wait until the consumer's books equal the truth; resume.

        A round trip (`list_subscriptions`) after quiescing proves every frame sent before
        it was read; a resync in flight may still be answered after it, hence the wait.
        Returns per market whether it matched.
        """
        await self.server.quiesce()
        deadline = time.monotonic() + timeout_s
        matches = self.consumer.matches(self.server)
        try:
            while not all(matches.values()) and time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.session.list_subscriptions(), 1.0)
                await asyncio.sleep(0.02)
                matches = self.consumer.matches(self.server)
        finally:
            self.server.resume()
        return matches

    async def stop(self) -> int:
        """Quiesce the exchange, stop the recorder cleanly (it publishes everything)."""
        with contextlib.suppress(TimeoutError):
            await self.server.quiesce()
        self.recorder.request_stop("test")
        assert self.runner is not None
        self.exit_code = await asyncio.wait_for(self.runner, 30.0)
        await self.consumer.stop()
        return self.exit_code


@contextlib.asynccontextmanager
async def behind_proxy(
    tmp_path: Path,
    *,
    live: dict[str, float] | None = None,
    first_faults: Faults | None = None,
    **server_overrides: Any,
) -> AsyncIterator[tuple[SimServer, FaultProxy, Rig]]:
    """An exchange, a fault proxy in front of it, and a recorder connecting through the proxy.

    `first_faults` are the proxy faults of the connections accepted from the start.
    The recorder is stopped (if still running) before the proxy and the exchange.
    """
    server = SimServer(server_config(tmp_path / "truth.ndjson", **server_overrides))
    async with server, FaultProxy("127.0.0.1", server.port) as proxy:
        proxy.new_faults = first_faults or Faults()
        url = proxy.url_for(server.url)
        async with Rig(tmp_path / "capture", server, live=live, url=url) as rig:
            rig.extra.append(
                lambda: (
                    "proxy connections (no, open, bytes down queued): "
                    + str([(c.no, c.open, c.bytes_queued(DOWN)) for c in proxy.connections])
                )
            )
            yield server, proxy, rig
