"""Bounded delivery queues with an overflow policy, read by `async for`.

The engine puts synchronously (it never awaits); consumers read asynchronously.
A queue is a deque plus at most two futures: one a waiting reader sleeps on, one
a blocked producer sleeps on. Nothing here creates a future unless someone must
wait, so an engine driven by a test without an event loop can use queues too.
(docs/performance.md section 4.3: a queue put/get per message costs far more than this.)

Policies (`Overflow`):
    DROP_OLDEST  evict the oldest item; count it (latest-wins channels)
    ERROR        refuse; the engine turns it into a fatal BackpressureError
    BLOCK        accept past the bound; the session's pump awaits `wait_for_space`

Closing puts an end marker after the buffered items: a reader gets everything
already queued, then either StopAsyncIteration or the closing error, never a hang
and never a silent end after an error (docs/protocol.md sections 9.15 and 9.18).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from typing import Any

__all__ = ["PUT_OK", "PUT_OVER", "PUT_REFUSED", "DeliveryQueue", "Overflow"]

PUT_OK, PUT_OVER, PUT_REFUSED = 0, 1, 2


class Overflow(StrEnum):
    DROP_OLDEST = "drop_oldest"
    ERROR = "error"
    BLOCK = "block"


class DeliveryQueue:
    """A bounded FIFO between the engine (producer) and one consumer."""

    __slots__ = (
        "_buf",
        "_closed",
        "_error",
        "_reader",
        "_space",
        "dropped",
        "maxsize",
        "overflow",
    )

    def __init__(self, maxsize: int, overflow: Overflow) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, not {maxsize}")
        self._buf: deque[Any] = deque()
        self.maxsize = maxsize
        self.overflow = overflow
        self.dropped = 0
        self._closed = False
        self._error: BaseException | None = None
        self._reader: asyncio.Future[None] | None = None
        self._space: asyncio.Future[None] | None = None

    @property
    def buffer(self) -> deque[Any]:
        """The queued items themselves, oldest first: truthy when any is queued (for a
        hot loop's test; never modify it)."""
        return self._buf

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def over_capacity(self) -> bool:
        """True when a BLOCK queue holds more than maxsize items."""
        return len(self._buf) > self.maxsize

    def put(self, item: Any) -> int:
        """Queue one item. Returns PUT_OK, PUT_OVER (a BLOCK queue past its bound: the
        producer should wait) or PUT_REFUSED (an ERROR queue is full, or the queue is closed)."""
        buf = self._buf
        if len(buf) >= self.maxsize or self._closed:
            if self._closed:
                return PUT_REFUSED
            if self.overflow is Overflow.DROP_OLDEST:
                buf.popleft()
                self.dropped += 1
            elif self.overflow is Overflow.ERROR:
                return PUT_REFUSED
            else:
                buf.append(item)
                self._wake_reader()
                return PUT_OVER
        buf.append(item)
        reader = self._reader
        if reader is not None:
            self._reader = None
            if not reader.done():
                reader.set_result(None)
        return PUT_OK

    def close(self, error: BaseException | None = None) -> None:
        """End the queue after the items already in it; the reader then gets `error` if given."""
        if self._closed:
            return
        self._closed = True
        self._error = error
        self._wake_reader()
        self._wake_producer()

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None:
            self._reader = None
            if not reader.done():
                reader.set_result(None)

    def _wake_producer(self) -> None:
        space = self._space
        if space is not None:
            self._space = None
            if not space.done():
                space.set_result(None)

    def last_item(self) -> Any:
        """The newest queued item, or None."""
        return self._buf[-1] if self._buf else None

    def get_nowait(self) -> Any:
        """Pop the next item; raise IndexError if none (check `len` first)."""
        item = self._buf.popleft()
        if self._space is not None and len(self._buf) <= self.maxsize // 2:
            self._wake_producer()
        return item

    def drain(self, limit: int) -> list[Any]:
        """Pop up to `limit` items at once (the batch API)."""
        buf = self._buf
        n = min(limit, len(buf))
        items = [buf.popleft() for _ in range(n)]
        if self._space is not None and len(buf) <= self.maxsize // 2:
            self._wake_producer()
        return items

    async def items(
        self, convert: Callable[[Any], Any] | None, on_empty: Callable[[], None]
    ) -> AsyncIterator[Any]:
        """Yield the queued items one by one until the queue is closed and drained, then
        raise its closing error, if any.

        `convert` maps each item (an item it maps to None is skipped); `on_empty` runs
        before waiting for more. An async generator that pops straight from the buffer
        costs a fraction of an `__anext__` coroutine per item (see
        docs/performance.md section 4.3); nothing is taken out of the queue before it
        is yielded, so a consumer that stops early loses nothing.
        """
        buf = self._buf
        pop = buf.popleft
        while True:
            while buf:
                item = pop()
                if self._space is not None and len(buf) <= self.maxsize // 2:
                    self._wake_producer()
                if convert is not None:
                    item = convert(item)
                    if item is None:
                        continue
                yield item
            on_empty()
            if not await self.wait_readable():
                self.raise_if_failed()
                return

    async def wait_readable(self) -> bool:
        """Wait until an item is queued or the queue is closed. False means closed and empty."""
        while not self._buf:
            if self._closed:
                return False
            if self._reader is None or self._reader.done():
                self._reader = asyncio.get_running_loop().create_future()
            await self._reader
        return True

    def raise_if_failed(self) -> None:
        """At the end of a drained queue: raise the closing error, if any."""
        if self._error is not None:
            raise self._error

    async def wait_for_space(self) -> None:
        """Wait until a BLOCK queue is back to half its bound (or closed)."""
        while len(self._buf) > self.maxsize // 2 and not self._closed:
            if self._space is None or self._space.done():
                self._space = asyncio.get_running_loop().create_future()
            await self._space
