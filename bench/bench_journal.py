"""Journal throughput and receipt-to-durable latency, against a plain append loop.

    python bench/bench_journal.py [--frames N] [--seconds S] [--json]

Throughput: the same realistic frames (bench_storage.kalshi_frames, ~335 B) appended
as fast as the caller can, until the last one is durable, through

* the ceiling (docs/performance.md section 2, journal append): a plain length-prefixed
  buffer written with `os.write` and `os.fdatasync` every 10 ms, in the same loop;
* `JournalWriter.append` (record framing, CRC, idx, lock) with its group-commit thread.

Latency: frames appended at a steady 5k frames/s in 1 ms bursts, as a receive loop
would; each frame's latency runs from its `mono_ns` stamp to the end of the fdatasync
that made it durable (the `on_durable` callback). Measured alone, and again with the
publisher turning 1 MiB segments into Parquet on its thread at the same time.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_storage import kalshi_frames
from common import Metric, emit

from recorder.storage.journal import JournalWriter
from recorder.storage.publisher import Publisher
from schemas.record import ColumnDeriver, Derived, new_run_id

Row = tuple[int, Derived, bytes]
_LEN = struct.Struct("<I")


def ceiling(path: Path, rows: list[Row]) -> float:
    """Plain length-prefixed appends, fdatasync every 10 ms: frames/s."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    pack, monotonic = _LEN.pack, time.monotonic
    buf = bytearray()
    t0 = last = monotonic()
    for i, (_, _, raw) in enumerate(rows):
        buf += pack(len(raw))
        buf += raw
        if not i & 63 and monotonic() - last >= 0.01:
            os.write(fd, buf)
            os.fdatasync(fd)
            buf = bytearray()
            last = monotonic()
    os.write(fd, buf)
    os.fdatasync(fd)
    elapsed = monotonic() - t0
    os.close(fd)
    return len(rows) / elapsed


def journal_throughput(journal: Path, rows: list[Row]) -> tuple[float, float]:
    """(frames/s until the last is durable, caller's µs per append)."""
    run_id = new_run_id(time.time_ns(), os.urandom(4))
    with JournalWriter(journal, run_id, memory_limit_bytes=1 << 30) as writer:
        append = writer.append
        t0 = time.monotonic()
        for i, (recv, d, raw) in enumerate(rows):
            append(1, recv, i, "in", d.channel, d.type, d.sid, d.seq, d.market_ticker, raw)
        appended = time.monotonic()
        writer.wait_durable(len(rows) - 1)
        done = time.monotonic()
    return len(rows) / (done - t0), (appended - t0) / len(rows) * 1e6


def paced_latencies(
    journal: Path, rows: list[Row], seconds: float, rate: float, publish_root: Path | None
) -> list[float]:
    """Receipt-to-durable latency of every frame (ms) at a steady rate."""
    n = min(len(rows), int(seconds * rate))
    stamps = [0] * n
    durable: list[tuple[int, int]] = []  # (durable_idx, monotonic_ns at notification)
    lock = threading.Lock()

    def on_durable(idx: int, _latency_ns: int) -> None:
        now = time.monotonic_ns()
        with lock:
            durable.append((idx, now))

    publisher = None
    segment_bytes = 64 << 20
    if publish_root is not None:
        publisher = Publisher(journal, publish_root)
        publisher.start()
        segment_bytes = 1 << 20
    run_id = new_run_id(time.time_ns(), os.urandom(4))
    writer = JournalWriter(
        journal,
        run_id,
        segment_max_bytes=segment_bytes,
        on_durable=on_durable,
        on_sealed=publisher.submit if publisher else None,
    )
    period_ns = int(1e9 / rate)
    start = time.monotonic_ns()
    i = 0
    while i < n:
        due = min(n, (time.monotonic_ns() - start) // period_ns + 1)
        while i < due:
            recv, d, raw = rows[i]
            mono = time.monotonic_ns()
            stamps[i] = mono
            writer.append(
                1, recv, mono, "in", d.channel, d.type, d.sid, d.seq, d.market_ticker, raw
            )
            i += 1
        time.sleep(0.001)
    writer.close()
    if publisher is not None:
        publisher.close()
    marks = [idx for idx, _ in durable]
    latencies = []
    for idx in range(n):
        k = bisect_left(marks, idx)
        if k < len(durable):
            latencies.append((durable[k][1] - stamps[idx]) / 1e6)
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300_000)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    deriver = ColumnDeriver()
    rows = [(recv, deriver.derive("in", raw, 1), raw) for recv, raw in kalshi_frames(args.frames)]
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        tmp_path = Path(tmp)
        ceiling_rate = ceiling(tmp_path / "plain.log", rows)
        rate, append_us = journal_throughput(tmp_path / "j1", rows)
        alone = paced_latencies(tmp_path / "j2", rows, args.seconds, 5000, None)
        busy = paced_latencies(tmp_path / "j3", rows, args.seconds, 5000, tmp_path / "root")
    emit(
        [
            Metric("plain append + fdatasync every 10 ms (ceiling)", ceiling_rate, "frames/s"),
            Metric(
                "journal append + group commit",
                rate,
                "frames/s",
                baseline="plain append + fdatasync every 10 ms (ceiling)",
            ),
            Metric("append() in the caller", append_us, "us/frame", higher_is_better=False),
            Metric("receipt-to-durable p50 at 5k/s", pct(alone, 0.5), "ms", False),
            Metric("receipt-to-durable p99 at 5k/s", pct(alone, 0.99), "ms", False, None, "<= 100"),
            Metric("receipt-to-durable max at 5k/s", max(alone), "ms", False),
            Metric(
                "receipt-to-durable p99 at 5k/s, publishing",
                pct(busy, 0.99),
                "ms",
                False,
                None,
                "<= 100",
            ),
            Metric("receipt-to-durable max at 5k/s, publishing", max(busy), "ms", False),
        ],
        notes=f"{len(rows)} frames of ~335 B; commit interval 50 ms; {args.seconds:g} s paced.",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
