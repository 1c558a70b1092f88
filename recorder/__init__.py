"""The live edge: the Kalshi WebSocket client and the always-on recorder.

Three sub-packages, each importing only what is below it:

* `recorder.link`: the live client. `LiveSession` (the one Session API over a live
  connection: RSA-PSS auth, reconnects with resubscription, planned disconnects and
  rotations, limits, statistics) and what it is made of: the connection's lifecycle
  as a state table, the link opener, the watchdogs, the `Sink` it writes to.
* `recorder.storage`: the capture pipeline. Every frame, command and event goes to
  a crash-safe journal (`JournalWriter`), sealed segments become Parquet partitions
  (`Publisher`), `recover` finishes what a killed recorder left, `compact` and
  `apply_retention` keep the root tidy.
* `recorder.service`: the process. `Recorder` runs a `LiveSession` into the journal
  with its jobs, health file and metrics; `RecorderConfig`/`load_config` are its
  settings; `kalshi-tape record` is its command line.

The names below load on first use, so `import recorder` costs nothing and a process
that needs only the storage pipeline never imports the WebSocket client.
"""

from schemas.lazy import lazy_exports

_EXPORTS = {
    # the live client
    "LiveSession": "recorder.link.live",
    "PRODUCTION_URL": "recorder.link.live",
    "DEMO_URL": "recorder.link.live",
    "Credentials": "recorder.link.auth",
    "Limits": "recorder.link.limits",
    "resolve_limits": "recorder.link.limits",
    "DisconnectReason": "recorder.link.policies",
    "LiveStats": "recorder.link.stats",
    "Sink": "recorder.link.sink",
    "MemorySink": "recorder.link.sink",
    # the capture pipeline
    "JournalWriter": "recorder.storage.journal",
    "JournalSink": "recorder.storage.journal_sink",
    "Publisher": "recorder.storage.publisher",
    "recover": "recorder.storage.recovery",
    "compact": "recorder.storage.compaction",
    "apply_retention": "recorder.storage.compaction",
    # the process
    "Recorder": "recorder.service.app",
    "Shard": "recorder.service.app",
    "RecorderConfig": "recorder.service.config",
    "load_config": "recorder.service.config",
    # errors
    "RecorderError": "recorder.errors",
    "LiveError": "recorder.errors",
    "ReconnectGaveUp": "recorder.errors",
    "AuthenticationFailed": "recorder.errors",
    "HandshakeRejected": "recorder.errors",
    "PermanentClose": "recorder.errors",
    "JournalError": "recorder.errors",
    "PublishError": "recorder.errors",
    # the sub-packages
    "link": "recorder.link",
    "storage": "recorder.storage",
    "service": "recorder.service",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
