"""The live connection's lifecycle: one state, a table of transitions, one decision function.

Theory of operation. The connection manager (`recorder.link.connection`) keeps one
`LinkState` and, whenever something happens to the link, hands `step` the state
and the event; `step` returns the next state and the one action to carry out.
Everything that decides whether and when to reconnect is here, decided once and
tested without sockets or sleeps; the manager only performs the actions (open a
socket, wait, hold, give up) and reports the events, with the facts each needs
(what the retry plan allows, whether the session is stopping).

    IDLE --Start--> CONNECTING --Opened--> OPEN
    CONNECTING --AttemptFailed--> BACKING_OFF (will retry) | FAILED | STOPPED
    OPEN --Lost--> CONNECTING (a proactive reconnect, at once)
                 | WAITING    (a proactive reconnect after a delay)
                 | BACKING_OFF (a reactive loss that may be retried)
                 | HELD        (asked to hold, or auto_reconnect off)
                 | FAILED      (a permanent close code, or no retry left)
                 | STOPPED     (the session is stopping)
    BACKING_OFF, WAITING --WaitOver--> CONNECTING;  BACKING_OFF --GaveUp--> FAILED
    HELD --Released--> CONNECTING;  any live state --Stop--> STOPPED

A make-before-break rotation is not a transition: the standby replaces the
active link while the state stays OPEN. A loss the standby covers is no `Lost`.
FAILED and STOPPED are final. An event the table does not allow raises
`IllegalTransition` naming the state and the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from recorder.link.opener import LinkEnd
from recorder.link.policies import CloseVerdict, DisconnectReason
from stream.errors import IllegalTransition

__all__ = [
    "TRANSITIONS",
    "Action",
    "AttemptFailed",
    "Backoff",
    "Connect",
    "Event",
    "Fail",
    "Finish",
    "GaveUp",
    "Hold",
    "LinkState",
    "Lost",
    "Opened",
    "Released",
    "Serve",
    "Start",
    "Stop",
    "WaitOver",
    "WaitThenConnect",
    "step",
]


class LinkState(StrEnum):
    IDLE = "idle"  # not started
    CONNECTING = "connecting"  # a handshake is on its way
    OPEN = "open"  # an active connection delivers
    BACKING_OFF = "backing_off"  # a reactive retry waits its delay
    WAITING = "waiting"  # a proactive reconnect waits the delay that was asked for
    HELD = "held"  # disconnected on purpose until released
    FAILED = "failed"  # gave up: a permanent close, a refused key, no retry left
    STOPPED = "stopped"  # the session stopped


_L = LinkState

#: Which states each state may move to.
TRANSITIONS: Final[dict[LinkState, frozenset[LinkState]]] = {
    _L.IDLE: frozenset({_L.CONNECTING, _L.STOPPED}),
    _L.CONNECTING: frozenset({_L.OPEN, _L.BACKING_OFF, _L.FAILED, _L.STOPPED}),
    _L.OPEN: frozenset({_L.CONNECTING, _L.WAITING, _L.BACKING_OFF, _L.HELD, _L.FAILED, _L.STOPPED}),
    _L.BACKING_OFF: frozenset({_L.CONNECTING, _L.FAILED, _L.STOPPED}),
    _L.WAITING: frozenset({_L.CONNECTING, _L.STOPPED}),
    _L.HELD: frozenset({_L.CONNECTING, _L.STOPPED}),
    _L.FAILED: frozenset(),
    _L.STOPPED: frozenset(),
}


# ---------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Start:
    """The session starts."""


@dataclass(frozen=True, slots=True)
class Opened:
    """The handshake succeeded: the connection is the active one."""


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    """A handshake failed.

    Attributes:
        verdict: what its failure means for retrying.
        retry_after_s: the server's Retry-After, if any.
        may_retry: auto_reconnect is on and the retry plan has an attempt left.
        stopping: the session is stopping.
    """

    verdict: CloseVerdict
    retry_after_s: float | None
    may_retry: bool
    stopping: bool


@dataclass(frozen=True, slots=True)
class Lost:
    """The active connection ended with nothing to take over.

    Attributes:
        end: how it ended (its reason, close verdict, and our intent if we closed it).
        auto_reconnect: the session reconnects after reactive losses.
        may_retry: the retry plan (reset first if the connection was stable) has an
            attempt left for this end's verdict.
        stopping: the session is stopping.
    """

    end: LinkEnd
    auto_reconnect: bool
    may_retry: bool
    stopping: bool


@dataclass(frozen=True, slots=True)
class WaitOver:
    """A backoff or a requested delay has elapsed."""


@dataclass(frozen=True, slots=True)
class GaveUp:
    """The retry plan refused another attempt when its delay was asked for."""


@dataclass(frozen=True, slots=True)
class Released:
    """A hold ends: reconnect_now(), a window, should_reconnect said so."""


@dataclass(frozen=True, slots=True)
class Stop:
    """The session is closing."""


Event = Start | Opened | AttemptFailed | Lost | WaitOver | GaveUp | Released | Stop

# ---------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a connection now."""


@dataclass(frozen=True, slots=True)
class Serve:
    """Nothing to do: the connection delivers until an event says otherwise."""


@dataclass(frozen=True, slots=True)
class WaitThenConnect:
    """Wait `delay_s` (a delay that was asked for), then connect."""

    delay_s: float


@dataclass(frozen=True, slots=True)
class Backoff:
    """Ask the retry plan for the next delay (verdict, Retry-After), wait it, connect."""

    verdict: CloseVerdict
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """Stay disconnected until released."""

    reason: DisconnectReason | None


@dataclass(frozen=True, slots=True)
class Fail:
    """Give up: `permanent` for a close code that forbids retrying, else no retry left."""

    permanent: bool
    code: int | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class Finish:
    """The session stopped: close what is open, end."""


Action = Connect | Serve | WaitThenConnect | Backoff | Hold | Fail | Finish


# ---------------------------------------------------------------------- the decision


def step(state: LinkState, event: Event) -> tuple[LinkState, Action]:
    """The next state and the action to carry out, for `event` in `state`.

    Raises:
        IllegalTransition: the table has no move for this event in this state.
    """
    new, action = _decide(state, event)
    if new not in TRANSITIONS[state] and new is not state:
        raise IllegalTransition(
            f"link state {state.value}: {type(event).__name__} cannot lead to {new.value}"
        )
    return new, action


def _decide(state: LinkState, event: Event) -> tuple[LinkState, Action]:
    if isinstance(event, Stop):
        if state in (_L.FAILED, _L.STOPPED):
            return state, Finish()
        return _L.STOPPED, Finish()
    if state is _L.IDLE and isinstance(event, Start):
        return _L.CONNECTING, Connect()
    if state is _L.CONNECTING and isinstance(event, Opened):
        return _L.OPEN, Serve()
    if state is _L.CONNECTING and isinstance(event, AttemptFailed):
        if event.stopping:
            return _L.STOPPED, Finish()
        if not event.may_retry:
            return _L.FAILED, Fail(event.verdict is CloseVerdict.PERMANENT)
        return _L.BACKING_OFF, Backoff(event.verdict, event.retry_after_s)
    if state is _L.OPEN and isinstance(event, Lost):
        return _after_loss(event)
    if state in (_L.BACKING_OFF, _L.WAITING) and isinstance(event, WaitOver):
        return _L.CONNECTING, Connect()
    if state is _L.BACKING_OFF and isinstance(event, GaveUp):
        return _L.FAILED, Fail(False)
    if state is _L.HELD and isinstance(event, Released):
        return _L.CONNECTING, Connect()
    raise IllegalTransition(f"link state {state.value}: {type(event).__name__} is not expected")


def _after_loss(event: Lost) -> tuple[LinkState, Action]:
    """What follows the loss of the active connection: decided here, and only here."""
    end = event.end
    if event.stopping:
        return _L.STOPPED, Finish()
    intent = end.intent
    if intent is not None and intent.then == "stop":
        return _L.STOPPED, Finish()
    if intent is not None and intent.then == "hold":
        return _L.HELD, Hold(end.reason)
    if intent is not None and intent.then == "reconnect":
        if intent.after_s > 0:
            return _L.WAITING, WaitThenConnect(intent.after_s)
        return _L.CONNECTING, Connect()
    if end.verdict is CloseVerdict.PERMANENT:
        return _L.FAILED, Fail(True, end.code, end.text)
    if not event.auto_reconnect:
        return _L.HELD, Hold(end.reason)
    if not event.may_retry:
        return _L.FAILED, Fail(False)
    return _L.BACKING_OFF, Backoff(end.verdict)


def will_reconnect(action: Action) -> bool:
    """Whether the session will connect again by itself after this action."""
    return isinstance(action, Connect | WaitThenConnect | Backoff)
