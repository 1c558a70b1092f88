"""Shared pieces of the live-client tests: the simulated exchange, a watched session, truth.

Every test talks to a real `replay.server.SimServer` on loopback (port 0) through a
real `LiveSession`; nothing is mocked. `FAST` limits make reconnects take
milliseconds (the hard minimum of 0.01 s lets them). `Watched` keeps what the
consumer side sees: states, error reports, sink records. `Reader` drains an
iterator in the background, as a consumer would, and remembers how it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from websockets.asyncio.client import connect as ws_connect

from recorder.link.live import LiveSession
from recorder.link.sink import MemorySink
from replay.server import ServerConfig, SimServer
from stream import ConnectionState, ErrorReport

__all__ = [
    "FAST",
    "Observer",
    "Reader",
    "Watched",
    "book_matches_truth",
    "eventually",
    "sim_server",
    "watched_session",
]

#: How long a wait for progress (frames arriving, a reconnect, a book catching up) may
#: take before the test fails: a bound against hanging, not a claim of speed, so it
#: leaves room for a busy machine. Waits that check a bound of the code pass their own.
WAIT_S = 20.0

#: Limits that make every wait short; tests override what they exercise.
FAST: dict[str, float | int] = {
    "reconnect_delay_s": 0.02,
    "max_reconnect_delay_s": 0.1,
    "server_unavailable_delay_s": 0.05,
    "stable_connection_s": 30.0,
    "close_timeout_s": 0.5,
    "open_timeout_s": 2.0,
    "tick_interval_s": 0.02,
    "attempts_per_window": 100,
    "attempt_window_s": 1.0,
}


@contextlib.asynccontextmanager
async def sim_server(**overrides: Any) -> AsyncIterator[SimServer]:
    """A simulated exchange on loopback: open auth, a few markets, no settlements."""
    settings: dict[str, Any] = {
        "auth": "open",
        "markets": 4,
        "rate_fps": 400.0,
        "settle_every_s": 0.0,
        "seed": 7,
        "epoch_ms": 1_795_000_000_000,
    }
    settings.update(overrides)
    async with SimServer(ServerConfig(**settings)) as server:
        yield server


@dataclass
class Watched:
    """A LiveSession and what its consumer-facing hooks saw."""

    session: LiveSession
    sink: MemorySink
    states: list[ConnectionState] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    disconnects: list[Any] = field(default_factory=list)

    def error_kinds(self) -> list[str]:
        return [e.kind for e in self.errors if isinstance(e, ErrorReport)]

    def events(self, name: str) -> list[Any]:
        return self.sink.events(name)

    def handshakes(self) -> int:
        return len(self.events("attempt"))


def watched_session(server: SimServer, **kw: Any) -> Watched:
    """A LiveSession on the server with FAST limits (overridable) and every hook recorded."""
    sink = kw.pop("sink", None) or MemorySink()
    states: list[ConnectionState] = []
    errors: list[Any] = []
    disconnects: list[Any] = []
    limits = {**FAST, **{k: v for k, v in kw.items() if k in FAST}}
    rest = {k: v for k, v in kw.items() if k not in FAST}
    session = LiveSession(
        rest.pop("url", server.url),
        sink=sink,
        on_state_change=lambda old, new: states.append(new),
        on_error=errors.append,
        on_disconnect=disconnects.append,
        rng=random.Random(11),
        **limits,
        **rest,
    )
    return Watched(session, sink, states, errors, disconnects)


class Reader:
    """Drains an iterator in a background task; keeps items, and how the iterator ended."""

    def __init__(self, iterator: Any) -> None:
        self.items: list[Any] = []
        self.ended = False
        self.error: BaseException | None = None
        self.task = asyncio.get_running_loop().create_task(self._run(iterator))

    async def _run(self, iterator: Any) -> None:
        try:
            async for item in iterator:
                self.items.append(item)
        except Exception as exc:
            self.error = exc
        self.ended = True

    async def more_than(self, count: int, timeout_s: float = WAIT_S) -> None:
        """Wait until more than `count` items arrived (the iterator goes on)."""
        await eventually(lambda: len(self.items) > count, timeout_s)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def eventually(predicate: Any, timeout_s: float = WAIT_S, every_s: float = 0.01) -> None:
    """Wait until `predicate()` is true; fail the test with a timeout otherwise."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(every_s)


def _as_decimals(side: dict[str, str]) -> dict[Decimal, Decimal]:
    return {Decimal(price): Decimal(count) for price, count in side.items()}


async def book_matches_truth(
    session: LiveSession, server: SimServer, ticker: str, timeout_s: float = WAIT_S
) -> bool:
    """Quiesce the exchange, then wait until the session's book of `ticker` equals the truth.

    A round trip (`list_subscriptions`) after quiescing proves every frame sent before
    it was read; a resync in flight may still be answered after it, hence the wait.
    """
    await server.quiesce()
    truth = server.book(ticker)
    assert truth is not None
    want_yes, want_no = _as_decimals(truth["yes"]), _as_decimals(truth["no"])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.list_subscriptions(), 1.0)
        book = session.book(ticker)
        if (
            book is not None
            and book.valid
            and (dict(book.yes), dict(book.no)) == (want_yes, want_no)
        ):
            return True
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)


class Observer:
    """A plain websockets client subscribed to every trade: the exchange's trade truth."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.trade_ids: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._ws: Any = None
        self._replies: dict[int, asyncio.Future[None]] = {}

    async def __aenter__(self) -> Observer:
        self._ws = await ws_connect(self.url, compression=None, max_size=None)
        await self._ws.send(
            json.dumps({"id": 1, "cmd": "subscribe", "params": {"channels": ["trade"]}})
        )
        while True:
            frame = json.loads(await self._ws.recv())
            if frame.get("type") == "subscribed":
                break
        self._task = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self._ws:
                frame = json.loads(raw)
                if frame.get("type") == "trade":
                    self.trade_ids.append(frame["msg"]["trade_id"])
                elif frame.get("id") in self._replies:
                    self._replies.pop(frame["id"]).set_result(None)

    async def sync(self, cmd_id: int) -> None:
        """Return once every frame sent before a list_subscriptions reply was read."""
        reply = asyncio.get_running_loop().create_future()
        self._replies[cmd_id] = reply
        await self._ws.send(json.dumps({"id": cmd_id, "cmd": "list_subscriptions"}))
        await asyncio.wait_for(reply, 5.0)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._ws.close()


def trade_id(frame: Any) -> str:
    """The trade id of a raw trade `Frame` (the bad_utf8 fault adds a field of bytes that
    are not UTF-8 to some: the engine delivers such a frame, and so must this read it)."""
    return str(json.loads(frame.raw.decode("utf-8", "replace"))["msg"]["trade_id"])
