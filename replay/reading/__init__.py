"""A capture read back: the files of a root, its records in bulk, and the replay session.

`layout` lists a root's files (local or object storage) and checks their names;
`capture` indexes them (runs, channels, row groups, merge keys) from the footers;
`bulk` reads records in replay order without the engine (`iter_frames`,
`iter_batches`); `session` (`ReplaySession`) re-feeds them through the live
client's engine behind the same Session API, with seek and `pacing`; `cli` is
`kalshi-tape replay`. It knows nothing of SQL, backtests or the server.
"""

from schemas.lazy import lazy_exports

_EXPORTS = {
    "ReplaySession": "replay.reading.session",
    "to_ns": "replay.reading.session",
    "Capture": "replay.reading.capture",
    "merge_key": "replay.reading.capture",
    "iter_frames": "replay.reading.bulk",
    "iter_batches": "replay.reading.bulk",
    "CapturedFrame": "replay.reading.bulk",
    "list_capture_files": "replay.reading.layout",
    "CaptureListing": "replay.reading.layout",
    "Pacer": "replay.reading.pacing",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
