"""Two hosts' captures of the same markets merged into one capture of two feeds.

`merge_captures(root_a, root_b, to)` writes every record of A as feed 0 and every
record of B as feed 1, B's receive times moved onto A's clock by the offset the trades
both received say (`offset`), and reports what each covered and the gaps neither did
(`coverage`, `report`); `writer` lays the files out as any capture; `cli` is
`kalshi-tape merge`. It reads captures through `replay.reading` only. What it writes
and reports: docs/merge.md sections 1 to 3.
"""

from schemas.lazy import lazy_exports

_EXPORTS = {
    "merge_captures": "replay.merge.api",
    "offset_between": "replay.merge.api",
    "MergeReport": "replay.merge.report",
    "render_text": "replay.merge.report",
    "ClockOffset": "replay.merge.offset",
    "TradeEvidence": "replay.merge.offset",
    "trade_evidence": "replay.merge.offset",
    "trade_receipts": "replay.merge.offset",
    "Connection": "replay.merge.coverage",
    "connections": "replay.merge.coverage",
    "OutputRoot": "replay.merge.writer",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
