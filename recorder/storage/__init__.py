"""The capture pipeline: journal, segments, Parquet partitions, publishing, compaction.

Write first, interpret second: `journal` appends each record to a CRC-framed segment
and group-commits it (`_segment` is the byte format, `_segment_files` a segment's
life on disk, `_durable` the fsync discipline); `journal_sink` is the live client's
`Sink` over it; `publisher` (in a thread or `publish_process`) turns sealed
segments into tables (`_table`) and those into Parquet partitions under a `root` (a
local directory or object storage), written by `schemas.parquet` (the capture file
writer, shared with `kalshi-tape merge`); `recovery` finishes what a killed recorder
left; `compaction` merges small files and applies retention. It knows nothing of
sockets.
"""

from schemas.lazy import lazy_exports

_EXPORTS = {
    "JournalWriter": "recorder.storage.journal",
    "JournalStats": "recorder.storage.journal",
    "JournalSink": "recorder.storage.journal_sink",
    "Publisher": "recorder.storage.publisher",
    "PublisherStats": "recorder.storage.publisher",
    "PublisherProcess": "recorder.storage.publish_process",
    "recover": "recorder.storage.recovery",
    "RecoveryReport": "recorder.storage.recovery",
    "compact": "recorder.storage.compaction",
    "apply_retention": "recorder.storage.compaction",
    "CompactionReport": "recorder.storage.compaction",
    "RetentionReport": "recorder.storage.compaction",
    "CaptureRoot": "recorder.storage.root",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
