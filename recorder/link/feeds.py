"""Redundant feeds: one live session over two or more independent connection sequences.

A `FeedSet` is the `stream.Source` of a `LiveSession` opened with `feeds=N` (N >= 2).
It owns one `recorder.link.connection.LiveSource` per feed, each with its own URL
(optionally), its own reconnect lifecycle, backoff, attempt-rate limit, watchdogs and
make-before-break rotations, so one feed's outage does not touch the other. They
share what makes them one session: the engine (feed f is its group f, and the engine
arbitrates between them: `stream.arbitration`), the sink (each record carries its
feed), the connection numbers (a number names one connection of the run) and the
pump. Proactive control (`rotate`, `request_disconnect`, `kill`, `schedule_reconnect`)
acts on every feed; `LiveSession.feed(n)` reaches one.

The engine's `Arbitrated` outputs (a market's book moved from one feed to another)
are written to the sink as `arbitrate` events, so a capture says when and why, and a
replay, which takes the same decisions from the same records, can be checked against
them.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from recorder.link.connection import LiveSettings, LiveSource
from recorder.link.plumbing import PumpGate, now
from recorder.link.policies import DisconnectReason
from recorder.link.stats import LiveStats
from schemas import events as recorded
from stream.events import Arbitrated, Checkpoint, CloseConnection, Output, Switched
from stream.session import Session, Source

__all__ = ["MAX_FEEDS", "FeedSet"]

#: The journal keeps a record's feed in three bits.
MAX_FEEDS = 8


class _EveryFeed:
    """`LinkControl`'s proactive methods, carried out on every feed at once."""

    def __init__(self, feeds: Sequence[LiveSource]) -> None:
        self._feeds = feeds

    async def rotate(self, reason: DisconnectReason) -> bool:
        done = await asyncio.gather(*(f.control.rotate(reason) for f in self._feeds))
        return any(done)

    async def disconnect(self, reason: DisconnectReason, reconnect_after: float | None) -> bool:
        done = await asyncio.gather(
            *(f.control.disconnect(reason, reconnect_after) for f in self._feeds)
        )
        return any(done)

    async def kill(self) -> None:
        await asyncio.gather(*(f.control.kill() for f in self._feeds))

    def schedule(self, delay_s: float, reason: DisconnectReason) -> None:
        for f in self._feeds:
            f.control.schedule(delay_s, reason)


class FeedSet(Source):
    """The feeds of one live session (see the module docstring).

    Args:
        settings: the session's settings; feed f connects to `urls[f]` if given.
        feeds: how many (2 to MAX_FEEDS).
        urls: one URL per feed (None: every feed uses `settings.url`).
        local_addresses: one local IP address per feed to connect from (None: the
            system's choice), for feeds over different network paths.
    """

    owns_wire = True

    def __init__(
        self,
        settings: LiveSettings,
        stats: LiveStats,
        rng: random.Random,
        feeds: int,
        urls: Sequence[str] | None = None,
        local_addresses: Sequence[str] | None = None,
    ) -> None:
        if not 2 <= feeds <= MAX_FEEDS:
            raise ValueError(f"feeds must be 2 to {MAX_FEEDS}, not {feeds}")
        if urls is not None and len(urls) != feeds:
            raise ValueError(f"{len(urls)} URLs for {feeds} feeds: give one per feed")
        if local_addresses is not None and len(local_addresses) != feeds:
            raise ValueError(f"{len(local_addresses)} local addresses for {feeds} feeds")
        numbers = itertools.count(1)
        gate = PumpGate()
        self.feeds = [
            LiveSource(
                replace(
                    settings,
                    feed=f,
                    url=urls[f] if urls else settings.url,
                    local_address=local_addresses[f] if local_addresses else None,
                ),
                stats,
                random.Random(rng.random()),
                numbers=numbers,
                gate=gate,
            )
            for f in range(feeds)
        ]
        self.settings = settings
        self.limits = settings.limits
        self.control = _EveryFeed(self.feeds)
        self.final_error: BaseException | None = None

    # ------------------------------------------------------------------ Source

    def now(self) -> tuple[int, int]:
        return now()

    async def run(self, session: Session) -> None:
        """Run every feed; the session goes on while any does. It fails only when every
        feed failed (with the first feed's error)."""
        results = await asyncio.gather(
            *(f.run(session) for f in self.feeds), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        for error in errors:
            if isinstance(error, asyncio.CancelledError):
                raise error
        if errors and len(errors) == len(self.feeds):
            self.final_error = errors[0]
            raise errors[0]

    def _owner(self, conn: int) -> LiveSource | None:
        return next((f for f in self.feeds if conn in f.links.conns), None)

    async def send(self, conn: int, raw: bytes) -> None:
        feed = self._owner(conn)
        if feed is not None:
            await feed.send(conn, raw)

    async def handle(self, output: Output) -> None:
        match output:
            case Switched(old_conn=conn) | CloseConnection(conn=conn):
                feed = self._owner(conn)
                if feed is not None:
                    await feed.handle(output)
            case Checkpoint(group=group):
                if 0 <= group < len(self.feeds):
                    await self.feeds[group].handle(output)
            case Arbitrated():
                self._record(output)
            case _:
                await self.feeds[0].handle(output)  # counters: the feeds share their stats

    def _record(self, moved: Arbitrated) -> None:
        event = recorded.Arbitrated(
            market=moved.market,
            from_feed=moved.from_feed,
            to_feed=moved.to_feed,
            reason=moved.reason,
        )
        self.feeds[0].emit(0, moved.recv_ns, moved.mono_ns, event)
        self.feeds[0].stats.arbitrations += 1

    async def stop(self) -> None:
        for f in self.feeds:
            await f.stop()

    # ------------------------------------------------------------------ what LiveSession reads

    def force(self) -> None:
        for f in self.feeds:
            f.force()

    def reconnect_now(self) -> None:
        for f in self.feeds:
            f.reconnect_now()

    def emit(self, conn: int, recv_ns: int, mono_ns: int, event: Any) -> None:
        """Write a session-level event (a state change): it belongs to feed 0."""
        self.feeds[0].emit(conn, recv_ns, mono_ns, event)

    @property
    def active_conn(self) -> int | None:
        """The first feed's delivering connection (or the next feed's, if it has none)."""
        return next((f.active_conn for f in self.feeds if f.active_conn is not None), None)

    @property
    def connection_age_s(self) -> float:
        return max(f.connection_age_s for f in self.feeds)
