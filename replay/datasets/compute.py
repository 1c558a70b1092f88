"""One range of a capture derived into datasets: the seek, the passes, the time filter.

`run_range` derives `[start_ns, end_ns)` (on the receive clock) of a capture:
with a start, each run alive then is restored from its latest checkpoint before
it (the replay's own seek, `restore_checkpoint`, so books at the start are what
they were live), and read from there; rows before the start are computed (the books and quotes
need them) but not kept. book_changes and trades come from
`replay.datasets.driver`, quotes and depth from `replay.datasets.books`, bars
from the sink at the end. This is the unit of work of a day shard.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pyarrow as pa

from replay.datasets import kernel, scan
from replay.datasets.arrays import within
from replay.datasets.books import BookReplay
from replay.datasets.decode import connect
from replay.datasets.driver import derive_batches
from replay.datasets.jit import is_cached
from replay.datasets.rows import Build
from replay.datasets.spec import Spec
from replay.reading.capture import Capture, Resume
from replay.reading.session import restore_checkpoint
from stream.engine import Engine

__all__ = ["run_range"]

log = logging.getLogger(__name__)


def kernels_cached() -> bool:
    """Whether the kernels a derive spends most of its time in are in numba's cache (the
    scanner and the book kernel: 24 of the 28 s a first derive compiles)."""
    return is_cached(scan.scan) and is_cached(kernel.run)


def _seek(capture: Capture, start_ns: int) -> tuple[list[str], Any]:
    """Runs alive at the start, and the `prepare` that restores their checkpoints."""
    runs = [r for r in sorted(capture.runs) if capture.last_key(r) >= start_ns]

    def prepare(engine: Engine, groups: dict[str, int], offsets: dict[str, int]
                ) -> dict[str, Resume]:  # fmt: skip
        return {run: restore_checkpoint(capture, engine, run, groups[run], start_ns, offsets[run])
                for run in runs}  # fmt: skip

    return runs, prepare


def _keep(batch: pa.RecordBatch, column: str, start_ns: int | None,
          end_ns: int | None) -> pa.RecordBatch:  # fmt: skip
    if start_ns is None and end_ns is None:
        return batch
    keep = within(batch.column(column), start_ns, end_ns)
    return batch if keep is None else batch.filter(keep)


def _bar_reach(specs: list[Spec], start_ns: int | None, end_ns: int | None
               ) -> tuple[int | None, int | None]:  # fmt: skip
    """The range to read so that every bar starting in [start_ns, end_ns) is whole: from
    the start of the bar holding `start_ns` to the end of the one holding `end_ns - 1`."""
    bars = [s.interval_ns for s in specs if s.kind == "bars"]
    if not bars:
        return start_ns, end_ns
    lo = None if start_ns is None else min(start_ns // i * i for i in bars)
    hi = None if end_ns is None else max(-(-end_ns // i) * i for i in bars)
    return lo, hi


def run_range(
    capture: Capture,
    specs: list[Spec],
    sink: Any,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    markets: frozenset[str] | None = None,
) -> Any:
    """Derive `specs` over `[start_ns, end_ns)` into `sink`; returns `sink.finish(...)`.

    Rows are kept by their time (`recv_ns`; depth and bars: `ts_ns`); a bar starting in
    the range is whole, its trades and closing quote read past the range's ends if they
    must be (`_bar_reach`)."""
    if not kernels_cached():  # a first run: half a minute without a word otherwise
        log.info("compiling the datasets' kernels for this environment (numba; once, "
                 "about half a minute)")  # fmt: skip
    kinds = {s.kind for s in specs}
    depth = [(s, BookReplay(False, s.levels, s.interval_ns, from_ns=start_ns))
             for s in specs if s.kind == "depth"]  # fmt: skip
    read_lo, read_hi = _bar_reach(specs, start_ns, end_ns)
    runs, prepare = (None, None) if read_lo is None else _seek(capture, read_lo)
    # Each channel is read only where a dataset needs it, and each in a pass of its own:
    # trades need no book and books no trades (neither channel's rules depend on the
    # other's frames, as a ReplaySession reading one of them shows; the equality tests
    # compare each dataset derived alone with a session reading both). Bars need both:
    # trades, and the quotes at their close. Two passes, not one reading both channels
    # merged in capture order: the merge copied every frame a second time to interleave
    # them, and held both channels' row groups at once.
    bars = "bars" in kinds
    book_pass = Build(
        changes=bool(kinds & {"book_changes", "depth"}),
        quotes=bool(kinds & {"quotes", "bars"}),
        # depth alone: from the kernel's rows, no book_changes batches for it
        change_rows="depth" in kinds and "book_changes" not in kinds,
    )
    trade_pass = Build(changes=False, quotes=False, trades="trades" in kinds)
    book_kinds, trade_kinds = {"book_changes", "quotes", "depth", "bars"}, {"trades", "bars"}
    passes = [derive_batches(capture, markets=markets, runs=runs, prepare=prepare,
                             end_ns=read_hi, channels=(channel,), build=build)
              for channel, build, wanted in (("orderbook_delta", book_pass, kinds & book_kinds),
                                             ("trade", trade_pass, kinds & trade_kinds))
              if wanted]  # fmt: skip
    for name, batch in itertools.chain(*passes):
        if name == "book_rows":
            _depth_of(batch, depth, sink, start_ns, end_ns)
            continue
        if name != "book_changes":  # trades, and the quotes the kernel keeps
            if bars:  # every quote read may close a bar (the last before its end)
                sink.bar_input(name, batch if name == "quotes" else
                               _keep(batch, "recv_ns", read_lo, read_hi))  # fmt: skip
            sink.add(name, _keep(batch, "recv_ns", start_ns, end_ns))
            continue
        sink.add("book_changes", _keep(batch, "recv_ns", start_ns, end_ns))
        _depth_of(batch, depth, sink, start_ns, end_ns)
    return sink.finish(connect, start_ns, end_ns)  # DuckDB only if there are bars to make


def _depth_of(changes: Any, depth: list[tuple[Spec, BookReplay]], sink: Any,
              start_ns: int | None, end_ns: int | None) -> None:  # fmt: skip
    """Each depth dataset's rows after `changes` (a book_changes batch or the kernel's
    `ChangeRows`), those in the range to `sink`."""
    for spec, replay in depth:
        for d in replay.feed(changes)[1]:
            sink.add(spec.folder, _keep(d, "ts_ns", start_ns, end_ns))
