"""The pure reconnect and liveness policies, tested without sleeping
(docs/architecture.md section 9.6)."""

from __future__ import annotations

import random
from itertools import islice

import pytest

from recorder.link.policies import (
    AttemptLimiter,
    CloseVerdict,
    DisconnectReason,
    ReconnectStrategy,
    RetryPlan,
    Staleness,
    backoff,
    classify_close,
    classify_handshake,
    effective_max_age_s,
    interpret_reconnect_answer,
)

NS = 1_000_000_000
S = ReconnectStrategy
V = CloseVerdict


def plan(strategy: S = S.EXPONENTIAL_BACKOFF, **kw: float) -> RetryPlan:
    settings = {
        "base_s": 1.0,
        "cap_s": 8.0,
        "max_attempts": 3,
        "stable_s": 60.0,
        "server_unavailable_s": 30.0,
    }
    settings.update(kw)
    return RetryPlan(strategy, rng=random.Random(3), **settings)  # type: ignore[arg-type]


# ---------------------------------------------------------------- backoff


def test_full_jitter_delays_stay_under_a_doubling_ceiling_capped_at_the_maximum() -> None:
    delays = list(islice(backoff(S.EXPONENTIAL_BACKOFF, 0.5, 4.0, random.Random(1)), 200))
    ceilings = [min(4.0, 0.5 * 2**n) for n in range(200)]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[10:]) > 2.0  # the cap is reached, not just the base
    assert len(set(delays)) == len(delays)  # jittered, never the same value twice


def test_full_jitter_never_overflows_after_many_attempts() -> None:
    delays = list(islice(backoff(S.EXPONENTIAL_BACKOFF, 1.0, 60.0, random.Random(2)), 2000))
    assert max(delays) <= 60.0


def test_fixed_delay_is_constant_and_immediate_is_zero() -> None:
    assert list(islice(backoff(S.FIXED_DELAY, 2.5, 9.0, random.Random()), 4)) == [2.5] * 4
    assert list(islice(backoff(S.IMMEDIATE, 2.5, 9.0, random.Random()), 3)) == [0.0] * 3
    assert list(islice(backoff(S.CALLBACK_CONTROLLED, 2.5, 9.0, random.Random()), 2)) == [0.0] * 2


# ---------------------------------------------------------------- close codes


@pytest.mark.parametrize("code", [1002, 1003, 1007, 1008, 1009, 1010, 4000, 4001, 4999])
def test_protocol_and_application_close_codes_are_permanent(code: int) -> None:
    assert classify_close(code) is V.PERMANENT


@pytest.mark.parametrize("code", [None, 1000, 1001, 1006, 1011, 1012, 1014, 3000])
def test_normal_going_away_abnormal_and_server_error_codes_reconnect(code: int | None) -> None:
    assert classify_close(code) is V.RETRY


def test_close_1013_asks_us_to_wait() -> None:
    assert classify_close(1013) is V.SERVER_UNAVAILABLE


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (401, V.PERMANENT),
        (403, V.PERMANENT),
        (404, V.PERMANENT),
        (400, V.PERMANENT),
        (408, V.RETRY),
        (429, V.SERVER_UNAVAILABLE),
        (503, V.SERVER_UNAVAILABLE),
        (500, V.RETRY),
        (502, V.RETRY),
    ],
)
def test_refused_handshakes_are_classified_by_status(status: int, verdict: V) -> None:
    assert classify_handshake(status) is verdict


def test_reasons_split_into_four_proactive_and_six_reactive() -> None:
    proactive = {r for r in DisconnectReason if r.is_proactive}
    assert proactive == {
        DisconnectReason.USER_REQUESTED,
        DisconnectReason.SCHEDULED,
        DisconnectReason.CALLBACK_TRIGGERED,
        DisconnectReason.CONNECTION_LIMIT,
    }
    assert all(r.is_reactive != r.is_proactive for r in DisconnectReason)
    assert len([r for r in DisconnectReason if r.is_reactive]) == 6


# ---------------------------------------------------------------- the retry budget


def test_the_plan_gives_up_after_the_maximum_attempts() -> None:
    p = plan(max_attempts=3)
    delays = [p.next_delay(V.RETRY) for _ in range(3)]
    assert all(d is not None and 0 <= d <= 8.0 for d in delays)
    assert p.next_delay(V.RETRY) is None
    assert not p.can_retry(V.RETRY)


def test_zero_attempts_means_never_retry() -> None:
    assert plan(max_attempts=0).next_delay(V.RETRY) is None


def test_a_permanent_verdict_is_never_retried() -> None:
    p = plan()
    assert p.next_delay(V.PERMANENT) is None
    assert p.attempts == 0


def test_a_flapping_connection_does_not_reset_the_budget() -> None:
    p = plan(max_attempts=2, stable_s=60.0)
    assert p.next_delay(V.RETRY) is not None
    p.connection_lost(lived_s=0.01)  # opened, then closed at once
    assert p.next_delay(V.RETRY) is not None
    p.connection_lost(lived_s=0.01)
    assert p.next_delay(V.RETRY) is None


def test_a_stable_connection_resets_the_budget_and_the_next_retry_is_immediate() -> None:
    p = plan(max_attempts=2, stable_s=60.0)
    p.next_delay(V.RETRY)
    p.next_delay(V.RETRY)
    p.connection_lost(lived_s=60.0)
    assert p.attempts == 0
    assert p.next_delay(V.RETRY) == 0.0
    second = p.next_delay(V.RETRY)
    assert second is not None and 0.0 <= second <= 2.0  # backing off again


def test_server_unavailable_waits_at_least_the_configured_delay() -> None:
    p = plan(server_unavailable_s=30.0)
    delay = p.next_delay(V.SERVER_UNAVAILABLE)
    assert delay is not None and delay >= 30.0


def test_a_retry_after_header_replaces_the_server_unavailable_delay() -> None:
    p = plan(server_unavailable_s=30.0)
    assert p.next_delay(V.SERVER_UNAVAILABLE, retry_after_s=5.0) == pytest.approx(5.0, abs=1.0)


# ---------------------------------------------------------------- attempt rate limit


def test_the_limiter_allows_n_attempts_per_sliding_window() -> None:
    limiter = AttemptLimiter(3, window_s=60.0)
    t = 0
    for _ in range(3):
        assert limiter.wait_s(t) == 0.0
        limiter.record(t)
        t += 1 * NS
    assert limiter.wait_s(t) == pytest.approx(57.0)
    assert limiter.wait_s(60 * NS) == 0.0  # the first attempt left the window


def test_no_window_ever_holds_more_than_n_attempts_when_the_waits_are_obeyed() -> None:
    limiter = AttemptLimiter(4, window_s=10.0)
    rng = random.Random(5)
    t, starts = 0, []
    for _ in range(200):
        t += int(rng.uniform(0, 2) * NS)
        t += int(limiter.wait_s(t) * NS) + 1
        limiter.record(t)
        starts.append(t)
    for i, start in enumerate(starts):
        in_window = [s for s in starts[i:] if s - start < 10 * NS]
        assert len(in_window) <= 4


# ---------------------------------------------------------------- staleness


def feed(staleness: Staleness, frames: int, last_s: float, now_s: float) -> list:
    return staleness.observe([(1, 1, "trade", frames, int(last_s * NS))], int(now_s * NS))


def test_a_flowing_subscription_that_stops_is_stale_once() -> None:
    st = Staleness(floor_s=1.0, multiplier=10.0, min_observations=20)
    feed(st, 0, 0.0, 0.0)
    for second in range(1, 6):  # 100 frames a second, 10 ms apart
        assert feed(st, second * 100, second - 0.01, second) == []
    assert feed(st, 500, 4.99, 5.9) == []  # silent 0.91 s: under the 1 s floor
    stale = feed(st, 500, 4.99, 6.1)
    assert [(s.conn, s.sid, s.channel) for s in stale] == [(1, 1, "trade")]
    assert stale[0].threshold_s == pytest.approx(1.0)
    assert stale[0].mean_gap_s == pytest.approx(0.01, rel=0.05)
    assert feed(st, 500, 4.99, 9.0) == []  # reported once per silence


def test_a_quiet_market_is_never_stale() -> None:
    st = Staleness(floor_s=1.0, multiplier=10.0, min_observations=20)
    feed(st, 3, 0.0, 0.0)  # a snapshot burst, then nothing for a day
    for hour in range(1, 25):
        assert feed(st, 3, 0.0, hour * 3600.0) == []


def test_the_snapshot_burst_at_subscribe_only_seeds_the_rate() -> None:
    st = Staleness(floor_s=1.0, multiplier=10.0, min_observations=5)
    feed(st, 500, 0.001, 0.5)  # 500 snapshots in a millisecond, seen at the first look
    for i in range(1, 4):  # then one frame every 30 s
        feed(st, 500 + i, 30.0 * i, 30.0 * i)
    assert feed(st, 503, 90.0, 200.0) == []  # 3 observations: not enough to judge


def test_the_threshold_follows_each_subscriptions_own_rate() -> None:
    st = Staleness(floor_s=1.0, multiplier=10.0, min_observations=20)
    st.observe([(1, 1, "ticker", 0, 0), (1, 2, "trade", 0, 0)], 0)
    for second in range(1, 61):  # sid 1: 100/s; sid 2: one frame every 2 s
        rows = [
            (1, 1, "ticker", second * 100, int((second - 0.01) * NS)),
            (1, 2, "trade", second // 2, int((second // 2) * 2 * NS)),
        ]
        assert st.observe(rows, second * NS) == []
    rows = [(1, 1, "ticker", 6000, int(59.99 * NS)), (1, 2, "trade", 30, 60 * NS)]
    stale = st.observe(rows, int(65 * NS))  # 5 s of silence on both
    assert [s.sid for s in stale] == [1]  # 5 s is 500 gaps for sid 1, 2.5 gaps for sid 2
    later = st.observe(rows, int(81 * NS))  # 21 s: more than 10 gaps of 2 s
    assert [s.sid for s in later] == [2]


def test_subscriptions_that_disappear_are_forgotten() -> None:
    st = Staleness(floor_s=1.0, multiplier=10.0, min_observations=1)
    feed(st, 1, 0.0, 0.0)
    feed(st, 2, 0.1, 0.1)
    st.observe([], int(0.2 * NS))
    assert feed(st, 2, 0.1, 100.0) == []  # a new track: seeded again, not judged


# ---------------------------------------------------------------- age and answers


def test_the_rotation_comes_a_margin_before_the_platform_limit() -> None:
    assert effective_max_age_s(86400.0, 300.0) == 86100.0
    assert effective_max_age_s(0.0, 300.0) is None
    assert effective_max_age_s(100.0, 300.0) == 50.0  # never before half the limit


@pytest.mark.parametrize(
    ("answer", "meaning"),
    [(True, 0.0), (2.5, 2.5), (3, 3.0), (False, None), (None, None), (0, None), (-1, None)],
)
def test_should_reconnect_answers_mean_now_later_or_not_yet(
    answer: object, meaning: float | None
) -> None:
    assert interpret_reconnect_answer(answer) == meaning
