"""`kalshi-tape record`: the main job, from a TOML config and flags that override it.

The exchange is always explicit: `--sim` (or `environment = "sim"`) records the
simulated exchange, started as a child process on loopback; otherwise Kalshi
(`prod` unless `--env demo` or the config says otherwise), which needs a key id
and a private key from flags, the config or the environment. Every problem with a
flag, the config or the credentials prints one line naming the setting as the
user wrote it (`--key-file`, `connection.key_file`, `KALSHI_PRIVATE_KEY_PATH`) and
the fix, and exits 2. `--check-config` stops there: config, credentials, storage
and the metrics port checked, nothing connected, exit 0.
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
from recorder.service.config import (
    ConnectionConfig,
    HealthConfig,
    RecorderConfig,
    SimConfig,
    StorageConfig,
    load_config,
)
from recorder.service.preflight import check_storage, describe_target, port_free
from recorder.storage.root import CaptureRoot
from schemas.channels import WIRE_CHANNELS
from schemas.errors import ConfigError, OperationalError
from schemas.storage import add_storage_arguments
from schemas.units import parse_duration_s, parse_size_bytes

__all__ = ["build", "parse_duration_s", "register"]

log = logging.getLogger("kalshi_tape.recorder")

_DESCRIPTION = """\
Record the Kalshi WebSocket API (or the simulated exchange) into Parquet under a
capture root, from a TOML config and flags that override it.

Where to connect is always explicit: --sim records the simulated exchange, started on
loopback; otherwise Kalshi (prod unless --env demo or the config says otherwise), with
a key id and private key from the flags, the config or the environment. A bad flag,
config value or missing credential prints one line naming the setting as you wrote it,
and exits 2. --check-config checks everything (config, credentials, storage, metrics
port) and connects nothing. Ctrl+C or SIGTERM stops a recording cleanly (exit 0).
"""

EXAMPLES = """\
examples:
  kalshi-tape record --sim --duration 30s           record the simulated exchange into data/
  kalshi-tape record --config record.toml           record Kalshi as the config says
  kalshi-tape record --config record.toml --check-config    validate, connect nothing
  kalshi-tape record --env demo --key-id ID --key-file key.pem \\
      --channel orderbook_delta=KXHIGHNY-26NOV21-B45.5 --channel ticker=all
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "record",
        help="record the Kalshi WebSocket API (or the simulated exchange) into Parquet",
        description=_DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="TOML config (flags override it)")
    where = p.add_argument_group("where to connect")
    where.add_argument("--sim", action="store_true",
                       help="record the simulated exchange (started on loopback)")  # fmt: skip
    where.add_argument(
        "--env",
        choices=("prod", "demo"),
        help=f"Kalshi environment (default {_default(ConnectionConfig, 'environment')})",
    )
    where.add_argument("--url", help="a WebSocket URL instead (ws:// only to loopback)")
    where.add_argument("--feeds", type=int, metavar="N",
                       help="redundant feeds: N connections side by side, each "
                            "subscribed to everything (default 1; see "
                            "docs/redundancy.md section 1)")  # fmt: skip
    where.add_argument("--key-id", help=f"API key id (or ${ENV_KEY_ID})")
    where.add_argument(
        "--key-file", metavar="PEM", help=f"private key (or ${ENV_PRIVATE_KEY_PATH})"
    )
    what = p.add_argument_group("what to record")
    what.add_argument("--channel", action="append", default=[], metavar="CHANNEL[=MARKETS]",
                      help="a channel, and optionally comma-separated markets or 'all' "
                           "(repeatable; replaces the config's channels)")  # fmt: skip
    what.add_argument("--shard", metavar="K/N", help="record only shard K of N of the markets")
    where_to = p.add_argument_group("where to write")
    where_to.add_argument("--root", help="capture root: a directory or s3://bucket/prefix "
                                         f"(default {_ROOT})")  # fmt: skip
    where_to.add_argument("--journal-dir", help="journal directory (local disk)")
    where_to.add_argument("--commit-interval", type=_duration_arg, metavar="TIME",
                          help="group commit interval (e.g. 50ms)")  # fmt: skip
    where_to.add_argument("--segment-size", type=_size_arg, metavar="SIZE",
                          help="journal segment size (e.g. 64MB)")  # fmt: skip
    where_to.add_argument("--segment-age", type=_duration_arg, metavar="TIME",
                          help="journal segment age (e.g. 5m)")  # fmt: skip
    where_to.add_argument("--checkpoint-interval", type=_duration_arg, metavar="TIME",
                          help="checkpoints for replay seek (e.g. 60s; 0 = off)")  # fmt: skip
    # The spellings of earlier versions, in their old units: still accepted, not shown.
    where_to.add_argument("--commit-interval-ms", type=float, help=argparse.SUPPRESS)
    where_to.add_argument("--segment-mb", type=float, help=argparse.SUPPRESS)
    where_to.add_argument("--segment-age-s", type=float, help=argparse.SUPPRESS)
    where_to.add_argument("--checkpoint-interval-s", type=float, help=argparse.SUPPRESS)
    sim = p.add_argument_group("the simulated exchange")
    sim.add_argument("--sim-markets", type=int,
                     help=f"number of markets (default {_SIM_MARKETS})")  # fmt: skip
    sim.add_argument("--sim-rate", type=float,
                     help=f"frames/s (default {_default(SimConfig, 'rate'):g})")  # fmt: skip
    sim.add_argument("--sim-seed", type=int, help=f"seed (default {_default(SimConfig, 'seed')})")
    sim.add_argument(
        "--sim-fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="a fault to inject, e.g. close:1011@every=20s (repeatable)",
    )
    run = p.add_argument_group("running")
    run.add_argument(
        "--duration",
        type=_duration_arg,
        metavar="TIME",
        help="stop after this long (e.g. 30s, 5m, 2h); default: until Ctrl+C",
    )
    run.add_argument("--status-file", help="health JSON (default <root>/_status.json)")
    run.add_argument("--metrics-port", type=int, help="Prometheus metrics on 127.0.0.1:PORT")
    run.add_argument("--log-interval", type=_duration_arg, metavar="TIME",
                     help="a status line in the log this often "
                          f"(default {_default(HealthConfig, 'log_interval_s'):g}s)")  # fmt: skip
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="live progress table on a terminal (the log lines are written either way)",
    )
    run.add_argument("--check-config", action="store_true",
                     help="check the config, credentials, storage and port; connect nothing; "
                          "exit 0 if all is well, 2 (or the error's status) if not")  # fmt: skip
    add_storage_arguments(p)
    p.set_defaults(handler=run_record)


def _duration_arg(text: str) -> float:
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size_arg(text: str) -> int:
    try:
        return parse_size_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _default(section: type[Any], name: str) -> Any:
    """A config setting's default, as the config model holds it (the one place it is)."""
    return section.model_fields[name].default


_ENV = _default(ConnectionConfig, "environment")
_ROOT = _default(StorageConfig, "root")
_SIM_MARKETS = _default(SimConfig, "markets")


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
