"""The recorder's health: one snapshot a second, as a status file (and as metrics).

This module owns the health snapshot's shape and its JSON status file (replaced
atomically: readers never see half a file). `recorder.service.metrics` serves the same
snapshot to Prometheus. It collects nothing itself: `recorder.service.app` builds the
snapshot from the journal, publisher, sink, session and connection watch.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["ConnectionHealth", "HealthSnapshot", "write_status"]


@dataclass
class ConnectionHealth:
    """One open connection: its number, its role (`active`; `standby` for a replacement not
    yet switched to, `closing` for the one it replaced) and how long it is open."""

    conn: int
    role: str
    age_s: float


@dataclass
class HealthSnapshot:
    """What the recorder reports about itself (units in the names)."""

    run_id: str
    pid: int
    url: str
    state: str
    uptime_s: float
    exchange: str = ""  # prod, demo, sim or url
    version: str = ""
    connections: list[ConnectionHealth] = field(default_factory=list)
    frames_per_channel: dict[str, int] = field(default_factory=dict)
    rate_fps_per_channel: dict[str, float] = field(default_factory=dict)
    last_frame_age_s_per_channel: dict[str, float] = field(default_factory=dict)
    bytes_in: int = 0
    appended_idx: int = -1
    durable_idx: int = -1
    durable_lag_ms: float = 0.0  # receipt to fdatasync, the latest group commit
    last_durable_age_s: float = 0.0  # since the latest group commit (since start before one)
    journal_backlog_bytes: int = 0
    capture_dropped_frames: int = 0
    journal_write_errors: int = 0
    segments_sealed: int = 0
    publish_errors: int = 0
    publish_queued_segments: int = 0
    # What waits in the journal to be published, and how long publishing has failed
    # (0 while it works; since the start of the first failed attempt after a success).
    publish_backlog_segments: int = 0
    publish_backlog_bytes: int = 0
    publish_failing_s: float = 0.0
    publish_failing_since: str | None = None  # UTC, ISO 8601; None while publishing works
    publish_error: str | None = None  # the latest failed attempt's error, while failing
    files_published: int = 0
    rows_published: int = 0
    last_publish_age_s: float | None = None  # None before the first file is published
    connection_attempts: int = 0
    failed_attempts: int = 0
    reconnects: int = 0
    reconnects_by_reason: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    resyncs: int = 0
    rejected_frames: int = 0
    disk_free_bytes: int | None = None  # where the journal is
    last_error: str | None = None


def write_status(path: Path, snapshot: HealthSnapshot) -> None:
    """Replace the status file atomically (write a temporary file, then rename over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(snapshot), out, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
