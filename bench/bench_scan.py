"""The derive's frame scanner on the book channel, and what reading frames in place costs.

On the book channel of bench_replay's 1M-frame capture (500 markets; its row groups as
the recorder wrote them), in one process:

- the scanner (`replay.datasets.scan.scan`) with its general walk alone, and with the
  path for deltas in the exchange's shape (`scan.deltas`) in front of it;
- an experiment for the reading layer: the derive takes each row group's frames into
  arrival order (a copy of every frame) before it scans them. The same per-frame pass
  (one branch per byte: a count of quote characters, the floor of any scan) run
  sequentially over the taken copy, against the same pass reading each frame where the
  row group holds it, through the permutation, and doing so while it prefetches the
  frames a few rows ahead (an LLVM prefetch intrinsic).

    python bench/bench_scan.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import Metric, emit  # noqa: E402

AHEAD = 8  # rows prefetched ahead


def _prefetch() -> Any:
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx: Any, array: Any, at: Any) -> Any:
        """Ask the CPU to bring the cache line of array[at] in (llvm.prefetch: read,
        high locality, data)."""

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            data = context.make_array(array)(context, builder, value=args[0]).data
            at_ = context.cast(builder, args[1], signature.args[1], types.intp)
            where = builder.gep(data, [at_])
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [where.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            builder.call(fn, [where, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return types.void(array, at), codegen

    return prefetch


def _passes() -> tuple[Any, Any]:
    from numba import njit

    from replay.datasets.jit import borrow

    prefetch = _prefetch()

    @njit(cache=False)
    def sequential(data, offsets):  # type: ignore[no-untyped-def]
        d = borrow(data)
        quotes = 0
        for r in range(offsets.shape[0] - 1):
            for i in range(offsets[r], offsets[r + 1]):
                if d[i] == 34:
                    quotes += 1
        return quotes

    @njit(cache=False)
    def permuted(data, offsets, perm, ahead):  # type: ignore[no-untyped-def]
        d = borrow(data)
        quotes = 0
        n = perm.shape[0]
        for r in range(n):
            if ahead and r + ahead < n:
                a = offsets[perm[r + ahead]]
                for line in range(0, offsets[perm[r + ahead] + 1] - a, 64):
                    prefetch(d, a + line)
            p = perm[r]
            for i in range(offsets[p], offsets[p + 1]):
                if d[i] == 34:
                    quotes += 1
        return quotes

    return sequential, permuted


def _median_s(fn: Any, runs: int = 5) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    import bench_replay
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from replay.datasets import scan
    from replay.datasets.arrays import binary_buffers
    from replay.datasets.decode import Scratch
    from replay.datasets.names import NameTable

    root = bench_replay.capture_root(1_000_000)
    groups = []
    for path in sorted(root.glob("channel=orderbook_delta/date=*/*.parquet")):
        file = pq.ParquetFile(path)
        for g in range(file.num_row_groups):
            table = file.read_row_group(g, columns=["idx", "raw"])
            raw = table.column("raw").combine_chunks()
            order = pc.sort_indices(table.column("idx"))
            groups.append((raw, order, raw.take(order)))
    frames = sum(len(raw) for raw, _, _ in groups)

    table, scratch = NameTable(), Scratch()
    order_memory = scan.orders()

    def scanner(fast: bool) -> None:
        for _, _, taken in groups:
            offsets, data = binary_buffers(taken)
            out, trade, lv, lv_p, lv_s = scratch.arrays(len(taken), len(data))
            mcode, mhash = scratch.codes(len(taken))
            scan.scan(data, offsets, *out, scratch.stack, trade, lv, lv_p, lv_s, mcode, mhash,
                      table.slots, table.names, table.starts, order_memory, fast)  # fmt: skip

    sequential, permuted = _passes()

    def take_then_pass() -> None:
        for raw, order, _ in groups:
            offsets, data = binary_buffers(raw.take(order))
            sequential(data, offsets)

    def in_place(ahead: int) -> None:
        for raw, order, _ in groups:
            offsets, data = binary_buffers(raw)
            permuted(data, offsets, np.asarray(order, np.int64), ahead)

    general = frames / _median_s(lambda: scanner(False))
    deltas = frames / _median_s(lambda: scanner(True))
    taken = frames / _median_s(take_then_pass)
    placed = frames / _median_s(lambda: in_place(0))
    fetched = frames / _median_s(lambda: in_place(AHEAD))
    copied = "take into arrival order, then a pass"
    emit(
        [
            Metric("scan, general walk", general, "frames/s"),
            Metric("scan, deltas path first", deltas, "frames/s", baseline="scan, general walk"),
            Metric(copied, taken, "frames/s"),
            Metric("a pass through the permutation", placed, "frames/s", baseline=copied),
            Metric(f"prefetching {AHEAD} rows ahead", fetched, "frames/s", baseline=copied),
        ],
        notes=f"{frames:,} book-channel frames of the 1M-frame capture, in its row groups",
    )


if __name__ == "__main__":
    main()
