"""The live link's lifecycle: one decision per event, a table of moves, no sockets, no sleeps."""

from __future__ import annotations

import pytest

from recorder.link.lifecycle import (
    TRANSITIONS,
    AttemptFailed,
    Backoff,
    Connect,
    Fail,
    Finish,
    GaveUp,
    Hold,
    LinkState,
    Lost,
    Opened,
    Released,
    Serve,
    Start,
    Stop,
    WaitOver,
    WaitThenConnect,
    step,
    will_reconnect,
)
from recorder.link.opener import Intent, LinkEnd
from recorder.link.policies import CloseVerdict, DisconnectReason
from stream.errors import IllegalTransition

L = LinkState
R = DisconnectReason
V = CloseVerdict


def end(
    reason: R = R.NETWORK_ERROR,
    verdict: V = V.RETRY,
    intent: Intent | None = None,
    code: int | None = 1006,
) -> LinkEnd:
    return LinkEnd(reason, code, "bye", "server", verdict, intent)


def lost(e: LinkEnd, *, auto: bool = True, may_retry: bool = True, stopping: bool = False) -> Lost:
    return Lost(e, auto, may_retry, stopping)


def test_a_session_starts_by_connecting_and_serves_once_open() -> None:
    assert step(L.IDLE, Start()) == (L.CONNECTING, Connect())
    assert step(L.CONNECTING, Opened()) == (L.OPEN, Serve())


def test_a_reactive_loss_backs_off_with_the_close_verdict() -> None:
    state, action = step(L.OPEN, lost(end(R.NETWORK_ERROR)))
    assert (state, action) == (L.BACKING_OFF, Backoff(V.RETRY))
    assert will_reconnect(action)
    assert step(L.OPEN, lost(end(R.SERVER_CLOSED, V.SERVER_UNAVAILABLE, code=1013)))[1] == Backoff(
        V.SERVER_UNAVAILABLE
    )


def test_a_backoff_that_elapses_connects_and_one_the_plan_refuses_gives_up() -> None:
    assert step(L.BACKING_OFF, WaitOver()) == (L.CONNECTING, Connect())
    assert step(L.BACKING_OFF, GaveUp()) == (L.FAILED, Fail(False))


def test_a_permanent_close_fails_with_its_code_and_never_reconnects() -> None:
    state, action = step(L.OPEN, lost(end(R.SERVER_CLOSED, V.PERMANENT, code=4001)))
    assert (state, action) == (L.FAILED, Fail(True, 4001, "bye"))
    assert not will_reconnect(action)


def test_no_retry_left_fails_and_auto_reconnect_off_holds() -> None:
    assert step(L.OPEN, lost(end(), may_retry=False)) == (L.FAILED, Fail(False))
    state, action = step(L.OPEN, lost(end(R.PING_TIMEOUT), auto=False))
    assert (state, action) == (L.HELD, Hold(R.PING_TIMEOUT))
    assert not will_reconnect(action)


def test_our_own_closes_follow_their_intent_whatever_the_plan_says() -> None:
    hold = end(R.USER_REQUESTED, intent=Intent(R.USER_REQUESTED, "hold"))
    assert step(L.OPEN, lost(hold, may_retry=False)) == (L.HELD, Hold(R.USER_REQUESTED))
    later = end(R.SCHEDULED, intent=Intent(R.SCHEDULED, "reconnect", 2.5))
    assert step(L.OPEN, lost(later, may_retry=False)) == (L.WAITING, WaitThenConnect(2.5))
    now = end(R.SCHEDULED, intent=Intent(R.SCHEDULED, "reconnect"))
    assert step(L.OPEN, lost(now)) == (L.CONNECTING, Connect())
    killed = end(R.KILLED, intent=Intent(R.KILLED, "react"))  # a simulated drop is reactive
    assert step(L.OPEN, lost(killed)) == (L.BACKING_OFF, Backoff(V.RETRY))
    assert step(L.OPEN, lost(killed, auto=False))[0] is L.HELD


def test_a_failed_attempt_retries_fails_or_stops() -> None:
    retry = AttemptFailed(V.SERVER_UNAVAILABLE, 7.0, may_retry=True, stopping=False)
    assert step(L.CONNECTING, retry) == (L.BACKING_OFF, Backoff(V.SERVER_UNAVAILABLE, 7.0))
    refused = AttemptFailed(V.PERMANENT, None, may_retry=False, stopping=False)
    assert step(L.CONNECTING, refused) == (L.FAILED, Fail(True))
    spent = AttemptFailed(V.RETRY, None, may_retry=False, stopping=False)
    assert step(L.CONNECTING, spent) == (L.FAILED, Fail(False))
    closing = AttemptFailed(V.RETRY, None, may_retry=True, stopping=True)
    assert step(L.CONNECTING, closing) == (L.STOPPED, Finish())


def test_a_hold_is_left_by_a_release_and_a_requested_wait_by_its_end() -> None:
    assert step(L.HELD, Released()) == (L.CONNECTING, Connect())
    assert step(L.WAITING, WaitOver()) == (L.CONNECTING, Connect())


@pytest.mark.parametrize("state", [s for s in L if s not in (L.FAILED, L.STOPPED)])
def test_stop_ends_every_live_state_and_a_loss_while_stopping_is_no_reconnect(state) -> None:
    assert step(state, Stop()) == (L.STOPPED, Finish())
    if state is L.OPEN:
        assert step(state, lost(end(), stopping=True)) == (L.STOPPED, Finish())


def test_final_states_stay_final() -> None:
    assert step(L.FAILED, Stop()) == (L.FAILED, Finish())
    assert step(L.STOPPED, Stop()) == (L.STOPPED, Finish())
    assert TRANSITIONS[L.FAILED] == TRANSITIONS[L.STOPPED] == frozenset()


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (L.IDLE, Opened()),
        (L.OPEN, Opened()),
        (L.HELD, WaitOver()),
        (L.CONNECTING, lost(end())),
        (L.FAILED, Start()),
        (L.WAITING, GaveUp()),
    ],
)
def test_an_event_the_table_does_not_allow_raises_naming_the_state(state, event) -> None:
    with pytest.raises(IllegalTransition, match=f"link state {state.value}"):
        step(state, event)


def test_every_decision_moves_along_the_table() -> None:
    events = [
        Start(), Opened(), WaitOver(), GaveUp(), Released(), Stop(),
        AttemptFailed(V.RETRY, None, True, False), AttemptFailed(V.PERMANENT, None, False, False),
        lost(end()), lost(end(), auto=False), lost(end(verdict=V.PERMANENT)),
        lost(end(intent=Intent(R.USER_REQUESTED, "hold"))),
        lost(end(intent=Intent(R.SCHEDULED, "reconnect", 1.0))),
    ]  # fmt: skip
    for state in L:
        for event in events:
            try:
                new, _ = step(state, event)
            except IllegalTransition:
                continue
            assert new is state or new in TRANSITIONS[state], (state, event, new)
