"""The recorder process: a live session into the capture pipeline, run for weeks.

`app` (`Recorder`: wires a `recorder.link.LiveSession` to a
`recorder.storage.JournalWriter` and publisher, writes the status file, stops
cleanly), `config` (`RecorderConfig`, `load_config`: the TOML settings; `defaults`, those
`--help` shows), `cli` and `command` (`kalshi-tape record`: its flags, and the run they
describe), `jobs` (compaction and retention on a schedule), `health` and `metrics` (the
status file and the Prometheus endpoint), `conn_watch` (who is connected, and a log line
each), `preflight` (`--check-config`), `progress` (the console line) and `sim` (the
simulated exchange for `--sim`).
"""

from schemas.lazy import lazy_exports

_EXPORTS = {
    "Recorder": "recorder.service.app",
    "Shard": "recorder.service.app",
    "RecorderConfig": "recorder.service.config",
    "load_config": "recorder.service.config",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
