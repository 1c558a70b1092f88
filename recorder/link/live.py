"""`LiveSession`: the Session API of `stream`, fed by live Kalshi connections.

This module owns the live session's shape: the URL (production, demo, or a
custom one; plain `ws://` only to loopback), the credentials check, the limits,
the policies and hooks, the sink, and the lifecycle: `connect()` as an async
context manager, `open()` / `close()` (non-terminal: the object can connect
again), `shutdown()` and `force_close()` (terminal). It is a `stream.Session`
whose `Source` is `recorder.link.connection.LiveSource`, one per run, so every
subscribe_* method, `orderbook()`, `@on`, `run_forever()`, `on_state_change`
and `on_error` behave exactly as in replay (`replay.reading.capture.ReplaySession`).

    live = LiveSession("demo", credentials=Credentials.from_env())
    async with live.connect() as session:
        trades = await session.subscribe_trade(["KXBTC-26JAN01-T100000"])
        async for trade in trades:
            ...

Proactive control (`request_disconnect`, `rotate`, `schedule_reconnect`, `kill`...)
is carried out on the socket side by `recorder.link.control.LinkControl`; statistics
come from `recorder.link.stats`.

Semantics of proactive control, per method:
    request_disconnect(reconnect_after=None)  close now (code 1000), DISCONNECTED,
        iterators stay open; `should_reconnect`, `schedule_reconnect`, a window or
        `reconnect()` brings it back (with fresh snapshots).
    request_disconnect(reconnect_after=X > 0) close now, reconnect after X seconds
        (the gap is what was asked for).
    request_disconnect(reconnect_after=0) == rotate(): no gap, no lost frame.
    schedule_reconnect(d)  connected: rotate in d seconds; held: reconnect in d.
    kill()  abort the socket (no close frame) as a network drop would; KILLED is
        reactive: it reconnects with backoff unless auto_reconnect is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import ipaddress
import random
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from apscheduler.triggers.base import BaseTrigger

from recorder.link.auth import Credentials
from recorder.link.connection import LinkOpener, LiveSettings, LiveSource
from recorder.link.control import parse_windows
from recorder.link.feeds import MAX_FEEDS, FeedSet
from recorder.link.limits import Limits, resolve_limits
from recorder.link.opener import open_link
from recorder.link.plumbing import Hook, Policy, call_policy
from recorder.link.policies import DisconnectReason, ReconnectStrategy, interpret_reconnect_answer
from recorder.link.sink import Sink
from recorder.link.stats import LiveStats
from schemas.errors import ConfigError
from schemas.events import StateChanged
from stream.core import EngineConfig
from stream.errors import SessionClosed
from stream.queues import Overflow
from stream.session import Session
from stream.state import ConnectionState

__all__ = ["DEMO_URL", "PRODUCTION_URL", "LiveSession", "resolve_url"]

#: docs/protocol.md section 1.
PRODUCTION_URL: Final = "wss://external-api-ws.kalshi.com/trade-api/ws/v2"
DEMO_URL: Final = "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2"
_ALIASES: Final = {"prod": PRODUCTION_URL, "production": PRODUCTION_URL, "demo": DEMO_URL}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_url(url: str) -> str:
    """`prod`, `demo` or a URL, checked: `wss://` anywhere, `ws://` only to loopback.

    Raises:
        ConfigError: another scheme, no host, or plain ws:// to a remote host.
    """
    resolved = _ALIASES.get(url.strip().lower(), url.strip())
    parts = urlsplit(resolved)
    host = parts.hostname or ""
    if parts.scheme not in ("ws", "wss") or not host:
        raise ConfigError(
            "url", f"{url!r} is not a WebSocket URL", "use prod, demo, or wss://host/path"
        )
    if parts.scheme == "ws" and not _is_loopback(host):
        raise ConfigError(
            "url",
            f"{url!r} is plain ws:// to {host}: only loopback may go unencrypted",
            "use wss://, or ws://127.0.0.1 for a local simulated exchange",
        )
    return resolved


_S = ConnectionState
_CONNECTED = (_S.CONNECTED, _S.STREAMING)


class LiveSession(Session):
    """A live Kalshi session: the Session API plus connection control and statistics.

    Args:
        url: "prod", "demo" or a WebSocket URL (ws:// only to loopback).
        credentials: signs every connection attempt; required unless the URL is loopback.
        config: the `[live]` limits mapping (see `recorder.link.limits.LIMIT_SPECS`).
        limits: resolved limits to start from (arguments and config still apply, clamped).
        strategy: reconnect delays (full-jitter exponential backoff by default).
        auto_reconnect: reconnect after reactive drops (else stay DISCONNECTED).
        should_disconnect: polled every disconnect_check_interval_s while connected;
            truthy disconnects (CALLBACK_TRIGGERED) and holds.
        should_reconnect: polled every reconnect_check_interval_s while held after a
            proactive disconnect: True reconnects, a number reconnects after that many
            seconds; with CALLBACK_CONTROLLED it also times reactive reconnects.
        reconnect_windows: crontab strings or APScheduler triggers (UTC): at each, rotate
            make-before-break (SCHEDULED), or reconnect if held.
        on_state_change, on_error: the Session hooks.
        on_connect(conn), on_disconnect(reason), on_disconnect_alert(alert): live hooks,
            sync or async.
        alert_proactive: also alert on proactive disconnects (rotations).
        sink: receives every frame, command and connection event (the recorder's log).
        ssl: the TLS context for wss:// (default: system CAs, verified).
        compression: None (default) or "deflate" (costs ~25% of the receive rate:
            docs/performance.md section 4.9).
        proxy: websockets' proxy setting (True: from the environment).
        engine_config, default_overflow, default_maxsize: as for `stream.Session`.
        rng: the backoff jitter's random source (seed it in tests).
        opener: opens each connection (default `recorder.link.opener.open_link`: a real
            socket); tests may pass one that makes in-memory links.
        feeds: redundant feeds (`recorder.link.feeds`): N independent connections, each
            subscribed to everything, each reconnecting on its own; consumers see each
            message once and each book from a feed that holds it valid (1: one feed).
        urls: one URL per feed (None: every feed connects to `url`).
        local_addresses: one local IP address per feed to connect from (None: the
            system's choice).
        **limit_overrides: any limit by name (`ping_interval_s=5`), clamped to its bounds.
    """

    def __init__(
        self,
        url: str = "prod",
        *,
        credentials: Credentials | None = None,
        config: Mapping[str, Any] | None = None,
        limits: Limits | None = None,
        strategy: ReconnectStrategy = ReconnectStrategy.EXPONENTIAL_BACKOFF,
        auto_reconnect: bool = True,
        should_disconnect: Policy | None = None,
        should_reconnect: Policy | None = None,
        reconnect_windows: Iterable[str | BaseTrigger] = (),
        on_state_change: Hook | None = None,
        on_error: Hook | None = None,
        on_connect: Hook | None = None,
        on_disconnect: Hook | None = None,
        on_disconnect_alert: Hook | None = None,
        alert_proactive: bool = False,
        sink: Sink | None = None,
        ssl: ssl_module.SSLContext | None = None,
        compression: str | None = None,
        proxy: str | Literal[True] | None = True,
        engine_config: EngineConfig | None = None,
        default_overflow: Overflow | None = None,
        default_maxsize: int = 1000,
        rng: random.Random | None = None,
        opener: LinkOpener = open_link,
        feeds: int = 1,
        urls: Sequence[str] | None = None,
        local_addresses: Sequence[str] | None = None,
        **limit_overrides: float | int | None,
    ) -> None:
        resolved = resolve_url(url)
        if not 1 <= feeds <= MAX_FEEDS:
            raise ConfigError("feeds", f"{feeds} feeds", f"1 to {MAX_FEEDS}")
        if urls is not None and len(urls) != feeds:
            raise ConfigError("urls", f"{len(urls)} URLs for {feeds} feeds", "one URL per feed")
        if local_addresses is not None and len(local_addresses) != feeds:
            raise ConfigError("local_addresses", f"{len(local_addresses)} addresses for "
                              f"{feeds} feeds", "one local IP address per feed")  # fmt: skip
        self._feeds = feeds
        self._urls = None if urls is None else [resolve_url(u) for u in urls]
        self._local_addresses = None if local_addresses is None else list(local_addresses)
        for feed_url in self._urls or ():
            if credentials is None and not _is_loopback(urlsplit(feed_url).hostname or ""):
                raise ConfigError("credentials", f"{feed_url} requires a signed connection",
                                  "pass credentials=Credentials.from_env()")  # fmt: skip
        if credentials is None and not _is_loopback(urlsplit(resolved).hostname or ""):
            raise ConfigError(
                "credentials",
                f"{resolved} requires a signed connection (docs/protocol.md section 2)",
                "pass credentials=Credentials.from_env() or Credentials.from_file(key_id, path)",
            )
        if compression not in (None, "deflate"):
            raise ConfigError("compression", f"{compression!r} is not supported", "None or deflate")
        if strategy is ReconnectStrategy.CALLBACK_CONTROLLED and should_reconnect is None:
            raise ConfigError(
                "strategy", "CALLBACK_CONTROLLED needs a should_reconnect callback", None
            )
        self.should_disconnect = should_disconnect
        self.should_reconnect = should_reconnect
        self.settings = LiveSettings(
            url=resolved,
            limits=resolve_limits(config, base=limits, **limit_overrides),
            credentials=credentials,
            strategy=strategy,
            auto_reconnect=auto_reconnect,
            ssl=ssl,
            compression=compression,
            proxy=proxy,
            should_disconnect=should_disconnect,
            should_reconnect=should_reconnect,
            windows=parse_windows(reconnect_windows),
            on_connect=on_connect,
            on_disconnect=on_disconnect,
            on_disconnect_alert=on_disconnect_alert,
            alert_proactive=alert_proactive,
            sink=sink,
            opener=opener,
        )
        self.stats = LiveStats(started_mono_ns=time.monotonic_ns())
        self._rng = rng or random.Random()
        self._engine_config = engine_config
        self._default_overflow = default_overflow
        self._default_maxsize = default_maxsize
        self._registered: list[tuple[str, bool, Hook]] = []
        self._user_state_hook: Hook | None = None
        self._state_evt = asyncio.Event()
        self._shut = False
        self._started = False
        self._live = self._new_source()
        if feeds > 1:
            engine_config = dataclasses.replace(engine_config or EngineConfig(), feeds=feeds)
        Session.__init__(
            self,
            self._live,
            on_state_change=on_state_change,
            on_error=on_error,
            engine_config=engine_config,
            default_overflow=default_overflow,
            default_maxsize=default_maxsize,
        )

    # ------------------------------------------------------------------ liveness

    @property
    def is_connected(self) -> bool:
        """True while a connection is open (CONNECTED or STREAMING)."""
        return self.state in _CONNECTED

    @property
    def is_dead(self) -> bool:
        """True when not connected and not trying to (DISCONNECTED or CLOSED)."""
        return self.state in (_S.DISCONNECTED, _S.CLOSED)

    @property
    def is_shutdown(self) -> bool:
        """True after shutdown() or force_close(): this object will not connect again."""
        return self._shut

    @property
    def is_recoverable(self) -> bool:
        """Dead but not shut down: a watchdog may call `reconnect()` or `open()`."""
        return self.is_dead and not self._shut

    # ------------------------------------------------------------------ disconnect and reconnect

    async def request_disconnect(
        self,
        *,
        reconnect_after: float | None = None,
        reason: DisconnectReason = DisconnectReason.USER_REQUESTED,
    ) -> bool:
        """Disconnect on purpose (a proactive reason); see the module docstring.

        Returns:
            False if there was no open connection (nothing happened), else True.
        """
        if not reason.is_proactive:
            raise ValueError(f"{reason} is a reactive reason; use kill() to simulate a drop")
        if reconnect_after is not None and reconnect_after < 0:
            raise ValueError("reconnect_after must be >= 0 seconds, or None")
        if reconnect_after == 0:
            return await self._live.control.rotate(reason)
        return await self._live.control.disconnect(reason, reconnect_after)

    async def rotate(self, reason: DisconnectReason = DisconnectReason.USER_REQUESTED) -> bool:
        """Replace the connection make-before-break: open and subscribe a new one, switch
        once its snapshots are in, then close the old one. No frame is lost.

        Returns:
            True if the switch happened, False if not connected or the new connection
            could not be made ready (the old one stays; a stale one is replaced reactively).
        """
        return await self._live.control.rotate(reason)

    async def schedule_reconnect(
        self, delay_s: float, reason: DisconnectReason = DisconnectReason.SCHEDULED
    ) -> None:
        """In `delay_s`: rotate if connected, reconnect if held disconnected. Returns at once;
        `close()` cancels it."""
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        self._live.control.schedule(delay_s, reason)

    async def reconnect(self) -> None:
        """Reconnect now if disconnected (held, or waiting out a backoff); no-op if connected."""
        self._live.reconnect_now()

    async def kill(self) -> None:
        """Simulate a reactive drop: abort the socket (really closed, nothing leaks).

        Reported as KILLED; reconnects with backoff unless auto_reconnect is off. No-op
        when not connected.
        """
        await self._live.control.kill()

    async def wait_for_reconnect_window(
        self,
        should_reconnect: Policy | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - kstlib's signature, kept
    ) -> bool:
        """Wait until `should_reconnect` (or the instance's) says yes; never connects by itself.

        True returns True; a positive number waits that long and asks again; anything
        else asks again after reconnect_check_interval_s.

        Returns:
            True when the callback said yes; False at the timeout, or with no callback.
        """
        policy = should_reconnect or self.should_reconnect
        if policy is None:
            return False
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        interval = self._live.limits.reconnect_check_interval_s
        while True:
            answer = interpret_reconnect_answer(await call_policy(policy))
            if answer == 0.0:
                return True
            pause = interval if answer is None else answer
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                pause = min(pause, remaining)
            await asyncio.sleep(pause)

    # ------------------------------------------------------------------ waiting on state

    async def wait_connected(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """True once connected (at once if already); False at the timeout."""
        return await self._wait_state(_CONNECTED, timeout)

    async def wait_disconnected(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """True once not connected (at once if already); False at the timeout."""
        return await self._wait_state((_S.DISCONNECTED, _S.RECONNECTING, _S.CLOSED), timeout)

    async def _wait_state(
        self,
        states: tuple[ConnectionState, ...],
        timeout: float | None,  # noqa: ASYNC109
    ) -> bool:
        try:
            async with asyncio.timeout(timeout):
                while self.state not in states:
                    self._state_evt.clear()
                    await self._state_evt.wait()
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------ hooks

    @property
    def on_state_change(self) -> Hook:
        """The session's state hook: writes a `state` event, then calls the user's hook."""
        return self._on_state

    @on_state_change.setter
    def on_state_change(self, hook: Hook | None) -> None:
        self._user_state_hook = hook

    async def _on_state(self, old: ConnectionState, new: ConnectionState) -> None:
        recv_ns, mono_ns = self._live.now()
        self._live.emit(0, recv_ns, mono_ns, StateChanged(old=old.value, new=new.value))
        self._state_evt.set()
        hook = self._user_state_hook
        if hook is not None:
            result = hook(old, new)
            if inspect.isawaitable(result):
                await result

    def on(self, channel: str, *, raw: bool = False) -> Callable[[Hook], Hook]:
        register = super().on(channel, raw=raw)

        def track(fn: Hook) -> Hook:
            self._registered.append((channel, raw, fn))
            return register(fn)

        return track

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        return self.settings.url

    @property
    def limits(self) -> Limits:
        return self.settings.limits

    @property
    def conn(self) -> int | None:
        """The number of the connection delivering now (None when not connected)."""
        return self._live.active_conn

    @property
    def connection_duration_s(self) -> float:
        """Seconds the current connection has been open; 0.0 when not connected."""
        return self.stats.connection_duration_s(time.monotonic_ns())

    @property
    def final_error(self) -> BaseException | None:
        """What ended the session for good (a refused key, a permanent close, the last
        allowed attempt failed), or None while it runs or after a requested close."""
        return self._live.final_error

    @property
    def uptime_s(self) -> float:
        """Seconds since this object was created (or its statistics reset)."""
        return self.stats.uptime_s(time.monotonic_ns())

    def reset_stats(self) -> None:
        self.stats.reset(time.monotonic_ns())

    # ------------------------------------------------------------------ lifecycle

    async def open(self, *, wait: bool = True) -> LiveSession:
        """Start connecting (a no-op while a run is going on).

        Args:
            wait: return once connected (True), or at once (False: subscribe now,
                the subscribes go out when the connection opens).

        Raises:
            SessionClosed: after shutdown() or force_close().
            LiveError: the first connection failed for good (a refused key, a
                permanent close, or the last allowed attempt failed).
        """
        if self._shut:
            raise SessionClosed("this LiveSession was shut down; create a new one")
        if self._started and self.state is not ConnectionState.CLOSED:
            return self
        if self._started:
            self._new_run()
        self._started = True
        await self.start()
        if wait:
            await self._wait_state(
                (ConnectionState.CONNECTED, ConnectionState.STREAMING, ConnectionState.CLOSED),
                None,
            )
            if self.state is ConnectionState.CLOSED:
                error = self._live.final_error
                raise error if error is not None else SessionClosed("the session closed")
        return self

    @contextlib.asynccontextmanager
    async def connect(self, *, wait: bool = True) -> AsyncIterator[LiveSession]:
        """`async with live.connect() as session:` open on entry, close() on exit.

        On exit every iterator ends after the messages already queued; the object
        can connect again afterwards.
        """
        try:
            await self.open(wait=wait)
        except BaseException:
            await self.close()
            raise
        try:
            yield self
        finally:
            await self.close()

    async def __aenter__(self) -> LiveSession:
        await self.open()
        return self

    async def close(self) -> None:
        """Close gracefully (code 1000) and end every iterator; cancels any pending
        reconnect. Not terminal: `open()` or `connect()` may start a new run."""
        await super().close()

    async def shutdown(self) -> None:
        """Close gracefully and for good (`is_shutdown`): this object will not connect again."""
        self._shut = True
        await self.close()

    async def force_close(self) -> None:
        """Close at once (sockets aborted, no close handshake) and for good."""
        self._shut = True
        self._live.force()
        await self.close()

    def _new_source(self) -> LiveSource | FeedSet:
        """One run's connection manager: a `LiveSource`, or a `FeedSet` of several."""
        if self._feeds == 1:
            return LiveSource(self.settings, self.stats, self._rng)
        return FeedSet(self.settings, self.stats, self._rng, self._feeds, self._urls,
                       self._local_addresses)  # fmt: skip

    @property
    def feeds(self) -> int:
        """How many redundant feeds this session runs (1: one connection at a time)."""
        return self._feeds

    def _new_run(self) -> None:
        """A fresh engine and source for a new run; `@on` callbacks carry over."""
        self._live = self._new_source()
        self.reset(self._live)
        registered, self._registered = self._registered, []
        for channel, raw, fn in registered:
            self.on(channel, raw=raw)(fn)
