"""The recorder process: recovery, journal, publisher, live session, jobs, health, stop.

This module owns the order of things in `kalshi-tape record` (docs/architecture.md section 4):

1. the capture root's storage is checked (an object store that does not answer or
   refuses the credentials ends the run at once, in one line, before anything is
   touched); recovery runs before connecting: leftover journal segments are sealed
   and published, holding the journal lock that the new writer then keeps (a journal
   left under an older layout's `<root>/journal/` is published first, then removed
   with the old `<root>/status.json`);
2. the journal writer (group commit on its own thread) feeds sealed segments to the
   publisher thread, which turns them into Parquet partitions;
3. the live session writes every frame, command and event through the journal sink
   before its engine interprets anything, and keeps the configured subscriptions
   on the wire across reconnects (sharded by market with `--shard k/n`);
4. APScheduler runs the calendar jobs (compaction, retention, capture windows);
   durability timers stay on the journal's monotonic loop;
5. a stop (duration, Ctrl+C, SIGTERM) closes the session, records `run_stop`,
   seals the journal and publishes everything before the process exits.

Storage that fails while the run goes on loses nothing (segments wait in the journal),
but is said: a WARNING once publishing has failed for `health.publish_warn_after_s`
(the error, the segments and bytes waiting, the journal's free disk), again every
`health.log_interval_s` while it lasts, and an INFO when it works again; the status
line, the status file and the metrics carry the backlog all along.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from recorder.errors import JournalLockedError, PublishError
from recorder.link.auth import Credentials
from recorder.link.live import LiveSession
from recorder.link.sink import Sink
from recorder.service.config import (
    RECORDER_LIVE_DEFAULTS,
    SIM_DEFAULT_CHANNELS,
    ChannelsConfig,
    RecorderConfig,
)
from recorder.service.conn_watch import ConnectionWatch
from recorder.service.health import HealthSnapshot, write_status
from recorder.service.jobs import Jobs
from recorder.service.metrics import MetricsServer
from recorder.service.preflight import key_id_hint, storage_ready
from recorder.service.progress import ProgressView, fmt_bytes, summary_line
from recorder.service.sim import SimExchange, start_sim
from recorder.storage.journal import JournalLock, JournalWriter
from recorder.storage.journal_sink import JournalSink
from recorder.storage.publish_process import PublisherProcess
from recorder.storage.recovery import recover
from recorder.storage.root import CaptureRoot
from schemas.errors import ConfigError, StorageUnavailable
from schemas.events import RunStart, RunStop
from schemas.record import JOURNAL_DIR, STATUS_FILE, new_run_id
from schemas.storage import StorageError, StorageOptions
from stream import EngineConfig

__all__ = ["Recorder", "Shard", "remote_journal_dir"]

log = logging.getLogger("kalshi_tape.recorder")

_MB = 1 << 20
#: Health fields written as their own JSON fields on the periodic and stop log lines.
_LOGGED_FIELDS = ("state", "durable_idx", "durable_lag_ms", "files_published", "reconnects",
                  "gaps", "resyncs", "capture_dropped_frames", "last_publish_age_s",
                  "publish_backlog_segments", "publish_backlog_bytes",
                  "publish_failing_s")  # fmt: skip
#: Health fields on the storage WARNING and INFO lines.
_PUBLISH_FIELDS = ("publish_failing_s", "publish_failing_since", "publish_error",
                   "publish_backlog_segments", "publish_backlog_bytes",
                   "disk_free_bytes")  # fmt: skip


def _fields(s: HealthSnapshot) -> dict[str, Any]:
    values = dataclasses.asdict(s)
    fields = {name: values[name] for name in _LOGGED_FIELDS}
    fields["frames"] = sum(s.frames_per_channel.values())
    return fields


def _check_directory(field: str, path: Path) -> None:
    """A directory the recorder creates or writes in: absent, or a directory."""
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise ConfigError(field, f"{part} is not a directory",
                                  "give a directory (it is created if missing)")  # fmt: skip
            return


def remote_journal_dir(root: str, environ: Mapping[str, str] = os.environ) -> Path:
    """Where the journal of an object-storage root lives when `journal_dir` is not set.

    The journal is always local disk (a frame is durable once fsynced there), and a
    restart must find the same one to publish what it left, so the place is fixed per
    root: `$XDG_STATE_HOME/kalshi-tape/journal/<scheme>/<bucket>/<prefix>` (by default
    `~/.local/state/...`), never the working directory.
    """
    scheme, _, rest = root.partition("://")
    parts = [p for p in rest.split("/") if p not in ("", ".", "..")]
    state = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state, "kalshi-tape", "journal", scheme, *parts)


def _version() -> str:
    try:
        return metadata.version("kalshi-tape")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class Shard:
    """`--shard k/n`: record the markets whose stable hash is k modulo n."""

    def __init__(self, k: int, n: int) -> None:
        if not (n >= 1 and 0 <= k < n):
            raise ConfigError("--shard", f"{k}/{n} is not a shard", "use k/n with 0 <= k < n")
        self.k, self.n = k, n

    @classmethod
    def parse(cls, text: str) -> Shard:
        k, sep, n = text.partition("/")
        if not sep or not k.isdigit() or not n.isdigit():
            raise ConfigError("--shard", f"{text!r} is not k/n", "for example --shard 0/4")
        return cls(int(k), int(n))

    def owns(self, market: str) -> bool:
        digest = hashlib.blake2b(market.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.n == self.k

    def subscriptions(self, chosen: dict[str, list[str] | None]) -> dict[str, list[str] | None]:
        """The channels and markets this shard records. Market lists are split; channels
        without a market list (all markets, or no filter) are recorded by shard 0 only, so
        no frame is recorded twice."""
        mine: dict[str, list[str] | None] = {}
        for channel, markets in chosen.items():
            if markets is None:
                if self.k == 0:
                    mine[channel] = None
                continue
            owned = [m for m in markets if self.owns(m)]
            if owned:
                mine[channel] = owned
        return mine


def _age(now: float, since: float) -> float:
    """Seconds from `since` to `now`, never below zero: the journal and the publisher
    stamp their times from their own threads, possibly just after `now` was read."""
    return max(0.0, now - since)


class Recorder:
    """One `kalshi-tape record` run."""

    def __init__(
        self,
        config: RecorderConfig,
        *,
        duration_s: float | None = None,
        shard: Shard | None = None,
        progress: bool = True,
        credentials: Credentials | None = None,
        on_ready: Callable[[LiveSession], Awaitable[None]] | None = None,
    ) -> None:
        """`on_ready(session)` runs once the capture subscriptions are issued: consumers
        attach there (`session.subscribe(..., attach=True)`) and see exactly what a
        replay of the capture will show."""
        self.on_ready = on_ready
        self.config = config
        self.duration_s = duration_s
        self.shard = shard or Shard(0, 1)
        self.progress = ProgressView(enabled=progress)
        self.credentials = credentials
        storage = config.storage
        self.root = storage.root
        self.storage = StorageOptions.from_env(
            endpoint_url=storage.endpoint_url or None, region=storage.region or None
        )
        local_root = "://" not in self.root
        # A journal under an older layout's name, published and removed at the start.
        self.legacy_journal: Path | None = None
        if storage.journal_dir:
            self.journal_dir = Path(storage.journal_dir)
        elif local_root:
            self.journal_dir = Path(self.root) / JOURNAL_DIR
            self.legacy_journal = Path(self.root) / "journal"
        else:
            self.journal_dir = remote_journal_dir(self.root)
        if local_root:
            _check_directory("storage.root", Path(self.root))
        _check_directory("storage.journal_dir", self.journal_dir)
        status = config.health.status_file
        self.status_path = Path(status) if status else (
            Path(self.root) / STATUS_FILE if local_root else None
        )  # fmt: skip
        self.run_id = new_run_id(time.time_ns(), os.urandom(4))
        self.sim: SimExchange | None = None
        self.stop_event = asyncio.Event()
        self.exit_reason = "stopped"
        self._rates: dict[str, tuple[int, float]] = {}
        self._durable_lag_ms = 0.0
        self._last_durable_mono: float | None = None
        self._exchange = ""
        self._status_warned = False
        self._publish_warned_at: float | None = None  # the latest storage WARNING (monotonic)
        self._publish_failed_for = 0.0  # how long publishing had failed, at the latest look
        self._last_seen: dict[str, float] = {}
        self.snapshot: HealthSnapshot | None = None
        self.failure: str | None = None  # why the run ended on its own, if it did

    # ------------------------------------------------------------------ the run

    async def run(self) -> int:
        """Record until the duration, a signal or a connection that fails for good.

        Returns 0, 1 when the connection failed for good (the run still ends cleanly:
        everything journaled is published), or `StorageUnavailable.exit_code` when the
        object store was still down at the stop (the journal keeps what waits).

        Raises:
            PortInUse: the metrics port cannot be bound.
            StorageUnavailable, PermissionDenied: the root or the journal directory
                cannot be created or written, the object store does not answer, or
                another recorder holds the journal.
        """
        metrics = MetricsServer(self.config.health.metrics_port, _version())
        if self.config.health.metrics_port:
            metrics.start()  # first: a taken port must not leave a half-made capture behind
        try:
            if "://" not in self.root:
                storage_ready("storage.root", Path(self.root))
            storage_ready("storage.journal_dir", self.journal_dir)
            return await self._run(metrics)
        finally:
            metrics.stop()

    async def _run(self, metrics: MetricsServer) -> int:
        await asyncio.to_thread(CaptureRoot(self.root, storage=self.storage).check)
        await asyncio.to_thread(self._migrate_legacy_layout)
        try:
            lock = JournalLock(self.journal_dir)
        except JournalLockedError as exc:  # a second recorder on the same journal
            raise StorageUnavailable(str(exc)) from None
        try:
            report = await asyncio.to_thread(
                recover, self.journal_dir, self.root, lock=lock, storage=self.storage
            )
        except PublishError as exc:
            lock.release()
            raise StorageError(
                f"cannot publish the journal's leftover segments: {exc} (they stay in "
                f"{self.journal_dir}; the next start publishes them)"
            ) from None
        if report.segments:
            log.info("recovered %d journal segment(s) in %.2f s", report.segments, report.total_s)
        publisher = PublisherProcess(self.journal_dir, self.root, storage=self.storage)
        publisher.start()
        storage = self.config.storage
        journal = JournalWriter(
            self.journal_dir,
            self.run_id,
            commit_interval_s=storage.commit_interval_ms / 1000,
            segment_max_bytes=int(storage.segment_max_mb * _MB),
            segment_max_age_s=storage.segment_max_age_s,
            memory_limit_bytes=int(storage.memory_limit_mb * _MB),
            on_sealed=publisher.submit,
            on_durable=self._on_durable,
            lock=lock,
        )
        sink = JournalSink(journal)
        url = self._url()
        self._started_mono = time.monotonic()
        sink.event(0, time.time_ns(), time.monotonic_ns(), RunStart(
            run_id=self.run_id, version=_version(), url=url, pid=os.getpid(),
            shard=f"{self.shard.k}/{self.shard.n}",
        ))  # fmt: skip
        watch = ConnectionWatch(sink)
        session = self._session(url, watch)
        self._log_start(session, metrics)
        jobs = Jobs(self.config.jobs, self.root, self.storage, session)
        self._install_signals()
        self.progress.start()
        try:
            async with session.connect(wait=False):
                for channel, markets in self.subscriptions().items():
                    params = {"market_tickers": markets} if markets else {}
                    await session.subscribe_wire(channel, params)
                if self.on_ready is not None:
                    await self.on_ready(session)
                jobs.start()
                await self._watch(session, sink, journal, publisher, metrics, watch)
        finally:
            jobs.stop()
            now_ns, mono_ns = time.time_ns(), time.monotonic_ns()
            sink.event(0, now_ns, mono_ns, RunStop(reason=self.exit_reason))
            stats = await asyncio.to_thread(journal.close)
            published = await asyncio.to_thread(publisher.close, drain=True)
            if self.sim is not None:
                self.sim.stop()
            final = self._health(session, sink, journal, publisher, watch)
            self.progress.stop(final)
            log.info("stopped (%s): %s", self.exit_reason, summary_line(final, final=True),
                     extra=_fields(final))  # fmt: skip
        if stats.frames_dropped:
            log.warning("%d frames could not be kept (disk full or unwritable); the capture "
                        "records the gap as capture_gap events", stats.frames_dropped)  # fmt: skip
        if self.failure is not None:  # a supervisor must see it: non-zero, and why
            log.error("the run failed: %s", self.failure)
            return 1
        if published.queued:  # the storage is still down: the journal keeps them
            log.error("%d journal segment(s) could not be published (%s); they stay in %s and "
                      "the next start publishes them", published.queued, published.last_error,
                      self.journal_dir)  # fmt: skip
            return StorageUnavailable.exit_code
        return 0

    def _log_start(self, session: LiveSession, metrics: MetricsServer) -> None:
        conn = self.config.connection
        exchange = "sim" if conn.environment == "sim" and not conn.url else (
            "url" if conn.url else conn.environment
        )  # fmt: skip
        self._exchange = exchange
        key = "no key" if self.credentials is None else (
            f"key id {key_id_hint(self.credentials.key_id)}"
        )  # fmt: skip
        where = (
            self.root if self.status_path is None else f"{self.root} (status {self.status_path})"
        )
        scrape = f"; metrics http://127.0.0.1:{metrics.port}/metrics" if metrics.port else ""
        log.info("recording %s at %s with %s: run %s, shard %d/%d, into %s, journal %s%s",
                 exchange, session.url, key, self.run_id, self.shard.k, self.shard.n, where,
                 self.journal_dir, scrape,
                 extra={"exchange": exchange, "url": session.url, "run_id": self.run_id,
                        "version": _version()})  # fmt: skip

    def _migrate_legacy_layout(self) -> None:
        """Publish what a recorder of an older layout left in `<root>/journal/`, then
        remove the directory and the old `<root>/status.json`, so that the root holds
        nothing outside readers trip on (today's names start with "_")."""
        legacy = self.legacy_journal
        if legacy is None:
            return
        if self.config.health.status_file == "":
            (legacy.parent / "status.json").unlink(missing_ok=True)
        if not legacy.is_dir():
            return
        try:
            report = recover(legacy, self.root, storage=self.storage)
        except PublishError as exc:
            raise StorageError(
                f"cannot publish the old journal {legacy}: {exc} (it is kept; the next "
                "start tries again)"
            ) from None
        for leftover in legacy.iterdir():  # the lock file; nothing else survives recovery
            if leftover.name == "LOCK":
                leftover.unlink()
        with contextlib.suppress(OSError):  # not empty: something of the user's is there
            legacy.rmdir()
        if report.segments:
            log.info("published %d segment(s) of the old journal %s", report.segments, legacy)

    def _on_durable(self, durable_idx: int, latency_ns: int) -> None:
        """Journal thread: the receipt-to-durable latency of the latest group commit."""
        self._durable_lag_ms = latency_ns / 1e6
        self._last_durable_mono = time.monotonic()

    def _url(self) -> str:
        conn = self.config.connection
        if conn.environment == "sim" and not conn.url:
            # The recorder does not know the generated tickers, so the simulated
            # exchange serves every market to an orderbook subscription without any
            # (its documented switch for docs/protocol.md section 11.4).
            self.sim = start_sim(self.config.sim, switches=["orderbook_without_tickers=all"])
            return self.sim.url
        return conn.url or conn.environment

    def _session(self, url: str, sink: Sink) -> LiveSession:
        interval = self.config.storage.checkpoint_interval_s or None
        jobs = self.config.jobs
        extra: dict[str, Any] = {}
        if jobs.max_connection_age_s:
            extra["max_connection_age_s"] = jobs.max_connection_age_s
        return LiveSession(
            url,
            credentials=self.credentials,
            config={**RECORDER_LIVE_DEFAULTS, **self.config.live},
            sink=sink,
            reconnect_windows=jobs.reconnect_windows,
            # The capture must not stop because an attached consumer reads too slowly.
            engine_config=EngineConfig(checkpoint_interval_s=interval, backpressure_fatal=False),
            compression="deflate" if self.config.connection.compression else None,
            feeds=self.config.connection.feeds,
            urls=self.config.connection.urls or None,
            local_addresses=self.config.connection.local_addresses or None,
            **extra,
        )

    def subscriptions(self) -> dict[str, list[str] | None]:
        """The channels and markets this run subscribes to (its shard of the config).

        Raises:
            ConfigError: nothing to record.
        """
        chosen = self.config.channels.selected()
        if not chosen and self.config.connection.environment == "sim":
            chosen = ChannelsConfig.model_validate(SIM_DEFAULT_CHANNELS).selected()
        if not chosen:
            raise ConfigError("channels", "no channel to record",
                              'add a [channels] section, e.g. ticker = "all"')  # fmt: skip
        return self.shard.subscriptions(chosen)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop, sig.name)

    def request_stop(self, reason: str = "stopped") -> None:
        self.exit_reason = reason
        self.stop_event.set()

    async def _watch(
        self,
        session: LiveSession,
        sink: JournalSink,
        journal: JournalWriter,
        publisher: PublisherProcess,
        metrics: MetricsServer,
        watch: ConnectionWatch,
    ) -> None:
        """Once a second: refresh health; stop at the duration, a signal, or a closed session.

        Every `health.log_interval_s` the health goes to the log as one line."""
        deadline = None if self.duration_s is None else time.monotonic() + self.duration_s
        log_every_s = self.config.health.log_interval_s
        next_line = time.monotonic() + log_every_s
        while not self.stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), self.config.health.status_interval_s)
            snapshot = self._health(session, sink, journal, publisher, watch)
            metrics.snapshot = snapshot
            if self.status_path is not None:
                try:
                    await asyncio.to_thread(write_status, self.status_path, snapshot)
                except OSError as exc:
                    # The status file is best effort: on a full or failing disk (where the
                    # journal usually is too) capture must go on; the journal counts its
                    # own losses and records them as capture_gap events.
                    if not self._status_warned:  # once a run, whatever the log's filters
                        self._status_warned = True
                        log.warning("cannot write the status file %s (%s); capture goes on",
                                    self.status_path, exc.strerror or exc)  # fmt: skip
            self.progress.update(snapshot)
            self._publish_alarm(snapshot)
            if time.monotonic() >= next_line:
                next_line += log_every_s
                log.info("%s", summary_line(snapshot), extra=_fields(snapshot))
            if deadline is not None and time.monotonic() >= deadline:
                self.request_stop("duration")
            if session.state.value == "CLOSED":
                error = session.final_error
                self.failure = f"the connection failed for good: {error or 'closed'}"
                self.request_stop(f"session closed: {error}" if error else "session closed")

    def _publish_alarm(self, s: HealthSnapshot) -> None:
        """A WARNING once publishing has failed longer than `health.publish_warn_after_s`,
        repeated every `health.log_interval_s` while it lasts; an INFO when it recovers."""
        health = self.config.health
        now = time.monotonic()
        failing = s.publish_failing_s
        warned = self._publish_warned_at is not None
        if warned and (failing == 0 or failing < self._publish_failed_for):
            # A success since the latest look (a new failure restarts the clock).
            log.info("publishing to %s works again after failing for %.0f s; %d segment(s) "
                     "(%s) wait in the journal and go out in order", self.root,
                     self._publish_failed_for, s.publish_backlog_segments,
                     fmt_bytes(s.publish_backlog_bytes),
                     extra={k: getattr(s, k) for k in _PUBLISH_FIELDS})  # fmt: skip
            self._publish_warned_at = None
        self._publish_failed_for = failing
        if failing <= health.publish_warn_after_s:
            return
        last = self._publish_warned_at
        if last is not None and now - last < health.log_interval_s:
            return
        self._publish_warned_at = now
        free = "unknown" if s.disk_free_bytes is None else fmt_bytes(s.disk_free_bytes)
        log.warning("publishing to %s has failed for %.0f s: %s; %d segment(s) (%s) wait in the "
                    "journal %s (%s free there); nothing is lost, retrying", self.root, failing,
                    s.publish_error, s.publish_backlog_segments,
                    fmt_bytes(s.publish_backlog_bytes), self.journal_dir, free,
                    extra={k: getattr(s, k) for k in _PUBLISH_FIELDS})  # fmt: skip

    # ------------------------------------------------------------------ health

    def _health(
        self, session: LiveSession, sink: JournalSink, journal: JournalWriter,
        publisher: PublisherProcess, watch: ConnectionWatch,
    ) -> HealthSnapshot:  # fmt: skip
        now = time.monotonic()
        per_channel: Counter[str] = Counter(sink.per_channel)
        rates: dict[str, float] = {}
        ages: dict[str, float] = {}
        for channel, count in per_channel.items():
            prev = self._rates.get(channel)
            if prev is not None and now > prev[1]:
                rates[channel] = (count - prev[0]) / (now - prev[1])
            if prev is None or count != prev[0]:
                self._last_seen[channel] = now
            self._rates[channel] = (count, now)
            ages[channel] = now - self._last_seen.get(channel, now)
        j = journal.stats()
        p = publisher.stats()
        publish_age = None if p.last_publish_mono is None else _age(now, p.last_publish_mono)
        failing_s = 0.0 if p.failing_since_mono is None else _age(now, p.failing_since_mono)
        failing_since = None if p.failing_since_mono is None else time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - failing_s)
        )  # fmt: skip
        engine = session.engine.stats
        try:
            free: int | None = shutil.disk_usage(self.journal_dir).free
        except OSError:
            free = None
        snapshot = HealthSnapshot(
            run_id=self.run_id,
            pid=os.getpid(),
            url=session.url,
            state=session.state.value,
            uptime_s=now - self._started_mono,
            exchange=self._exchange,
            version=_version(),
            connections=watch.connections(time.monotonic_ns()),
            frames_per_channel=dict(per_channel),
            rate_fps_per_channel=rates,
            last_frame_age_s_per_channel=ages,
            bytes_in=sink.bytes_in,
            appended_idx=sink.last_idx,
            durable_idx=j.durable_idx,
            durable_lag_ms=self._durable_lag_ms,
            last_durable_age_s=_age(now, self._last_durable_mono or self._started_mono),
            journal_backlog_bytes=j.backlog_bytes,
            capture_dropped_frames=j.frames_dropped,
            journal_write_errors=j.write_errors + j.fsync_errors,
            segments_sealed=j.segments_sealed,
            publish_errors=p.errors,
            publish_queued_segments=p.queued,
            publish_backlog_segments=p.queued,
            publish_backlog_bytes=p.queued_bytes,
            publish_failing_s=failing_s,
            publish_failing_since=failing_since,
            publish_error=None if p.failing_since_mono is None else p.last_error,
            files_published=p.files_published,
            rows_published=p.rows_published,
            last_publish_age_s=publish_age,
            connection_attempts=session.stats.attempts,
            failed_attempts=session.stats.failed_attempts,
            reconnects=max(0, session.stats.connects - 1),
            reconnects_by_reason={
                reason.value: n for reason, n in session.stats.disconnects_by_reason.items()
            },
            gaps=engine.gaps,
            resyncs=engine.resyncs,
            rejected_frames=sink.rejected,
            disk_free_bytes=free,
            last_error=j.last_error or p.last_error,
        )
        self.snapshot = snapshot
        return snapshot
