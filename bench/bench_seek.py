"""What a seek costs against a pass, on one feed and on two (bench_replay's captures).

    python bench/bench_seek.py

ReplaySession with three raw consumers (orderbook_delta, ticker, trade), every frame
read: a pass from the capture's start, and a seek to its middle (`start=`). The
captures hold no checkpoint, so the seek fast-forwards the whole first half: the worst
case (a recorder's capture has one every 60 s, and a seek fast-forwards at most that).
With two feeds the fast-forward goes through arbitration as live (every trade and
ticker copy counted, only not queued), which is what a seek's start costs beyond
one feed. Reported: seconds, each seek against the pass of its capture in the same
run.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_replay import capture_root  # noqa: E402
from common import Metric, emit  # noqa: E402

_CHANNELS = ("orderbook_delta", "ticker", "trade")


async def _consume(root: Path, start: int | None) -> int:
    from replay import ReplaySession

    frames = 0
    async with ReplaySession(root, start=start) as session:
        subs = [await session.subscribe(c, raw=True, maxsize=1 << 16) for c in _CHANNELS]

        async def drain(sub: object) -> None:
            nonlocal frames
            async for _ in sub:  # type: ignore[attr-defined]
                frames += 1

        await asyncio.gather(*(drain(s) for s in subs))
    return frames


def _seconds(root: Path, start: int | None) -> float:
    gc.collect()
    t0 = time.perf_counter()
    asyncio.run(_consume(root, start))
    return time.perf_counter() - t0


def main() -> None:
    from replay.reading.capture import Capture

    n = int(sys.argv[sys.argv.index("--frames") + 1]) if "--frames" in sys.argv else 1_000_000
    metrics = []
    for feeds, label in ((1, "one feed"), (2, "two feeds")):
        root = capture_root(n, feeds)
        lo, hi = Capture(root).time_range()
        middle = lo + (hi - lo) // 2
        _seconds(root, middle)  # imports and the page cache warm
        whole = _seconds(root, None)
        seek = _seconds(root, middle)
        metrics += [
            Metric(f"{label}: a pass", whole, "s", higher_is_better=False),
            Metric(f"{label}: a seek to the middle", seek, "s", higher_is_better=False,
                   baseline=f"{label}: a pass"),
        ]  # fmt: skip
    emit(metrics, notes=f"{n:,}-frame capture (received on each feed), no checkpoint: the "
         "seek fast-forwards the first half; three raw consumers read every frame")  # fmt: skip


if __name__ == "__main__":
    main()
