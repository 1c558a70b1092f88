"""What `kalshi-tape record` shows while it runs: frames/s per channel and the health figures.

On a terminal with `--progress` (the default): a live table (rich), refreshed
twice a second, with the log lines printed above it. The log (`recorder.service.app`)
carries the same figures as one line every `health.log_interval_s`, on a
terminal or not, with `--no-progress` too; `summary_line` is that line. It renders
the `recorder.service.health.HealthSnapshot` the recorder builds; it computes nothing.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from recorder.service.health import HealthSnapshot

__all__ = ["ProgressView", "fmt_bytes", "summary_line"]


def _fmt_int(n: float) -> str:
    return f"{n:,.0f}"


def fmt_bytes(n: float) -> str:
    """A byte count for people: `812 B`, `3.4 MiB`, `12.0 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


def _publish_backlog(s: HealthSnapshot) -> str:
    """`, 3 segments (12.4 MiB) waiting to publish (failing for 25 s)`, or nothing."""
    out = ""
    if s.publish_backlog_segments:
        out = (f", {s.publish_backlog_segments} segment(s) "
               f"({fmt_bytes(s.publish_backlog_bytes)}) waiting to publish")  # fmt: skip
    if s.publish_failing_s > 0:
        out += f" (publishing failing for {s.publish_failing_s:.0f} s)" if out else (
            f", publishing failing for {s.publish_failing_s:.0f} s"
        )  # fmt: skip
    return out


def summary_line(s: HealthSnapshot, *, final: bool = False) -> str:
    """The health in one line: state, frames and rate, durable lag, files published and the
    publish backlog (segments and bytes waiting, while any wait), reconnects, gaps.

    The rate is the recent one while running; in the `final` line, the run's average
    (the recent rate has decayed towards nothing once the connection is closed).
    """
    frames = sum(v for k, v in s.frames_per_channel.items() if not k.startswith("_"))
    if final:
        rate = frames / s.uptime_s if s.uptime_s > 0 else 0.0
        per = "/s on average"
    else:
        rate = sum(s.rate_fps_per_channel.values())
        per = "/s"
    return (
        f"[{s.state}] {frames:,} frames ({rate:,.0f}{per}), durable lag {s.durable_lag_ms:.0f} ms, "
        f"{s.files_published} files published{_publish_backlog(s)}, "
        f"{s.reconnects} reconnects, {s.gaps} gaps"
        + (f", {s.capture_dropped_frames} dropped" if s.capture_dropped_frames else "")
    )


class ProgressView:
    """A live progress table on stderr, when enabled and stderr is a terminal."""

    def __init__(self, *, enabled: bool = True, out: IO[str] | None = None) -> None:
        self.out = out or sys.stderr
        self.enabled = enabled
        self.live_table = enabled and self.out.isatty()
        self._live: Any = None

    def start(self) -> None:
        if self.live_table:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(file=self.out), refresh_per_second=2,
                              transient=False)  # fmt: skip
            self._live.start()

    def stop(self, final: HealthSnapshot | None = None) -> None:
        if self._live is not None:
            if final is not None:
                self._live.update(self._table(final))
            self._live.stop()
            self._live = None

    def update(self, s: HealthSnapshot) -> None:
        if self._live is not None:
            self._live.update(self._table(s))

    @staticmethod
    def _table(s: HealthSnapshot) -> Any:
        from rich.table import Table

        table = Table(title=f"kalshi-tape record  {s.run_id}  {s.url}  [{s.state}]",
                      caption=summary_line(s))  # fmt: skip
        table.add_column("channel")
        table.add_column("frames", justify="right")
        table.add_column("frames/s", justify="right")
        table.add_column("last frame", justify="right")
        for channel in sorted(s.frames_per_channel):
            age = s.last_frame_age_s_per_channel.get(channel)
            table.add_row(
                channel,
                _fmt_int(s.frames_per_channel[channel]),
                _fmt_int(s.rate_fps_per_channel.get(channel, 0.0)),
                "" if age is None else f"{age:.1f} s ago",
            )
        return table
