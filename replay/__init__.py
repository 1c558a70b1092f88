"""The historical edge: captures read back, replayed, queried, verified and served.

Sub-packages, each importing only capture reading below it:

* `replay.reading`: a capture root (local or object storage) read back.
  `ReplaySession` re-feeds it through the same engine as the live client behind
  the same Session API; `iter_frames`/`iter_batches` read records in bulk;
  `Capture` and `list_capture_files` index what a root holds.
* `replay.sql`: DuckDB SQL over a capture (`connect`, `run_query`, the views
  `VIEW_NAMES`), `verify_capture` and `summarize_capture`.
* `replay.backtest`: a strategy run over shards of time on Dask (`backtest.run`).
* `replay.server`: a Kalshi-protocol WebSocket server on loopback that serves the
  simulated market or a capture (`SimServer`, `ServerConfig`, `CaptureTape`), with
  fault injection.
* `replay.merge`: two hosts' captures of the same markets joined into one capture of
  two feeds, with a coverage report (`merge_captures`).

The names below load on first use: `import replay` loads neither DuckDB nor Dask.
"""

from schemas.lazy import lazy_exports

_EXPORTS = {
    # reading
    "ReplaySession": "replay.reading.session",
    "to_ns": "replay.reading.session",
    "Capture": "replay.reading.capture",
    "iter_frames": "replay.reading.bulk",
    "iter_batches": "replay.reading.bulk",
    "CapturedFrame": "replay.reading.bulk",
    "list_capture_files": "replay.reading.layout",
    # SQL, verify, inspect
    "connect": "replay.sql.connection",
    "run_query": "replay.sql.connection",
    "VIEW_NAMES": "replay.sql.connection",
    "verify_capture": "replay.sql.verify",
    "VerifyReport": "replay.sql.verify",
    "summarize_capture": "replay.sql.summary",
    # the server
    "SimServer": "replay.server.app",
    "ServerConfig": "replay.server.config",
    "CaptureTape": "replay.server.capture_tape",
    # merging two hosts' captures
    "merge_captures": "replay.merge.api",
    # errors
    "ReplayError": "replay.errors",
    "NotInCapture": "replay.errors",
    # the sub-packages
    "reading": "replay.reading",
    "sql": "replay.sql",
    "backtest": "replay.backtest",
    "server": "replay.server",
    "merge": "replay.merge",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
