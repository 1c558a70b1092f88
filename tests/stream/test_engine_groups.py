"""Connection groups: several recorder runs (shards) replayed at once through one engine."""

from __future__ import annotations

import json

from stream import ConnectionState, Delivery, DeliveryQueue, Engine, Overflow, StateChanged

from .harness import wire


def subscribe(engine: Engine, conn: int, cmd_id: int, channel: str, sid: int) -> None:
    cmd = {"id": cmd_id, "cmd": "subscribe", "params": {"channels": [channel]}}
    engine.command_sent(json.dumps(cmd).encode(), 0, 0, conn)
    engine.frame_received(wire.ack(cmd_id, channel, sid), 0, 0, conn)


def two_runs() -> tuple[Engine, DeliveryQueue]:
    engine = Engine()
    queue = DeliveryQueue(100, Overflow.BLOCK)
    engine.add_consumer("trade", owns_wire=False, delivery=Delivery.FRAME, queue=queue)
    for group, conn in ((1, 101), (2, 201)):
        engine.connection_attempt(0, 0, group=group)
        engine.connection_opened(conn, 0, 0, group=group)
        subscribe(engine, conn, 1, "trade", 1)  # both runs use command id 1 and sid 1
    return engine, queue


def test_concurrent_runs_both_deliver_to_an_attached_consumer() -> None:
    engine, queue = two_runs()
    engine.frame_received(wire.trade(1, 1, "KX-A", "a"), 1, 1, 101)
    engine.frame_received(wire.trade(1, 1, "KX-B", "b"), 2, 2, 201)
    engine.frame_received(wire.trade(1, 2, "KX-A", "c"), 3, 3, 101)
    assert [(f.conn, f.seq) for f in queue.drain(10)] == [(101, 1), (201, 1), (101, 2)]
    assert engine.stats.gaps == 0


def test_closing_one_run_leaves_the_other_streaming() -> None:
    engine, queue = two_runs()
    engine.connection_closed(101, 5, 5, code=1006, will_reconnect=False)
    engine.frame_received(wire.trade(1, 1, "KX-B", "b"), 6, 6, 201)
    assert [f.conn for f in queue.drain(10)] == [201]
    assert engine.state is ConnectionState.STREAMING
    engine.connection_closed(201, 7, 7, code=1000, will_reconnect=False)
    assert engine.state is ConnectionState.DISCONNECTED


def test_the_session_sees_the_aggregate_state_once_per_change() -> None:
    engine, _ = two_runs()
    changes = [(o.old.value, o.new.value) for o in engine.outbox if isinstance(o, StateChanged)]
    assert changes == [
        ("DISCONNECTED", "CONNECTING"),
        ("CONNECTING", "CONNECTED"),
        ("CONNECTED", "STREAMING"),
    ]
