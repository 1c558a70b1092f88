"""What a benchmark script reports, and how it reports it.

A benchmark is a script `bench/bench_<name>.py` that measures one stage and its
hand-written ceiling *in the same process run*, then calls `emit()` with a list of
`Metric`s. `bench/run.py` runs each script several times in fresh processes and
rewrites `bench/RESULTS.md` with medians, min-max and the ratios to the baselines.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["PACE", "Metric", "built", "capture_frames", "complete", "emit", "rate", "timed"]


@dataclass(frozen=True)
class Metric:
    """One measured figure.

    Attributes:
        name: short label, unique within the script.
        value: the figure.
        unit: "frames/s", "ms", "MiB", "B/frame"...
        higher_is_better: how to read it.
        baseline: name of the metric (same script, same run) this one is judged
            against; the runner reports value / baseline for it.
        target: the goal, as text ("≥ 400k", "≤ 100 ms"), shown beside the figure.
    """

    name: str
    value: float
    unit: str
    higher_is_better: bool = True
    baseline: str | None = None
    target: str | None = None


def emit(metrics: list[Metric], notes: str = "") -> None:
    """Print the metrics as one JSON line for the runner (and readably for a human)."""
    if "--json" in sys.argv:
        print(json.dumps({"metrics": [asdict(m) for m in metrics], "notes": notes}))
        return
    for m in metrics:
        extra = f"   (vs {m.baseline})" if m.baseline else ""
        print(f"{m.name:48s} {m.value:14,.1f} {m.unit}{extra}")
    if notes:
        print(notes)


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of fn takes (perf_counter)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rate(count: int, fn: Callable[[], object]) -> float:
    """count / seconds for one call of fn."""
    return count / timed(fn)


def built(root: Path, command: list[str]) -> Path:
    """`root`, built by `command` (which gets the folder to write as its last argument)
    unless a complete build is there: it builds into a scratch folder renamed into place
    when done, so an interrupted build is never taken for a capture (one was: a 1M-frame
    capture cut at 747k frames, which inflated every rate computed from its nominal size)."""
    if root.is_dir():
        return root
    scratch = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    subprocess.run([*command, str(scratch)], check=True)
    scratch.rename(root)
    return root


def capture_frames(root: Path) -> int:
    """Frames a capture holds (records of its data channels, from the Parquet footers):
    what a rate "per capture frame" divides by, whatever the capture was built for."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows
               for path in root.glob("channel=*/date=*/*.parquet")
               if not path.parts[-3].startswith("channel=_"))  # fmt: skip


#: Frames a capture builder appends between waits for the journal to catch up: the
#: journal drops (and counts) what exceeds its memory limit, as a recorder must, and a
#: builder writes far faster than any exchange sends.
PACE = 65_536


def complete(stats: object) -> None:
    """Fail a capture build whose journal dropped frames (its `close()` stats)."""
    dropped = getattr(stats, "frames_dropped", 0)
    if dropped:
        raise SystemExit(f"the journal dropped {dropped:,} frames: the capture is incomplete")
