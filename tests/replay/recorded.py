"""Record a scripted live session into a real capture, the way the recorder lays it out.

`Recording` is the `log` of a `tests.stream.harness.ScriptedSource`: it keeps every
frame received, command sent, connection event and checkpoint with the source's
clocks, derives the routing columns with `ColumnDeriver`, and writes Parquet files
in the capture layout: one file per (channel, date) per segment, rows sorted within
each file by (type, market, idx) as the publisher sorts them, so a reader must
restore arrival order from `idx`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from schemas.channels import Channel
from schemas.record import CaptureRecord, ColumnDeriver, Dir

from .capture_factory import write_rows

RUN = "20261121T080000Z-00000001"


@dataclass
class Recording:
    run_id: str = RUN
    records: list[CaptureRecord] = field(default_factory=list)
    segment_starts: list[int] = field(default_factory=lambda: [0])
    _deriver: ColumnDeriver = field(default_factory=ColumnDeriver)

    def __call__(self, dir_: str, conn: int, raw: bytes, recv_ns: int, mono_ns: int) -> None:
        if dir_ == "checkpoint":
            channel, type_, dir_ = Channel.CHECKPOINT, "checkpoint", Dir.EVENT
            sid = seq = market = None
        else:
            d = self._deriver.derive(dir_, raw, conn)
            channel, type_, sid, seq, market = d.channel, d.type, d.sid, d.seq, d.market_ticker
        self.records.append(
            CaptureRecord(
                self.run_id,
                len(self.records) + 1,
                conn,
                recv_ns,
                mono_ns,
                dir_,
                channel,
                type_,
                sid,
                seq,
                market,
                raw,
            )
        )

    def new_segment(self) -> None:
        """Start a new journal segment here (the next records go to new files)."""
        self.segment_starts.append(len(self.records))

    def write(self, root: Path) -> list[Path]:
        bounds = [*self.segment_starts, len(self.records)]
        paths: list[Path] = []
        for seg, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            rows = sorted(self.records[lo:hi], key=lambda r: (r.type, r.market_ticker or "", r.idx))
            paths += write_rows(root, rows, self.run_id, seg)
        return paths
