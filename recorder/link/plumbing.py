"""The live edge's plumbing: reporting, hooks, the pump lock and background tasks.

`Plumbing` owns how the connection manager talks to everything that is not a
socket: writing to the sink so that a sink that raises is reported (through
`on_error`, at most once a second with a count) and never breaks the receive
loop; connection events with both clocks; error reports handed to the session
beside the engine's own; user hooks and policies called sync or async alike,
whose exceptions are reported and never propagate (CancelledError always does);
one lock around `Session.pump` so the receive loops, the supervisor and the
timers never pump at once; and the background tasks, held and checked. It knows
nothing of reconnect policy.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from recorder.link.sink import Sink
from schemas.events import ConnectionEvent
from stream.engine import Engine
from stream.events import ErrorReport
from stream.session import Session

__all__ = ["Hook", "Plumbing", "Policy", "PumpGate", "call_policy", "now"]

log = logging.getLogger("kalshi_tape.recorder.connection")
NS: Final = 1_000_000_000
#: A user hook (on_connect, on_disconnect...): any arguments, sync or async.
Hook = Callable[..., Any]
#: A should_disconnect / should_reconnect callback: no arguments, sync or async.
Policy = Callable[[], Any]


def now() -> tuple[int, int]:
    """(wall ns, monotonic ns): the two clocks every record carries."""
    return time.time_ns(), time.monotonic_ns()


async def call_policy(fn: Policy) -> Any:
    """Call a policy callback and await its result if it is awaitable (sync or async alike)."""
    result = fn()
    if inspect.isawaitable(result):
        result = await result
    return result


class PumpGate:
    """One pump at a time: the lock, and the task pumping now (shared by a session's feeds)."""

    __slots__ = ("lock", "task")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[Any] | None = None


class Plumbing:
    """The connection manager's link to its sink, its session and its tasks.

    Attributes:
        session: the session being fed (set when the source starts running).
        tasks: the background tasks still running.
    """

    def __init__(self, sink: Sink | None, *, feed: int = 0, gate: PumpGate | None = None) -> None:
        self.sink = sink
        self.session: Session | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        #: The feed this run's records belong to (`recorder.link.feeds`); feed 0 calls the
        #: sink without the keyword, so a sink written before feeds existed still works.
        self.feed = feed
        self.feed_kw: dict[str, int] = {"feed": feed} if feed else {}
        self.gate = gate or PumpGate()
        self._sink_error_ns = 0
        self._sink_errors = 0

    @property
    def engine(self) -> Engine:
        assert self.session is not None
        return self.session.engine

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background task; one that fails is logged and reported."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("background task failed: %r", exc, exc_info=exc)
            self.report("internal_error", f"background task failed: {exc!r}", time.time_ns())

    def in_pump(self) -> bool:
        """True inside the running pump (a hook): waiting on the pump would deadlock."""
        task = self.gate.task
        return task is not None and asyncio.current_task() is task

    async def pump(self) -> None:
        """Carry out the engine's outputs (one pump at a time, across every feed)."""
        session = self.session
        if session is None or not session.needs_pump:
            return
        if self.in_pump():
            return  # a hook that triggered more work: the running pump carries it out
        gate = self.gate
        async with gate.lock:
            gate.task = asyncio.current_task()
            try:
                await session.pump()
            finally:
                gate.task = None

    async def ask(self, policy: Policy) -> Any:
        """A policy's answer, or None (reported) if it raised."""
        try:
            return await call_policy(policy)
        except Exception as exc:
            self.report("callback_error", f"policy {policy!r} raised {exc!r}", time.time_ns())
            return None

    async def hook(self, hook: Hook | None, *args: Any) -> None:
        """Call a user hook; an exception is reported, never raised."""
        if hook is None:
            return
        try:
            await call_policy(lambda: hook(*args))
        except Exception as exc:
            self.report("callback_error", f"hook {hook!r} raised {exc!r}", time.time_ns())

    def report(
        self,
        kind: str,
        message: str,
        recv_ns: int,
        conn: int | None = None,
        sid: int | None = None,
        channel: str | None = None,
        *,
        code: int | None = None,
    ) -> None:
        """Hand an error report to the session (on_error), with the engine's own reports."""
        if self.session is not None:
            report = ErrorReport(kind, message, recv_ns, conn, sid, channel, code)
            self.engine.outbox.append(report)

    def emit(self, conn: int, recv_ns: int, mono_ns: int, event: ConnectionEvent) -> None:
        """Write a connection event to the sink."""
        if self.sink is None:
            return
        try:
            self.sink.event(conn, recv_ns, mono_ns, event, **self.feed_kw)
        except Exception as exc:
            self.sink_failed("event", exc, recv_ns)

    def command_out(self, conn: int, recv_ns: int, mono_ns: int, raw: bytes) -> None:
        """Write a command we send to the sink."""
        if self.sink is None:
            return
        try:
            self.sink.command_out(conn, recv_ns, mono_ns, raw, **self.feed_kw)
        except Exception as exc:
            self.sink_failed("command_out", exc, recv_ns)

    def sink_failed(self, where: str, exc: Exception, recv_ns: int) -> None:
        """A sink raised: report it (at most once a second, with a count), keep receiving."""
        self._sink_errors += 1
        if recv_ns - self._sink_error_ns < NS:
            return
        self._sink_error_ns = recv_ns
        count, self._sink_errors = self._sink_errors, 0
        self.report("sink_error", f"sink.{where} raised {exc!r} ({count} failure(s))", recv_ns)
