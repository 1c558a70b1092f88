"""Memory of publishing one default (64 MiB) journal segment, in a fresh process.

    python bench/bench_publish.py [--segment-mb 64] [--json]

A recorder runs for weeks and its publisher child publishes a segment every few
minutes, so what matters is the peak while it publishes and what it keeps afterwards.
The segment holds the realistic Kalshi mix of `bench_storage.py`. The publish runs
three times in a child process that has imported everything first; the figures are
the child's RSS above that start (VmHWM for the peak), and the baseline is the
segment's own size on disk.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_storage import kalshi_frames
from common import Metric, emit

from recorder.storage.journal import JournalWriter
from schemas.record import ColumnDeriver, new_run_id

_MIB = 1 << 20

# Runs in the child: import, then publish copies of the segment, reading /proc as it goes.
_CHILD = """
import json, shutil, sys, time
from pathlib import Path
from recorder.storage.publisher import Publisher
from schemas.lean import keep_pandas_out

keep_pandas_out()  # as the recorder's publisher child does

def rss():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}

src, work, root = (Path(p) for p in sys.argv[1:4])
publisher = Publisher(work, root)
start = rss()["VmRSS"]
times, after = [], []
for _ in range(3):
    shutil.copy(src, work / src.name)
    t0 = time.perf_counter()
    publisher.publish(work / src.name)
    times.append(time.perf_counter() - t0)
    after.append(rss()["VmRSS"])
print(json.dumps({"start": start, "peak": rss()["VmHWM"], "after": max(after),
                  "seconds": sorted(times)[1]}))
"""


def write_segment(journal: Path, segment_mb: int) -> Path:
    """One sealed segment of about `segment_mb` MiB of the realistic mix."""
    frames = kalshi_frames(segment_mb * _MIB // 430)
    deriver = ColumnDeriver()
    run_id = new_run_id(frames[0][0], b"\x00\x00\x00\x02")
    with JournalWriter(journal, run_id, segment_max_bytes=1 << 30,
                       memory_limit_bytes=2 << 30) as writer:  # fmt: skip
        for recv, raw in frames:
            d = deriver.derive("in", raw, 1)
            writer.append(1, recv, time.monotonic_ns(), "in", d.channel, d.type, d.sid, d.seq,
                          d.market_ticker, raw)  # fmt: skip
    (segment,) = journal.glob("*.seg")
    return segment


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segment-mb", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        tmp_path = Path(tmp)
        segment = write_segment(tmp_path / "journal", args.segment_mb)
        kept = tmp_path / segment.name
        shutil.move(segment, kept)
        size = kept.stat().st_size
        work = tmp_path / "work"
        work.mkdir()
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(kept), str(work), str(tmp_path / "root")],
            check=True, capture_output=True, text=True,
            cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
    got = json.loads(out.stdout)
    emit(
        [
            Metric("segment on disk", size / _MIB, "MiB", higher_is_better=False),
            Metric(
                "peak RSS while publishing, above the start",
                (got["peak"] - got["start"]) / _MIB,
                "MiB",
                higher_is_better=False,
                baseline="segment on disk",
            ),
            Metric(
                "RSS kept after publishing, above the start",
                (got["after"] - got["start"]) / _MIB,
                "MiB",
                higher_is_better=False,
                baseline="segment on disk",
            ),
            Metric("publish time", got["seconds"] * 1000, "ms", higher_is_better=False),
        ],
        notes=f"publisher process RSS at start {got['start'] / _MIB:.0f} MiB (imports).",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
