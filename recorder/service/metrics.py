"""The recorder's Prometheus metrics: the health snapshot, served by prometheus-client.

This module owns the metric names and the endpoint. A collector turns the latest
`recorder.service.health.HealthSnapshot` into metric families at scrape time (so a scrape
always sees one consistent snapshot), beside prometheus-client's own process and
platform collectors and a build-info metric. The endpoint listens on loopback
only; a port that cannot be bound is `schemas.errors.PortInUse`, raised at start.

`STATUS_METRICS` maps each numeric or state field of the status file to the
metric that carries it; a test holds the two together.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from recorder.link.policies import DisconnectReason
from recorder.service.health import HealthSnapshot
from recorder.service.preflight import port_error
from stream.state import ConnectionState

__all__ = ["PREFIX", "STATUS_METRICS", "MetricsServer", "metric_families"]

PREFIX: Final = "kalshi_tape"

#: status.json field -> the metric that carries it (without the `kalshi_tape_` prefix;
#: counters end in `_total` on the wire).
STATUS_METRICS: Final[dict[str, str]] = {
    "run_id": "run_info",
    "pid": "run_info",
    "url": "run_info",
    "exchange": "run_info",
    "version": "build_info",
    "state": "session_state",
    "uptime_s": "uptime_seconds",
    "connections": "connection_age_seconds",
    "frames_per_channel": "frames_total",
    "rate_fps_per_channel": "frames_per_second",
    "last_frame_age_s_per_channel": "last_frame_age_seconds",
    "bytes_in": "received_bytes_total",
    "appended_idx": "appended_idx",
    "durable_idx": "durable_idx",
    "durable_lag_ms": "durable_lag_seconds",
    "last_durable_age_s": "last_durable_age_seconds",
    "journal_backlog_bytes": "journal_backlog_bytes",
    "capture_dropped_frames": "capture_dropped_frames_total",
    "journal_write_errors": "journal_errors_total",
    "segments_sealed": "segments_sealed_total",
    "publish_errors": "publish_errors_total",
    "publish_queued_segments": "publish_queued_segments",
    "publish_backlog_segments": "publish_backlog_segments",
    "publish_backlog_bytes": "publish_backlog_bytes",
    "publish_failing_s": "publish_failing_seconds",
    "publish_failing_since": "publish_failing_seconds",
    "files_published": "published_files_total",
    "rows_published": "published_rows_total",
    "last_publish_age_s": "last_publish_age_seconds",
    "connection_attempts": "connection_attempts_total",
    "failed_attempts": "failed_attempts_total",
    "reconnects": "reconnects_total",
    "reconnects_by_reason": "reconnects_total",
    "gaps": "gaps_total",
    "resyncs": "resyncs_total",
    "rejected_frames": "rejected_frames_total",
    "disk_free_bytes": "disk_free_bytes",
}


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _per_channel(family: Any, values: dict[str, int] | dict[str, float]) -> Any:
    for channel, value in sorted(values.items()):
        family.add_metric([channel], value)
    return family


def metric_families(s: HealthSnapshot) -> Iterator[Metric]:
    """The snapshot as metric families (see `STATUS_METRICS`)."""
    yield InfoMetricFamily(
        f"{PREFIX}_run", "The run: id, exchange, URL, process id.",
        value={"run_id": s.run_id, "exchange": s.exchange, "url": s.url, "pid": str(s.pid)},
    )  # fmt: skip
    state = GaugeMetricFamily(f"{PREFIX}_session_state",
                              "1 for the session's connection state, 0 for the others.",
                              labels=["state"])  # fmt: skip
    for name in ConnectionState:
        state.add_metric([name.value], 1.0 if s.state == name.value else 0.0)
    yield state
    yield _gauge("uptime_seconds", "Seconds since the recorder started.", s.uptime_s)
    conns = GaugeMetricFamily(f"{PREFIX}_connection_age_seconds",
                              "Seconds each open connection has been open; role is active, "
                              "standby (a replacement not yet switched to) or closing.",
                              labels=["conn", "role"])  # fmt: skip
    for c in s.connections:
        conns.add_metric([str(c.conn), c.role], c.age_s)
    yield conns
    yield _per_channel(CounterMetricFamily(f"{PREFIX}_frames", "Records journaled, per channel.",
                                           labels=["channel"]), s.frames_per_channel)  # fmt: skip
    yield _per_channel(GaugeMetricFamily(f"{PREFIX}_frames_per_second",
                                         "Receive rate per channel over the last second.",
                                         labels=["channel"]), s.rate_fps_per_channel)  # fmt: skip
    yield _per_channel(GaugeMetricFamily(f"{PREFIX}_last_frame_age_seconds",
                                         "Seconds since the last frame, per channel.",
                                         labels=["channel"]),
                       s.last_frame_age_s_per_channel)  # fmt: skip
    yield _counter("received_bytes", "Frame bytes received.", s.bytes_in)
    yield _gauge("appended_idx", "idx of the newest record appended to the journal.",
                 s.appended_idx)  # fmt: skip
    yield _gauge("durable_idx", "Every record with idx up to this is on disk.", s.durable_idx)
    yield _gauge("durable_lag_seconds", "Receipt to fdatasync of the latest group commit.",
                 s.durable_lag_ms / 1000)  # fmt: skip
    yield _gauge("last_durable_age_seconds", "Seconds since records last became durable "
                 "(since start before the first commit): no data flowing.",
                 s.last_durable_age_s)  # fmt: skip
    yield _gauge("journal_backlog_bytes", "Bytes accepted but not yet durable.",
                 s.journal_backlog_bytes)  # fmt: skip
    yield _counter("capture_dropped_frames", "Frames lost to a full or failing disk (recorded "
                   "as capture_gap events).", s.capture_dropped_frames)  # fmt: skip
    yield _counter("journal_errors", "Journal write and fsync errors.", s.journal_write_errors)
    yield _counter("segments_sealed", "Journal segments sealed.", s.segments_sealed)
    yield _counter("publish_errors", "Failed attempts to publish a segment (retried).",
                   s.publish_errors)  # fmt: skip
    yield _gauge("publish_queued_segments", "Sealed segments waiting to be published.",
                 s.publish_queued_segments)  # fmt: skip
    yield _gauge("publish_backlog_segments", "Sealed segments waiting in the journal to be "
                 "published.", s.publish_backlog_segments)  # fmt: skip
    yield _gauge("publish_backlog_bytes", "Bytes of the sealed segments waiting in the journal "
                 "to be published.", s.publish_backlog_bytes)  # fmt: skip
    yield _gauge("publish_failing_seconds", "Seconds publishing has been failing (0 while it "
                 "works).", s.publish_failing_s)  # fmt: skip
    yield _counter("published_files", "Parquet files published.", s.files_published)
    yield _counter("published_rows", "Rows published to Parquet.", s.rows_published)
    publish_age = s.uptime_s if s.last_publish_age_s is None else s.last_publish_age_s
    yield _gauge("last_publish_age_seconds", "Seconds since a Parquet file was last published "
                 "(since start before the first).", publish_age)  # fmt: skip
    yield _counter("connection_attempts", "Connection attempts (handshakes started).",
                   s.connection_attempts)  # fmt: skip
    yield _counter("failed_attempts", "Connection attempts refused or timed out.",
                   s.failed_attempts)  # fmt: skip
    reconnects = CounterMetricFamily(f"{PREFIX}_reconnects", "Connections lost or replaced, by "
                                     "disconnect reason.", labels=["reason"])  # fmt: skip
    # Every reason from the start, at 0: a first reconnect is an increase() like any other.
    by_reason = {reason.value: 0 for reason in DisconnectReason} | s.reconnects_by_reason
    for reason, count in sorted(by_reason.items()):
        reconnects.add_metric([reason], count)
    yield reconnects
    yield _counter("gaps", "Sequence gaps detected.", s.gaps)
    yield _counter("resyncs", "Snapshots requested after a gap.", s.resyncs)
    yield _counter("rejected_frames", "Inbound frames that did not parse (kept under _unknown).",
                   s.rejected_frames)  # fmt: skip
    if s.disk_free_bytes is not None:
        yield _gauge("disk_free_bytes", "Free space where the journal lives.", s.disk_free_bytes)


class _SnapshotCollector:
    """A prometheus-client collector of the latest snapshot (none before the first)."""

    def __init__(self) -> None:
        self.snapshot: HealthSnapshot | None = None

    def collect(self) -> Iterable[Metric]:
        snapshot = self.snapshot
        return () if snapshot is None else list(metric_families(snapshot))


class MetricsServer:
    """Serves the recorder's metrics at http://127.0.0.1:<port>/metrics (loopback only).

    Args:
        port: the TCP port (0: any free port; read `port` after `start`).
        version: the package version, for `kalshi_tape_build_info`.
    """

    def __init__(self, port: int, version: str) -> None:
        self.port = port
        self.registry = CollectorRegistry()
        self._snapshots = _SnapshotCollector()
        self.registry.register(self._snapshots)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        build = InfoMetricFamily(f"{PREFIX}_build", "The kalshi-tape build.",
                                 value={"version": version,
                                        "python": platform.python_version()})  # fmt: skip
        self.registry.register(_Fixed([build]))
        self._server: Any = None

    @property
    def snapshot(self) -> HealthSnapshot | None:
        return self._snapshots.snapshot

    @snapshot.setter
    def snapshot(self, value: HealthSnapshot) -> None:
        self._snapshots.snapshot = value

    def start(self) -> None:
        """Bind and serve on a daemon thread.

        Raises:
            PortInUse: the port is taken, or may not be bound.
        """
        try:
            self._server, _ = start_http_server(self.port, addr="127.0.0.1",
                                                registry=self.registry)  # fmt: skip
        except OSError as exc:
            raise port_error(exc, self.port, "--metrics-port") from None
        self.port = self._server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Fixed:
    """A collector of metric families that never change."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families
