"""The recorder's calendar jobs: compaction, retention and capture windows (APScheduler).

docs/architecture.md section 4: timers that guard durability (group commit, segment roll,
staleness) run on monotonic loops elsewhere; APScheduler runs only calendar jobs,
whose times are wall-clock by nature. Compaction and retention run in a worker
thread so they never stall the receive loop. Capture windows connect the live
session at each window's start and hold it disconnected at its end; at start-up
the recorder is inside a window exactly when the next window end comes before the
next window start.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from recorder.link.policies import DisconnectReason
from recorder.service.config import JobsConfig
from recorder.storage.compaction import apply_retention, compact
from recorder.storage.root import CaptureRoot
from schemas.errors import ConfigError
from schemas.storage import StorageOptions

if TYPE_CHECKING:
    from recorder.link.live import LiveSession

__all__ = ["Jobs", "cron", "inside_window", "partitions"]

log = logging.getLogger(__name__)


def cron(expr: str, field: str) -> CronTrigger:
    """A UTC cron trigger, or a ConfigError naming the field."""
    try:
        return CronTrigger.from_crontab(expr, timezone=dt.UTC)
    except ValueError as exc:
        raise ConfigError(field, f"{expr!r} is not a cron expression: {exc}",
                          'five fields, e.g. "15 * * * *"') from None  # fmt: skip


def inside_window(start: CronTrigger, end: CronTrigger, now: dt.datetime) -> bool:
    """True when `now` lies inside a window that opens at `start` and closes at `end`."""
    next_start = start.get_next_fire_time(None, now)
    next_end = end.get_next_fire_time(None, now)
    if next_end is None:
        return False
    return next_start is None or next_end < next_start


def partitions(root: str, storage: StorageOptions | None = None) -> list[str]:
    """Every `channel=<c>/date=<d>` partition under the root."""
    capture = CaptureRoot(root, storage=storage)
    found = []
    for channel_dir in capture.list_dirs(""):
        if channel_dir.startswith("channel="):
            found += [f"{channel_dir}/{d}" for d in capture.list_dirs(channel_dir)
                      if d.startswith("date=")]  # fmt: skip
    return found


class Jobs:
    """The scheduled jobs of one recorder run: `jobs` says when, over the capture at
    `root` (`storage` reaches it), driving `session` for capture windows."""

    def __init__(
        self, jobs: JobsConfig, root: str, storage: StorageOptions | None, session: LiveSession
    ) -> None:
        self.config = jobs
        self.root, self.storage = root, storage
        self.session = session
        self.compaction = cron(jobs.compaction, "jobs.compaction") if jobs.compaction else None
        self.retention = (
            cron(jobs.retention, "jobs.retention") if jobs.retention_days and jobs.retention
            else None
        )  # fmt: skip
        self.windows = [
            (cron(w.start, f"jobs.capture_windows.{i}.start"),
             cron(w.end, f"jobs.capture_windows.{i}.end"))
            for i, w in enumerate(jobs.capture_windows)
        ]  # fmt: skip
        self.scheduler: AsyncIOScheduler | None = None
        self.last_compaction: dict[str, Any] | None = None

    def start(self) -> None:
        scheduler = AsyncIOScheduler(timezone=dt.UTC)
        if self.compaction is not None:
            scheduler.add_job(self.compact_now, self.compaction, id="compaction",
                              max_instances=1, coalesce=True)  # fmt: skip
        if self.retention is not None:
            scheduler.add_job(self.retain_now, self.retention, id="retention",
                              max_instances=1, coalesce=True)  # fmt: skip
        for i, (start, end) in enumerate(self.windows):
            scheduler.add_job(self.open_window, start, id=f"window-{i}-start", coalesce=True)
            scheduler.add_job(self.close_window, end, id=f"window-{i}-end", coalesce=True)
        scheduler.start()
        self.scheduler = scheduler
        now = dt.datetime.now(dt.UTC)
        if self.windows and not any(inside_window(s, e, now) for s, e in self.windows):
            asyncio.get_running_loop().create_task(self.close_window())

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None

    async def compact_now(self) -> None:
        """Compact every partition (files of finished segments older than an hour)."""
        root, storage = self.root, self.storage
        reports = []
        for partition in await asyncio.to_thread(partitions, root, storage):
            try:
                reports.append(await asyncio.to_thread(compact, root, partition, storage=storage))
            except Exception as exc:  # a failed compaction leaves the old files live
                log.warning("compaction of %s failed: %s", partition, exc)
        self.last_compaction = {"partitions": len(reports),
                                "merged": sum(len(r.outputs) for r in reports)}  # fmt: skip

    async def retain_now(self) -> None:
        days = self.config.retention_days
        await asyncio.to_thread(apply_retention, self.root, int(days), storage=self.storage)

    async def open_window(self) -> None:
        """A capture window opens: connect (again)."""
        await self.session.schedule_reconnect(0)

    async def close_window(self) -> None:
        """A capture window closes: disconnect and hold until the next one opens."""
        await self.session.request_disconnect(reason=DisconnectReason.SCHEDULED)
