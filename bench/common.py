"""What a benchmark script reports, and how it reports it.

A benchmark is a script `bench/bench_<name>.py` that measures one stage and its
hand-written ceiling *in the same process run*, then calls `emit()` with a list of
`Metric`s. `bench/run.py` runs each script several times in fresh processes and
rewrites `bench/RESULTS.md` with medians, min-max and the ratios to the baselines.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

__all__ = ["Metric", "emit", "rate", "timed"]


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
