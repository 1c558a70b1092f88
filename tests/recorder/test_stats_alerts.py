"""Live statistics and throttled disconnect alerts (pure: times are handed in)."""

from __future__ import annotations

from recorder.link.alerts import DisconnectAlerts
from recorder.link.policies import DisconnectReason as R
from recorder.link.stats import LiveStats, frame_type

NS = 1_000_000_000


def test_stats_start_at_zero_and_count_disconnects_split_by_kind() -> None:
    stats = LiveStats(started_mono_ns=0)
    assert (stats.connects, stats.disconnects, stats.messages_received) == (0, 0, 0)
    stats.connected(100, 1 * NS, active=True)
    stats.disconnected(R.SERVER_CLOSED, 1001, 200)
    stats.disconnected(R.CONNECTION_LIMIT, 1000, 300)
    stats.disconnected(R.STALE, 1000, 400)
    assert stats.connects == 1
    assert stats.disconnects == 3
    assert (stats.proactive_disconnects, stats.reactive_disconnects) == (1, 2)
    assert stats.disconnects_by_reason == {
        R.SERVER_CLOSED: 1,
        R.CONNECTION_LIMIT: 1,
        R.STALE: 1,
    }
    assert (stats.last_connect_ns, stats.last_disconnect_ns, stats.last_close_code) == (
        100,
        400,
        1000,
    )


def test_bytes_are_counted_as_bytes_not_characters() -> None:
    stats = LiveStats()
    raw = '{"type":"trade","msg":{"note":"é€"}}'.encode()
    stats.received(raw, 5)
    stats.sent(b'{"id":1}', 6)
    assert stats.bytes_received == len(raw) > len(raw.decode())
    assert (stats.messages_received, stats.messages_sent, stats.bytes_sent) == (1, 1, 8)
    assert stats.last_message_ns == 6


def test_frames_are_counted_per_channel_by_their_envelope_type() -> None:
    stats = LiveStats()
    for raw in (
        b'{"type":"orderbook_delta","sid":1}',
        b'{"type":"orderbook_snapshot","sid":1}',
        b'{"type":"trade","sid":2}',
        b'{"id":1,"type":"subscribed","msg":{}}',
        b"not json",
    ):
        stats.received(raw, 1)
    assert stats.per_channel == {
        "orderbook_delta": 2,
        "trade": 1,
        "_control": 1,
        "_unknown": 1,
    }
    assert frame_type(b'{"type":"ticker"') == b"ticker"
    assert frame_type(b'{"type":"tick') == b""


def test_connection_duration_is_zero_when_not_connected_and_uptime_grows() -> None:
    stats = LiveStats(started_mono_ns=0)
    assert stats.connection_duration_s(5 * NS) == 0.0
    stats.connected(1, 2 * NS, active=True)
    assert stats.connection_duration_s(5 * NS) == 3.0
    stats.active_changed(None)
    assert stats.connection_duration_s(6 * NS) == 0.0
    assert stats.uptime_s(6 * NS) == 6.0


def test_reset_zeroes_every_counter_and_restarts_uptime() -> None:
    stats = LiveStats(started_mono_ns=0)
    stats.connected(1, 1, active=True)
    stats.received(b'{"type":"trade"}', 2)
    stats.disconnected(R.KILLED, None, 3)
    stats.reset(10 * NS)
    assert stats.connects == stats.messages_received == stats.disconnects == 0
    assert not stats.types_received and not stats.disconnects_by_reason
    assert stats.uptime_s(11 * NS) == 1.0


# ---------------------------------------------------------------- alerts


def test_the_first_disconnect_alerts_at_once_even_right_after_boot() -> None:
    alerts = DisconnectAlerts(300.0)
    alert = alerts.record(R.NETWORK_ERROR, mono_ns=1)  # monotonic time just after boot
    assert alert is not None
    assert (alert.reason, alert.count, alert.suppressed) == (R.NETWORK_ERROR, 1, 0)


def test_a_burst_gives_one_alert_then_one_with_the_suppressed_count() -> None:
    alerts = DisconnectAlerts(10.0)
    sent = [alerts.record(R.SERVER_CLOSED, i * NS // 10) for i in range(10)]
    assert [a is not None for a in sent] == [True] + [False] * 9
    assert alerts.held == 9
    late = alerts.record(R.PING_TIMEOUT, 11 * NS)
    assert late is not None
    assert (late.count, late.suppressed, late.reason) == (10, 9, R.PING_TIMEOUT)
    assert dict(late.reasons) == {R.SERVER_CLOSED: 9, R.PING_TIMEOUT: 1}


def test_held_disconnects_are_flushed_by_the_timer_without_a_new_one() -> None:
    alerts = DisconnectAlerts(10.0)
    alerts.record(R.NETWORK_ERROR, 0)
    alerts.record(R.NETWORK_ERROR, 1 * NS)
    alerts.record(R.STALE, 2 * NS)
    assert alerts.next_flush_ns == 10 * NS
    assert alerts.flush(9 * NS) is None
    flushed = alerts.flush(10 * NS)
    assert flushed is not None
    assert (flushed.count, flushed.suppressed, flushed.reason) == (2, 2, R.STALE)
    assert dict(flushed.reasons) == {R.NETWORK_ERROR: 1, R.STALE: 1}
    assert alerts.next_flush_ns is None and alerts.flush(100 * NS) is None


def test_planned_rotations_do_not_alert_unless_asked() -> None:
    assert DisconnectAlerts(1.0).record(R.CONNECTION_LIMIT, 0) is None
    assert DisconnectAlerts(1.0, include_proactive=True).record(R.CONNECTION_LIMIT, 0)
