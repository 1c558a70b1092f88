"""`kalshi-tape record`, run: the flags and the config file become a `Recorder`.

The exchange is always explicit: `--sim` (or `environment = "sim"`) records the
simulated exchange, started as a child process on loopback; otherwise Kalshi
(`prod` unless `--env demo` or the config says otherwise), which needs a key id
and a private key from flags, the config or the environment. Every problem with a
flag, the config or the credentials prints one line naming the setting as the
user wrote it (`--key-file`, `connection.key_file`, `KALSHI_PRIVATE_KEY_PATH`) and
the fix, and exits 2. `--check-config` stops there: config, credentials, storage
and the metrics port checked, nothing connected, exit 0.

The flags are `recorder.service.cli`'s, which imports this module when the command
runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from recorder.link.auth import ENV_KEY_ID, ENV_PRIVATE_KEY_PATH, Credentials
from recorder.link.live import resolve_url
from recorder.service.app import Recorder, Shard
from recorder.service.config import RecorderConfig, load_config
from recorder.service.preflight import check_storage, describe_target, port_free
from recorder.storage.root import CaptureRoot
from schemas.channels import WIRE_CHANNELS
from schemas.errors import ConfigError, OperationalError

__all__ = ["build", "check_config", "run_record"]

log = logging.getLogger("kalshi_tape.recorder")


def _channel_overrides(specs: list[str]) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    for spec in specs:
        name, sep, markets = spec.partition("=")
        if name not in WIRE_CHANNELS:
            raise ConfigError("--channel", f"unknown channel {name!r}",
                              f"use one of {', '.join(WIRE_CHANNELS)}")  # fmt: skip
        if not sep or markets == "all":
            channels[name] = "all"
        else:
            channels[name] = [m for m in markets.split(",") if m]
    return channels


_MB = 1 << 20


def _first(*pairs: tuple[str, Any]) -> tuple[str, Any] | None:
    """The first (flag, value) given, of a flag and its older spelling."""
    return next(((flag, value) for flag, value in pairs if value is not None), None)


def _flag_overrides(args: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    """Config key -> (the flag the user wrote, the value in the config's unit)."""
    ms = None if args.commit_interval is None else args.commit_interval * 1000
    mb = None if args.segment_size is None else args.segment_size / _MB
    pairs: dict[str, tuple[str, Any] | None] = {
        "connection.url": _first(("--url", args.url)),
        "connection.feeds": _first(("--feeds", args.feeds)),
        "connection.key_id": _first(("--key-id", args.key_id)),
        "connection.key_file": _first(("--key-file", args.key_file)),
        "storage.root": _first(("--root", args.root)),
        "storage.endpoint_url": _first(("--endpoint-url", args.endpoint_url)),
        "storage.region": _first(("--region", args.region)),
        "storage.journal_dir": _first(("--journal-dir", args.journal_dir)),
        "storage.commit_interval_ms": _first(
            ("--commit-interval", ms), ("--commit-interval-ms", args.commit_interval_ms)
        ),
        "storage.segment_max_mb": _first(("--segment-size", mb), ("--segment-mb", args.segment_mb)),
        "storage.segment_max_age_s": _first(
            ("--segment-age", args.segment_age), ("--segment-age-s", args.segment_age_s)
        ),
        "storage.checkpoint_interval_s": _first(
            ("--checkpoint-interval", args.checkpoint_interval),
            ("--checkpoint-interval-s", args.checkpoint_interval_s),
        ),
        "sim.markets": _first(("--sim-markets", args.sim_markets)),
        "sim.rate": _first(("--sim-rate", args.sim_rate)),
        "sim.seed": _first(("--sim-seed", args.sim_seed)),
        "sim.faults": _first(("--sim-fault", args.sim_fault or None)),
        "health.status_file": _first(("--status-file", args.status_file)),
        "health.metrics_port": _first(("--metrics-port", args.metrics_port)),
        "health.log_interval_s": _first(("--log-interval", args.log_interval)),
        "connection.environment": _first(
            ("--sim", "sim" if args.sim else None), ("--env", args.env)
        ),
    }
    return {k: v for k, v in pairs.items() if v is not None}


def _as_flag(exc: ConfigError, flags: dict[str, str]) -> ConfigError:
    """The same error, naming the flag when the bad value came from one."""
    flag = flags.get(exc.field)
    if flag is None:
        return exc
    return ConfigError(flag, exc.problem, exc.fix)


def _relabel(exc: OperationalError, flags: dict[str, str]) -> OperationalError:
    """The same error, naming the flag (`--root`) where it names a config key the
    user set with one (`storage.root: cannot create ...`)."""
    key, sep, rest = exc.problem.partition(": ")
    flag = flags.get(key)
    if not sep or flag is None:
        return exc
    return type(exc)(f"{flag}: {rest}", exc.fix)


def _flags(args: argparse.Namespace) -> dict[str, str]:
    """Config key -> the flag that set it, for the keys set by a flag."""
    flags = {key: flag for key, (flag, _) in _flag_overrides(args).items()}
    for channel in _channel_overrides(args.channel):
        flags[f"channels.{channel}"] = "--channel"
    if args.channel:
        flags["channels"] = "--channel"
    return flags


def _load(args: argparse.Namespace) -> RecorderConfig:
    overrides = {key: value for key, (_, value) in _flag_overrides(args).items()}
    for channel, markets in _channel_overrides(args.channel).items():
        overrides[f"channels.{channel}"] = markets
    try:
        return load_config(args.config, overrides)
    except ConfigError as exc:
        raise _as_flag(exc, _flags(args)) from None


def _setting(args: argparse.Namespace, config: RecorderConfig, key: str, env: str) -> str:
    """Where a credential setting came from, as the user would write it."""
    flag = "--key-id" if key == "key_id" else "--key-file"
    if getattr(args, key):
        return flag
    if getattr(config.connection, key):
        return f"connection.{key}"
    return f"${env}"


def _credentials(args: argparse.Namespace, config: RecorderConfig) -> Credentials:
    """Load the key the flags, config or environment name; errors name that setting."""
    conn = config.connection
    target = conn.url or conn.environment
    key_id = conn.key_id or os.environ.get(ENV_KEY_ID, "")
    key_file = conn.key_file or os.environ.get(ENV_PRIVATE_KEY_PATH, "")
    alternative = "or pass --sim to record the simulated exchange instead"
    if not key_id.strip():
        raise ConfigError(
            "connection.key_id", f"recording {target} needs an API key id, and none is set",
            f"pass --key-id ID, set ${ENV_KEY_ID}, or key_id in [connection]; {alternative}",
        )  # fmt: skip
    if not key_file.strip():
        raise ConfigError(
            "connection.key_file", f"recording {target} needs the API key's private key file, "
            "and none is set",
            f"pass --key-file PEM, set ${ENV_PRIVATE_KEY_PATH}, or key_file in [connection]; "
            f"{alternative}",
        )  # fmt: skip
    try:
        return Credentials.from_file(key_id, key_file, passphrase_env=conn.passphrase_env)
    except ConfigError as exc:
        field = _setting(args, config, "key_id" if exc.field == "key_id" else "key_file",
                         ENV_KEY_ID if exc.field == "key_id" else ENV_PRIVATE_KEY_PATH)  # fmt: skip
        raise ConfigError(field, exc.problem, exc.fix) from None


def build(args: argparse.Namespace) -> tuple[RecorderConfig, Credentials | None]:
    """The validated config and credentials the flags and config file describe.

    Raises:
        ConfigError: a bad flag or config value, or Kalshi chosen without credentials.
    """
    config = _load(args)
    conn = config.connection
    if conn.environment == "sim" and not conn.url:
        return config, None
    try:
        url = resolve_url(conn.url or conn.environment)
    except ConfigError as exc:
        field = "--url" if args.url else "connection.url"
        raise ConfigError(field, exc.problem, exc.fix) from None
    if url.startswith("ws://") and not (conn.key_id or os.environ.get(ENV_KEY_ID)):
        return config, None  # loopback (a simulated exchange of one's own): no key needed
    return config, _credentials(args, config)


def _invoked_as() -> str:
    """The command as the user typed it (`.venv/bin/kalshi-tape` is not on their PATH)."""
    argv0 = sys.argv[0]
    if argv0.endswith("kalshi-tape") and "/" in argv0:
        return argv0 if argv0.startswith("/") else os.path.relpath(argv0)
    return "kalshi-tape"


def check_config(
    config: RecorderConfig,
    credentials: Credentials | None,
    shard: Shard,
    flags: dict[str, str] | None = None,
) -> str:
    """Everything a run would check before connecting; the line that says it is fine.

    `flags` maps config keys to the flags that set them, so that a problem names what
    the user wrote (`--root`, not `storage.root`).

    Raises:
        ConfigError, OperationalError: the first problem found.
    """
    named = flags or {}
    recorder = Recorder(config, shard=shard, progress=False, credentials=credentials)
    channels = recorder.subscriptions()
    if "://" not in recorder.root:
        check_storage(named.get("storage.root", "storage.root"), Path(recorder.root))
    else:  # the endpoint, the credentials and the bucket, as a run checks them first
        CaptureRoot(recorder.root, storage=recorder.storage).check()
    journal = named.get("storage.journal_dir", "storage.journal_dir")
    check_storage(journal, recorder.journal_dir)
    port_free(config.health.metrics_port)
    return (
        f"config OK: would record {describe_target(config, credentials)}, "
        f"{len(channels)} channel(s), into {recorder.root} (journal {recorder.journal_dir})"
    )


@contextlib.contextmanager
def _stop_on_signal(recorder: Recorder) -> Iterator[None]:
    """Ctrl+C or SIGTERM during start-up (before the recorder's loop takes the signals
    itself) is the same clean stop as later: exit 0, nothing half-made, no wait for
    the live session's close timeout (docs/operations.md section 6)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        recorder.request_stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_record(args: argparse.Namespace) -> int:
    config, credentials = build(args)
    shard = Shard.parse(args.shard) if args.shard else None
    try:
        if args.check_config:
            line = check_config(config, credentials, shard or Shard(0, 1), _flags(args))
            print(line, flush=True)
            return 0
        recorder = Recorder(config, duration_s=args.duration, shard=shard,
                            progress=args.progress, credentials=credentials)  # fmt: skip
        recorder.subscriptions()  # nothing to record: say so before anything starts
    except ConfigError as exc:
        raise _as_flag(exc, _flags(args)) from None
    where = config.storage.root
    try:
        with _stop_on_signal(recorder):
            code = asyncio.run(recorder.run())
    except OperationalError as exc:
        raise _relabel(exc, _flags(args)) from None
    if args.progress and code == 0:
        me = _invoked_as()
        print(
            f"recorded into {where}/ (run {recorder.run_id}). Try:\n"
            f"  {me} inspect {where}\n"
            f"  {me} replay {where} --channel trade | head\n"
            f'  {me} query {where} "SELECT channel, count(*) FROM frames GROUP BY 1"\n'
            f"  {me} derive {where}                 # quotes, trades and bars tables\n"
            f"  {me} report {where} -o report.html  # a page to open in a browser",
            flush=True,
        )
    return code
