"""The one Session API, written once over an abstract source of frames.

`LiveSession` (recorder) and `ReplaySession` (replay) are both a `Session` with a
different `Source`: a socket or a capture. A consumer written against this API
runs unchanged on either. The session owns an `Engine`; the source feeds the
engine and calls `pump()`, which carries the engine's outputs out (commands to
the source, states and errors to the hooks, replies to waiting callers),
runs `@on` callbacks, and makes a BLOCK consumer's producer wait.

Nothing here reads a clock: the source says what time it is (`Source.now`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

from schemas.channels import Channel
from stream.engine import Engine, EngineConfig
from stream.errors import NotSubscribed, ServerError, SessionClosed
from stream.events import (
    CommandReply,
    ErrorReport,
    Fatal,
    Frame,
    Output,
    SendCommand,
    StateChanged,
    SubscribeResult,
)
from stream.queues import DeliveryQueue, Overflow
from stream.state import ConnectionState
from stream.subscriptions import ConsumerSubscription, Delivery, market_set

__all__ = ["Session", "Source", "Subscription"]

T = TypeVar("T")
Hook = Callable[..., Any]


class Source(ABC):
    """Where a session's inputs come from, and where its commands go."""

    #: Whether consumers own wire subscriptions (a live client) or attach to the ones
    #: the source provides (a capture, or a recorder's subscriptions).
    owns_wire: bool = True

    @abstractmethod
    def now(self) -> tuple[int, int]:
        """(recv_ns, mono_ns) of the present moment, as this source measures time."""

    @abstractmethod
    async def run(self, session: Session) -> None:
        """Feed `session.engine` until the source is exhausted or stopped, calling
        `await session.pump()` whenever `session.needs_pump`. Raise to end the
        session in error (for example after the last reconnect attempt)."""

    #: How long `Session.close()` waits for `run()` to finish after `stop()`.
    close_timeout_s: float = 5.0

    @abstractmethod
    async def send(self, conn: int, raw: bytes) -> None:
        """Send a command on a connection and report it with `engine.command_sent`.

        Report it *before* awaiting the write: a write may yield (draining), and the
        reply must never reach the engine before the engine knows the command. (A
        source that replays recorded commands ignores this.)"""

    async def handle(self, output: Output) -> None:  # noqa: B027 - optional hook
        """Outputs other than commands, errors and replies (state changes, with the
        engine's clocks; switches; connection close requests; checkpoints; gaps):
        sources that act on them override this."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop producing inputs (the session is closing)."""

    def validate_subscription(self, channel: str, tickers: frozenset[str] | None) -> None:  # noqa: B027
        """Raise if a consumer asks for something this source can never provide."""

    def narrow_tickers(self, channel: str, tickers: frozenset[str] | None) -> frozenset[str] | None:
        """The markets a consumer of `channel` that asked for `tickers` (None: all) is
        given: all it asked for, unless the source serves fewer (a replay limited to
        some markets)."""
        return tickers


class Subscription(Generic[T]):
    """An async iterator over one consumer subscription's messages."""

    def __init__(
        self, session: Session, consumer: ConsumerSubscription, queue: DeliveryQueue
    ) -> None:
        self._session = session
        self._consumer = consumer
        self._queue = queue
        self._convert: Callable[[Any], Any] | None = {
            Delivery.MODEL: session._to_model,
            Delivery.STRUCT: session._to_struct,
        }.get(consumer.delivery)

    @property
    def channel(self) -> str:
        return self._consumer.channel

    @property
    def cid(self) -> int:
        """The durable client id: stays the same across reconnects, unlike the server sid."""
        return self._consumer.cid

    @property
    def dropped(self) -> int:
        """Messages evicted by the DROP_OLDEST policy so far."""
        return self._queue.dropped

    @property
    def tickers(self) -> frozenset[str] | None:
        return self._consumer.tickers

    def __aiter__(self) -> AsyncIterator[T]:
        """`async for message in subscription`: the fast path (one generator per loop)."""
        return self._queue.items(self._convert, self._session._wake)

    async def __anext__(self) -> T:
        """The next message (for `anext(subscription)`; `async for` does not come here)."""
        queue = self._queue
        convert = self._convert
        while True:
            if not len(queue):
                self._session._wake()
                if not await queue.wait_readable():
                    queue.raise_if_failed()
                    raise StopAsyncIteration
            item = queue.get_nowait()
            if convert is None:
                return item  # type: ignore[no-any-return]
            model = convert(item)
            if model is not None:
                return model  # type: ignore[no-any-return]

    async def batches(self, max_items: int = 1024) -> AsyncIterator[list[T]]:
        """Yield lists of up to `max_items` messages: the fast path for bulk consumers."""
        queue = self._queue
        convert = self._convert
        while True:
            if not len(queue):
                self._session._wake()
                if not await queue.wait_readable():
                    queue.raise_if_failed()
                    return
            items = queue.drain(max_items)
            if convert is not None:
                items = [m for m in map(convert, items) if m is not None]
            if items:
                yield items

    async def update(self, action: str, **args: Any) -> Any:
        """Change the subscription (add_markets, delete_markets, get_snapshot...)."""
        return await self._session.update_subscription(self, action, **args)

    async def unsubscribe(self) -> None:
        await self._session.unsubscribe(self)


class Session:
    """The Session API shared by live and replay. Use it as an async context manager."""

    def __init__(
        self,
        source: Source,
        *,
        on_state_change: Hook | None = None,
        on_error: Hook | None = None,
        engine_config: EngineConfig | None = None,
        default_overflow: Overflow | None = None,
        default_maxsize: int = 1000,
    ) -> None:
        self._engine_config = engine_config
        self.on_state_change = on_state_change
        self.on_error = on_error
        self._default_overflow = default_overflow
        self._default_maxsize = default_maxsize
        self.reset(source)

    def reset(self, source: Source) -> None:
        """Start afresh on `source`: a new engine, no subscriptions, no callbacks.

        For an edge that opens a new run on the same session object after a close
        (a client object can connect again after exit, docs/protocol.md section 9.15); hooks and
        defaults are kept.
        """
        self.engine = Engine(self._engine_config)
        self._source = source
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._callbacks: dict[str, list[tuple[Hook, bool]]] = {}
        # One consumer per channel with callbacks, all putting into one queue: callbacks
        # then run in arrival order across channels, however the pump batches them.
        self._callback_consumers: dict[str, ConsumerSubscription] = {}
        self._callback_queue = DeliveryQueue(1 << 30, Overflow.BLOCK)  # drained every pump
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._closing = False
        self._subscribed_any = False
        self._error: BaseException | None = None
        self._demand = asyncio.Event()  # a consumer waits: a replay may start reading

    # ------------------------------------------------------------------ lifecycle

    @property
    def state(self) -> ConnectionState:
        return self.engine.state

    async def __aenter__(self) -> Session:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the source (connect, or open the capture)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="kalshi-tape-session")

    async def _run(self) -> None:
        error: BaseException | None = None
        try:
            await self._source.run(self)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the source gave up: this error ends every stream
            error = exc
            self._error = exc
        finally:
            if not self._closing:
                recv_ns, mono_ns = self._source.now()
                self.engine.session_closed(recv_ns, mono_ns, error)
                with contextlib.suppress(Exception):
                    await self._dispatch_outputs()
            self._closed.set()
        if error is not None:
            await self._call_hook(self.on_error, ErrorReport("session", str(error), 0))

    async def close(self) -> None:
        """Stop the source and end every iterator after the messages already queued."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._demand.set()  # a source waiting for demand must get to see that it is stopped
        with contextlib.suppress(Exception):
            await self._source.stop()
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), self._source.close_timeout_s)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        recv_ns, mono_ns = self._source.now()
        if self.engine.state is not ConnectionState.CLOSED:
            self.engine.session_closed(recv_ns, mono_ns, self._error)
        await self._dispatch_outputs()
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(SessionClosed("the session closed"))
        self._closed.set()

    async def run_forever(self, stop_event: asyncio.Event | None = None) -> None:
        """Run until the session ends, or until `stop_event` is set (then close cleanly).

        Raises:
            NotSubscribed: nothing was subscribed, so nothing would ever arrive (#175).
        """
        if not self._subscribed_any:
            raise NotSubscribed("run_forever() needs a subscription first: call subscribe_*()")
        self._demand.set()
        if self._task is None:
            await self.start()
        if stop_event is None:
            await self._closed.wait()
            return
        stop = asyncio.ensure_future(stop_event.wait())
        done = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({stop, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (stop, done):
                if not fut.done():
                    fut.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await fut
        if stop_event.is_set():
            await self.close()

    # ------------------------------------------------------------------ the pump

    async def wait_for_demand(self) -> None:
        """Return once a consumer waits for a message or run_forever() runs (replay
        sources start reading then, knowing every subscription made before)."""
        await self._demand.wait()

    def _wake(self) -> None:
        self._demand.set()

    @property
    def must_pump(self) -> bool:
        """Work that cannot wait: commands to send, reports, a BLOCK consumer to wait for."""
        engine = self.engine
        return bool(engine.outbox or engine.blocking_queues)

    def pump_signals(self) -> tuple[Any, Any, Any]:
        """Three containers whose truthiness is `needs_pump`, for a hot loop to test
        directly: the engine's outbox, its BLOCK queues over their bound, and the
        callbacks' queue. Valid until `reset()`."""
        return self.engine.outbox, self.engine.blocking_queues, self._callback_queue.buffer

    @property
    def needs_pump(self) -> bool:
        """Any work for `pump()`, callbacks included (a live edge pumps on this per frame;
        a replay batches callbacks and pumps at once only on `must_pump`)."""
        if self.must_pump:
            return True
        return bool(len(self._callback_queue))

    async def pump(self) -> None:
        """Carry out the engine's outputs, run callbacks, wait while a BLOCK consumer is full."""
        await self._dispatch_outputs()
        if self._callback_consumers:
            await self._run_callbacks()
        for queue in self.engine.take_blocking():
            await queue.wait_for_space()

    async def _dispatch_outputs(self) -> None:
        outbox = self.engine.outbox
        while outbox:
            match outbox.popleft():
                case SendCommand(conn=conn, raw=raw):
                    await self._source.send(conn, raw)
                case StateChanged(old=old, new=new) as change:
                    await self._source.handle(change)
                    await self._call_hook(self.on_state_change, old, new)
                case ErrorReport() as report:
                    await self._call_hook(self.on_error, report)
                case SubscribeResult(cid=cid, sid=sid, error=error):
                    self._resolve(-cid, error, sid)
                case CommandReply(id=cmd_id, type="error", msg=msg):
                    self._resolve(cmd_id, ServerError(msg.get("code"), msg.get("msg", "")), None)
                case CommandReply(id=cmd_id, msg=msg):
                    self._resolve(cmd_id, None, msg)
                case Fatal(error=error) as fatal:
                    self._error = error
                    await self._source.handle(fatal)
                    await self._source.stop()  # the engine is CLOSED; stop feeding it
                case other:
                    await self._source.handle(other)

    def _resolve(self, key: int, error: BaseException | None, value: Any) -> None:
        waiter = self._waiters.pop(key, None)
        if waiter is None or waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(value)

    async def _call_hook(self, hook: Hook | None, *args: Any) -> None:
        if hook is None:
            return
        try:
            result = hook(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:  # a faulty hook must not take the stream down
            if hook is not self.on_error:
                report = ErrorReport("callback_error", f"hook {hook!r} raised", 0)
                await self._call_hook(self.on_error, report)

    async def _run_callbacks(self) -> None:
        queue = self._callback_queue
        for frame in queue.drain(len(queue)):
            model: Any = None
            for fn, raw in self._callbacks.get(frame.channel, ()):
                if raw:
                    message = frame
                else:
                    if model is None:
                        model = self._to_model(frame)  # once per frame, for every handler
                    if model is None:
                        continue
                    message = model
                try:
                    result = fn(message)
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    await self._call_hook(
                        self.on_error,
                        ErrorReport(
                            "callback_error",
                            f"@on({frame.channel!r}) handler {fn!r} raised {exc!r}",
                            frame.recv_ns,
                            frame.conn,
                            frame.sid,
                            frame.channel,
                        ),
                    )

    def _to_model(self, frame: Frame) -> Any:
        """The pydantic model of a frame, or None (reported) if it does not validate."""
        try:
            return frame.message()
        except Exception as exc:
            return self._rejected(frame, exc)

    def _to_struct(self, frame: Frame) -> Any:
        """The msgspec mirror of a frame's model, or None (reported) if it does not validate."""
        try:
            return frame.struct()
        except Exception as exc:
            return self._rejected(frame, exc)

    def _rejected(self, frame: Frame, exc: Exception) -> None:
        """Report a frame its model refuses (delivered as nothing)."""
        self.engine.outbox.append(
            ErrorReport(
                "malformed",
                str(exc),
                frame.recv_ns,
                frame.conn,
                frame.sid,
                frame.channel,
                raw=frame.raw,
            )
        )

    # ------------------------------------------------------------------ subscribing

    def _overflow_for(self, channel: str) -> Overflow:
        if self._default_overflow is not None:
            return self._default_overflow
        # Stateful, sequenced streams cannot lose a message; latest-wins ones can.
        if channel in (Channel.ORDERBOOK_DELTA, Channel.ORDER_GROUP_UPDATES):
            return Overflow.ERROR
        return Overflow.DROP_OLDEST

    async def subscribe(
        self,
        channel: str,
        params: dict[str, Any] | None = None,
        *,
        overflow: Overflow | None = None,
        maxsize: int | None = None,
        raw: bool = False,
        struct: bool = False,
        tickers: list[str] | None = None,
        attach: bool | None = None,
    ) -> Subscription[Any]:
        """Subscribe to any channel (the generic form of the typed `subscribe_*`).

        Args:
            channel: the wire channel name.
            params: subscribe params other than `channels` (market_tickers, index_ids...).
            overflow: queue policy when the consumer falls behind (default: ERROR for
                orderbook_delta and order_group_updates live, DROP_OLDEST otherwise;
                BLOCK in replay).
            maxsize: queue bound (default 1000).
            raw: deliver `stream.events.Frame` (bytes, clocks, envelope) instead of
                pydantic models: several times faster.
            struct: deliver the msgspec mirrors of the models (`schemas.structs`): the
                same typed fields and exact values, built several times faster than
                the pydantic models; unknown fields are not kept.
            tickers: shorthand for params["market_tickers"].
            attach: receive the frames of the subscriptions that already exist on the
                channel (filtered by ticker) instead of subscribing anew. Replay always
                attaches; live, it lets a consumer ride a recorder's subscriptions, so
                that it sees exactly what a replay of the capture will show.

        Returns:
            An async iterator of messages; it ends when the session closes, and raises
            if the subscription failed or the server ended it in error.
        """
        params = dict(params or {})
        if tickers is not None:
            params["market_tickers"] = list(tickers)
        if raw and struct:
            raise ValueError("raw=True and struct=True exclude each other")
        delivery = Delivery.FRAME if raw else Delivery.STRUCT if struct else Delivery.MODEL
        return await self._subscribe(channel, params, delivery, overflow, maxsize, attach=attach)

    async def _subscribe(
        self,
        channel: str,
        params: dict[str, Any],
        delivery: Delivery,
        overflow: Overflow | None,
        maxsize: int | None,
        tickers: frozenset[str] | None = None,
        *,
        attach: bool | None = None,
    ) -> Subscription[Any]:
        if self._closing or self.engine.state is ConnectionState.CLOSED:
            raise SessionClosed("the session is closed")
        wanted = tickers if tickers is not None else market_set(params)
        self._source.validate_subscription(channel, wanted)
        narrowed = self._source.narrow_tickers(channel, wanted)
        if narrowed != wanted:
            tickers = narrowed
        queue = DeliveryQueue(
            maxsize or self._default_maxsize, overflow or self._overflow_for(channel)
        )
        owns = self._source.owns_wire and not attach
        waiter: asyncio.Future[Any] | None = None
        consumer = self.engine.add_consumer(
            channel, params, owns_wire=owns, delivery=delivery, queue=queue, tickers=tickers
        )
        self._subscribed_any = True
        if owns and self.engine.state in (ConnectionState.CONNECTED, ConnectionState.STREAMING):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[-consumer.cid] = waiter
        await self._dispatch_outputs()
        if waiter is not None:
            await waiter  # the ack, or the error / SubscribeTimeout naming the channel
        return Subscription(self, consumer, queue)

    async def subscribe_wire(self, channel: str, params: dict[str, Any] | None = None) -> int:
        """Keep a subscription on the wire without consuming it; returns its client id.

        What a recorder does: the subscription is re-issued after every reconnect and its
        sequence and books are maintained, so consumers can `attach` to it.
        """
        if not self._source.owns_wire:
            raise SessionClosed("this source replays recorded subscriptions; nothing to send")
        consumer = self.engine.add_consumer(channel, params, owns_wire=True, queue=None)
        self._subscribed_any = True
        await self._dispatch_outputs()
        return consumer.cid

    async def update_subscription(
        self, subscription: Subscription[Any], action: str, **args: Any
    ) -> Any:
        """Send update_subscription (live) or change the ticker filter (replay).

        Returns the server's `ok` payload (live) or None. Raises ServerError on an error
        reply.
        """
        consumer = subscription._consumer
        if not consumer.owns_wire:
            tickers = set(
                args.get("market_tickers")
                or ([args["market_ticker"]] if "market_ticker" in args else [])
            )
            if action == "add_markets" and consumer.tickers is not None:
                consumer.tickers = consumer.tickers | tickers
            elif action == "delete_markets":
                base = consumer.tickers if consumer.tickers is not None else frozenset()
                consumer.tickers = base - tickers
            return None
        cmd_id = self.engine.update_consumer(consumer.cid, action, args)
        if cmd_id is None:
            raise SessionClosed("no active subscription to update (not connected)")
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[cmd_id] = waiter
        await self._dispatch_outputs()
        return await waiter

    async def unsubscribe(self, subscription: Subscription[Any]) -> None:
        self.engine.remove_consumer(subscription.cid)
        await self._dispatch_outputs()

    async def list_subscriptions(self) -> list[dict[str, Any]]:
        """The server's list of subscriptions (live), or the capture's (replay)."""
        if not self._source.owns_wire:
            return self.engine.wire_subscriptions()
        cmd_id = self.engine.list_subscriptions()
        if cmd_id is None:
            raise SessionClosed("not connected")
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[cmd_id] = waiter
        await self._dispatch_outputs()
        result = await waiter
        return list(result or [])

    # ------------------------------------------------------------------ books and callbacks

    async def orderbook(
        self,
        ticker: str,
        *,
        maxsize: int = 100,
        overflow: Overflow | None = None,
        attach: bool | None = None,
    ) -> Subscription[Any]:
        """Subscribe to one market's book: yields a fresh immutable `BookSnapshot` per update
        (and an invalid one, `valid=False`, when a gap or a disconnect clears it)."""
        return await self._subscribe(
            Channel.ORDERBOOK_DELTA,
            {"market_tickers": [ticker]},
            Delivery.BOOK,
            overflow,
            maxsize,
            frozenset({ticker}),
            attach=attach,
        )

    def book(self, ticker: str) -> Any:
        """The current `BookSnapshot` of a market, or None if no book is held for it."""
        return self.engine.book(ticker)

    def on(self, channel: str, *, raw: bool = False) -> Callable[[Hook], Hook]:
        """Decorator: call the function with every message of `channel` (sync or async).

        Callbacks fan out beside iterators (both get every message). Live, registering
        one does not subscribe: the server sends only what some subscribe_* asked for.
        In replay, the capture already holds the data: a callback is enough.
        """

        def register(fn: Hook) -> Hook:
            self._callbacks.setdefault(channel, []).append((fn, raw))
            if not self._source.owns_wire:
                # Attached (replay): the recorded subscriptions already carry the data.
                self._source.validate_subscription(channel, None)
                self._subscribed_any = True
            if channel not in self._callback_consumers:
                self._callback_consumers[channel] = self.engine.add_consumer(
                    channel,
                    None,
                    owns_wire=False,
                    delivery=Delivery.FRAME,
                    queue=self._callback_queue,
                    tickers=self._source.narrow_tickers(channel, None),
                )
            return fn

        return register

    # ------------------------------------------------------------------ typed subscriptions

    async def subscribe_orderbook_delta(
        self, tickers: list[str], *, use_yes_price: bool = False, **kw: Any
    ) -> Subscription[Any]:
        """Book snapshots and deltas of the given markets (tickers are required: error 14)."""
        if not tickers:
            raise ValueError("orderbook_delta needs at least one market ticker")
        params: dict[str, Any] = {"market_tickers": list(tickers)}
        if use_yes_price:
            params["use_yes_price"] = True
        return await self.subscribe(Channel.ORDERBOOK_DELTA, params, **kw)

    async def subscribe_ticker(
        self,
        tickers: list[str] | None = None,
        *,
        market_ids: list[str] | None = None,
        send_initial_snapshot: bool = False,
        **kw: Any,
    ) -> Subscription[Any]:
        params: dict[str, Any] = {}
        if tickers:
            params["market_tickers"] = list(tickers)
        if market_ids:
            params["market_ids"] = list(market_ids)
        if send_initial_snapshot:
            params["send_initial_snapshot"] = True
        return await self.subscribe(Channel.TICKER, params, **kw)

    async def _market_channel(
        self, channel: str, tickers: list[str] | None, kw: dict[str, Any]
    ) -> Subscription[Any]:
        params = {"market_tickers": list(tickers)} if tickers else {}
        return await self.subscribe(channel, params, **kw)

    async def subscribe_trade(
        self, tickers: list[str] | None = None, **kw: Any
    ) -> Subscription[Any]:
        return await self._market_channel(Channel.TRADE, tickers, kw)

    async def subscribe_fill(
        self, tickers: list[str] | None = None, **kw: Any
    ) -> Subscription[Any]:
        return await self._market_channel(Channel.FILL, tickers, kw)

    async def subscribe_user_orders(
        self, tickers: list[str] | None = None, **kw: Any
    ) -> Subscription[Any]:
        return await self._market_channel(Channel.USER_ORDERS, tickers, kw)

    async def subscribe_market_positions(
        self, tickers: list[str] | None = None, **kw: Any
    ) -> Subscription[Any]:
        return await self._market_channel(Channel.MARKET_POSITIONS, tickers, kw)

    async def subscribe_market_lifecycle_v2(self, **kw: Any) -> Subscription[Any]:
        """market_lifecycle_v2, event_lifecycle and event_fee_update messages (no filters)."""
        return await self.subscribe(Channel.MARKET_LIFECYCLE_V2, {}, **kw)

    async def subscribe_multivariate_market_lifecycle(self, **kw: Any) -> Subscription[Any]:
        return await self.subscribe(Channel.MULTIVARIATE_MARKET_LIFECYCLE, {}, **kw)

    async def subscribe_multivariate(self, **kw: Any) -> Subscription[Any]:
        """The legacy `multivariate` channel (multivariate_lookup), for old captures."""
        return await self.subscribe(Channel.MULTIVARIATE, {}, **kw)

    async def subscribe_order_group_updates(self, **kw: Any) -> Subscription[Any]:
        return await self.subscribe(Channel.ORDER_GROUP_UPDATES, {}, **kw)

    async def subscribe_communications(
        self,
        *,
        user_filter: str | None = None,
        shard_factor: int | None = None,
        shard_key: int | None = None,
        **kw: Any,
    ) -> Subscription[Any]:
        params: dict[str, Any] = {}
        if user_filter is not None:
            params["user_filter"] = user_filter
        if shard_factor is not None:
            params["shard_factor"] = shard_factor
        if shard_key is not None:
            params["shard_key"] = shard_key
        return await self.subscribe(Channel.COMMUNICATIONS, params, **kw)

    async def subscribe_cfbenchmarks_value(
        self, index_ids: list[str] | None = None, **kw: Any
    ) -> Subscription[Any]:
        params = {"index_ids": list(index_ids)} if index_ids else {}
        return await self.subscribe(Channel.CFBENCHMARKS_VALUE, params, **kw)

    async def subscribe_cfbenchmarks_value_5hz(
        self, index_ids: list[str] | None = None, **kw: Any
    ) -> Subscription[Any]:
        params = {"index_ids": list(index_ids)} if index_ids else {}
        return await self.subscribe(Channel.CFBENCHMARKS_VALUE_5HZ, params, **kw)

    async def subscribe_pyth_value(
        self, underlying_tickers: list[str] | None = None, **kw: Any
    ) -> Subscription[Any]:
        params = {"underlying_tickers": list(underlying_tickers)} if underlying_tickers else {}
        return await self.subscribe(Channel.PYTH_VALUE, params, **kw)
