"""Where each microsecond of a frame goes: the replay path and the capture path, by stage.

    python bench/bench_profile.py [--frames N]

Each stage is measured by running the path cumulatively up to it on the same frames
of the realistic mix (bench/mix.py), in one process, and taking the difference from
the run before: the cost a stage adds is what the full path pays for it.

Replay (a capture written by the recorder's own write path, bench_replay's):
  read       Capture.read windows in idx order (Parquet, sort, merge)
  to Python  the four columns the engine takes, as Python values
  decode     the engine's hot-path decode alone (msgspec Structs)
  engine     Engine.frame_received: sequence, books (no consumer)
  deliver    three consumers attached: a Frame per message into their queues
  consume    ReplaySession end to end: pumps, `async for` in three tasks

Capture (no socket: the receive loop's work after `recv()` returns):
  stamp      both clocks and the traffic counters
  journal    JournalSink.frame_in: decode, routing columns, JournalWriter.append
  engine     Engine.frame_received with the sink's decode, books maintained
The socket's own cost is bench_record's ceiling (a bare recv loop), reported there.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import Metric, emit  # noqa: E402
from mix import realistic_frames  # noqa: E402

T0 = 1_795_244_476_000_000_000
COLUMNS = ("idx", "conn", "recv_ns", "mono_ns", "dir", "raw")
CHANNELS = ("orderbook_delta", "ticker", "trade")


def best_us(fn: Callable[[], int], rounds: int = 3) -> float:
    """Microseconds per frame of the fastest of `rounds` runs of fn (which returns frames)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        n = fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


# ------------------------------------------------------------------ replay


def replay_stages(root: Path) -> list[tuple[str, float]]:
    from replay.reading.capture import Capture
    from replay.reading.session import ReplaySession
    from stream import Delivery, DeliveryQueue, Engine, Overflow
    from stream.decode import decode_frame

    def read() -> int:
        n = 0
        for window in Capture(root).read(CHANNELS, columns=COLUMNS):
            n += window.table.num_rows
        return n

    def to_python() -> int:
        n = 0
        for window in Capture(root).read(CHANNELS, columns=COLUMNS):
            t = window.table
            for name in ("conn", "recv_ns", "mono_ns", "raw"):
                t.column(name).to_pylist()
            n += t.num_rows
        return n

    def frames() -> list[bytes]:
        out: list[bytes] = []
        for window in Capture(root).read(CHANNELS, columns=COLUMNS):
            out += window.table.column("raw").to_pylist()
        return out

    raws = frames()

    def decode() -> int:
        for raw in raws:
            try:
                decode_frame(raw)
            except Exception:
                pass
        return len(raws)

    def engine(consumers: bool) -> Callable[[], int]:
        def run() -> int:
            e = Engine()
            queues = []
            if consumers:
                for channel in CHANNELS:
                    queue = DeliveryQueue(1 << 30, Overflow.BLOCK)
                    queues.append(queue)
                    e.add_consumer(channel, owns_wire=False, queue=queue, delivery=Delivery.FRAME)
            e.connection_attempt(T0, 0)
            e.connection_opened(1, T0, 0)
            mix = realistic_frames(1)
            for raw in mix.subscribes:
                e.command_sent(raw, T0, 0, 1)
            receive = e.frame_received
            for i, raw in enumerate(raws):
                receive(raw, T0 + i, i, 1)
                if not i & 1023:
                    for queue in queues:
                        queue.drain(len(queue))
            return len(raws)

        return run

    async def session() -> int:
        n = 0

        async def consume(sub: Any) -> None:
            nonlocal n
            async for _ in sub:
                n += 1

        async with ReplaySession(root) as s:
            subs = [await s.subscribe(c, raw=True) for c in CHANNELS]
            await asyncio.gather(*(consume(sub) for sub in subs))
        return n

    cumulative = [
        ("read: Parquet, sort, merge", best_us(read)),
        ("to Python: 4 columns", best_us(to_python)),
        ("decode: msgspec Structs", best_us(decode)),
        ("engine: sequence, books", best_us(engine(False))),
        ("deliver: Frame into 3 queues", best_us(engine(True))),
        ("consume: session, pumps, async for", best_us(lambda: asyncio.run(session()))),
    ]
    # Reading and the engine are measured apart; the engine stages build on decode and
    # the session stage contains everything.
    read_us, python_us, decode_us, engine_us, deliver_us, total_us = (v for _, v in cumulative)
    return [
        ("read: Parquet, sort, merge", read_us),
        ("to Python: 4 columns", python_us - read_us),
        ("decode: msgspec Structs", decode_us),
        ("engine: sequence, books", engine_us - decode_us),
        ("deliver: Frame into 3 queues", deliver_us - engine_us),
        ("feed loop, pumps, async for", total_us - python_us - deliver_us),
        ("total: ReplaySession", total_us),
    ]


# ------------------------------------------------------------------ capture


def capture_stages(n: int) -> list[tuple[str, float]]:
    from recorder.link.stats import LiveStats
    from recorder.storage.journal import JournalWriter
    from recorder.storage.journal_sink import JournalSink
    from stream import Engine

    mix = realistic_frames(n)
    raws = mix.frames

    def run(journal: bool, engine: bool) -> int:
        with JournalWriter(Path(tempfile.mkdtemp()), "20261121T080000Z-0000beef") as writer:
            sink = JournalSink(writer)
            e = Engine()
            e.connection_attempt(T0, 0)
            e.connection_opened(1, T0, 0)
            for raw in mix.subscribes:
                e.command_sent(raw, T0, 0, 1)
                sink.command_out(1, T0, 0, raw)
            for raw in mix.acks:
                e.frame_received(raw, T0, 0, 1)
                sink.frame_in(1, T0, 0, raw)
            stats = LiveStats(started_mono_ns=0)
            time_ns, mono = time.time_ns, time.monotonic_ns
            feed = e.frame_received
            for raw in raws:
                recv_ns = time_ns()
                mono_ns = mono()
                stats.messages_received += 1
                stats.bytes_received += len(raw)
                stats.last_message_ns = recv_ns
                decoded = sink.frame_in(1, recv_ns, mono_ns, raw) if journal else None
                if engine:
                    feed(raw, recv_ns, mono_ns, 1, decoded)
            return len(raws)

    stamp = best_us(lambda: run(False, False))
    journal = best_us(lambda: run(True, False))
    both = best_us(lambda: run(True, True))
    return [
        ("stamp: clocks, counters", stamp),
        ("journal: decode, columns, append", journal - stamp),
        ("engine: sequence, books (decode reused)", both - journal),
        ("total after recv()", both),
    ]


def main() -> None:
    n = 300_000
    if "--frames" in sys.argv:
        n = int(sys.argv[sys.argv.index("--frames") + 1])
    from bench_replay import capture_root

    root = capture_root(n)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    metrics = [
        Metric(f"replay / {name}", value, "us/frame", higher_is_better=False)
        for name, value in replay_stages(root)
    ]
    metrics += [
        Metric(f"capture / {name}", value, "us/frame", higher_is_better=False)
        for name, value in capture_stages(n)
    ]
    emit(metrics, notes=f"{n:,} frames of the realistic mix; a stage's cost is what it adds.")


if __name__ == "__main__":
    main()
