"""The recorder's health: one snapshot a second, as a status file and as Prometheus metrics.

This module owns the health snapshot's shape, its JSON status file (replaced
atomically: readers never see half a file) and a small Prometheus text-format
endpoint on loopback (no client library needed for a handful of gauges). It
collects nothing itself: `recorder.app` builds the snapshot from the journal,
publisher, sink and session.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["HealthSnapshot", "MetricsServer", "render_prometheus", "write_status"]


@dataclass
class HealthSnapshot:
    """What the recorder reports about itself (units in the names)."""

    run_id: str
    pid: int
    url: str
    state: str
    uptime_s: float
    frames_per_channel: dict[str, int] = field(default_factory=dict)
    rate_fps_per_channel: dict[str, float] = field(default_factory=dict)
    last_frame_age_s_per_channel: dict[str, float] = field(default_factory=dict)
    bytes_in: int = 0
    appended_idx: int = -1
    durable_idx: int = -1
    durable_lag_ms: float = 0.0  # receipt to fdatasync, the latest group commit
    journal_backlog_bytes: int = 0
    capture_dropped_frames: int = 0
    journal_write_errors: int = 0
    segments_sealed: int = 0
    files_published: int = 0
    rows_published: int = 0
    last_publish_age_s: float | None = None
    reconnects: int = 0
    gaps: int = 0
    resyncs: int = 0
    rejected_frames: int = 0
    disk_free_bytes: int | None = None
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


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def render_prometheus(s: HealthSnapshot) -> str:
    """The snapshot in the Prometheus text exposition format."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP kalshi_tape_{name} {help_}")
        lines.append(f"# TYPE kalshi_tape_{name} {kind}")
        for labels, value in samples:
            lines.append(f"kalshi_tape_{name}{labels} {value:g}")

    def per_channel(values: dict[str, float] | dict[str, int]) -> list[tuple[str, float]]:
        return [(f'{{channel="{_label(c)}"}}', float(v)) for c, v in sorted(values.items())]

    metric("frames_total", "counter", "Records journaled, per channel.",
           per_channel(s.frames_per_channel))  # fmt: skip
    metric("frames_per_second", "gauge", "Receive rate per channel over the last seconds.",
           per_channel(s.rate_fps_per_channel))  # fmt: skip
    metric("last_frame_age_seconds", "gauge", "Time since the last frame, per channel.",
           per_channel(s.last_frame_age_s_per_channel))  # fmt: skip
    metric("bytes_received_total", "counter", "Frame bytes received.", [("", s.bytes_in)])
    metric("durable_lag_milliseconds", "gauge", "Receipt to fdatasync of the last commit.",
           [("", s.durable_lag_ms)])  # fmt: skip
    metric("journal_backlog_bytes", "gauge", "Bytes accepted but not yet durable.",
           [("", s.journal_backlog_bytes)])  # fmt: skip
    metric("capture_dropped_frames_total", "counter", "Frames lost to a full disk (recorded "
           "as capture_gap events).", [("", s.capture_dropped_frames)])  # fmt: skip
    metric("files_published_total", "counter", "Parquet files published.",
           [("", s.files_published)])  # fmt: skip
    metric("reconnects_total", "counter", "Reconnections.", [("", s.reconnects)])
    metric("gaps_total", "counter", "Sequence gaps detected.", [("", s.gaps)])
    if s.disk_free_bytes is not None:
        metric("disk_free_bytes", "gauge", "Free space where the journal lives.",
               [("", s.disk_free_bytes)])  # fmt: skip
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves the latest snapshot at http://127.0.0.1:<port>/metrics (loopback only)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.snapshot: HealthSnapshot | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            path = request.split(b" ")[1] if request.count(b" ") >= 2 else b""
            if path != b"/metrics" or self.snapshot is None:
                body, status = b"not found\n", b"404 Not Found"
            else:
                body, status = render_prometheus(self.snapshot).encode(), b"200 OK"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; version=0.0.4\r\n"
                b"Content-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
