"""`kalshi-tape record`: the main job, from a TOML config and flags that override it.

With no credentials configured (flags, config or environment), `--sim` is the
default: the simulated exchange is started as a child process on loopback and
recorded. Every problem with a flag or the config prints one line naming the
field and the fix, and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from typing import Any

from recorder.app import Recorder, Shard
from recorder.auth import ENV_KEY_ID, ENV_PRIVATE_KEY_PATH, Credentials
from recorder.config import RecorderConfig, load_config
from schemas.channels import WIRE_CHANNELS
from schemas.errors import ConfigError
from schemas.storage import add_storage_arguments

__all__ = ["parse_duration_s", "register"]

EXAMPLES = """\
examples:
  kalshi-tape record --sim --duration 30s           record the simulated exchange into data/
  kalshi-tape record --config record.toml           record Kalshi as the config says
  kalshi-tape record --env demo --key-id ID --key-file key.pem \\
      --channel orderbook_delta=KXHIGHNY-26NOV21-B45.5 --channel ticker=all
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "record",
        help="record the Kalshi WebSocket API (or the simulated exchange) into Parquet",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="TOML config (flags override it)")
    where = p.add_argument_group("where to connect")
    where.add_argument(
        "--sim",
        action="store_true",
        help="record the simulated exchange (default without credentials)",
    )
    where.add_argument("--env", choices=("prod", "demo"), help="Kalshi environment")
    where.add_argument("--url", help="a WebSocket URL instead (ws:// only to loopback)")
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
                                         "(default data)")  # fmt: skip
    where_to.add_argument("--journal-dir", help="journal directory (local disk)")
    where_to.add_argument("--commit-interval-ms", type=float, help="group commit interval")
    where_to.add_argument("--segment-mb", type=float, help="journal segment size")
    where_to.add_argument("--segment-age-s", type=float, help="journal segment age")
    where_to.add_argument(
        "--checkpoint-interval-s",
        type=float,
        help="connection checkpoints for replay seek (0 = off)",
    )
    sim = p.add_argument_group("the simulated exchange")
    sim.add_argument("--sim-markets", type=int, help="number of markets (default 20)")
    sim.add_argument("--sim-rate", type=float, help="frames/s (default 1000)")
    sim.add_argument("--sim-seed", type=int, help="seed (default 1)")
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
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="live progress on stderr",
    )
    add_storage_arguments(p)
    p.set_defaults(handler=run_record)


_DURATION = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]+)?)(?P<unit>ms|s|m|h|d)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration_s(text: str) -> float:
    """'30s', '5m', '2h', '1.5d' or plain seconds, in seconds."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a duration (like 30s, 5m, 2h)")
    return float(m["n"]) * _UNIT_S[m["unit"]]


def _duration_arg(text: str) -> float:
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {
        "connection.url": args.url,
        "connection.key_id": args.key_id,
        "connection.key_file": args.key_file,
        "storage.root": args.root,
        "storage.endpoint_url": getattr(args, "endpoint_url", None),
        "storage.region": getattr(args, "region", None),
        "storage.journal_dir": args.journal_dir,
        "storage.commit_interval_ms": args.commit_interval_ms,
        "storage.segment_max_mb": args.segment_mb,
        "storage.segment_max_age_s": args.segment_age_s,
        "storage.checkpoint_interval_s": args.checkpoint_interval_s,
        "sim.markets": args.sim_markets,
        "sim.rate": args.sim_rate,
        "sim.seed": args.sim_seed,
        "sim.faults": args.sim_fault or None,
        "health.status_file": args.status_file,
        "health.metrics_port": args.metrics_port,
        "connection.environment": "sim" if args.sim else args.env,
    }
    return {k: v for k, v in pairs.items() if v is not None}


def _has_credentials(config: RecorderConfig) -> bool:
    conn = config.connection
    return bool((conn.key_id or os.environ.get(ENV_KEY_ID))
                and (conn.key_file or os.environ.get(ENV_PRIVATE_KEY_PATH)))  # fmt: skip


def build(args: argparse.Namespace) -> tuple[RecorderConfig, Credentials | None]:
    """The validated config and credentials the flags and config file describe."""
    overrides = _overrides(args)
    data_channels = _channel_overrides(args.channel)
    if data_channels:
        overrides.update({f"channels.{c}": m for c, m in data_channels.items()})
    config = load_config(args.config, overrides)
    conn = config.connection
    explicit = args.env or args.url or (args.config and conn.environment != "prod")
    if (
        conn.environment != "sim"
        and not conn.url.startswith("ws://")
        and (not _has_credentials(config))
    ):
        if explicit:
            raise ConfigError(
                "connection.key_id", f"{conn.url or conn.environment} needs credentials",
                f"pass --key-id and --key-file, or set ${ENV_KEY_ID} and ${ENV_PRIVATE_KEY_PATH}",
            )  # fmt: skip
        config = load_config(args.config, {**overrides, "connection.environment": "sim"})
    credentials = None
    if config.connection.environment != "sim" and _has_credentials(config):
        key_id = config.connection.key_id or os.environ[ENV_KEY_ID]
        key_file = config.connection.key_file or os.environ[ENV_PRIVATE_KEY_PATH]
        credentials = Credentials.from_file(
            key_id, key_file, passphrase_env=config.connection.passphrase_env
        )
    return config, credentials


def _invoked_as() -> str:
    """The command as the user typed it (`.venv/bin/kalshi-tape` is not on their PATH)."""
    argv0 = sys.argv[0]
    if argv0.endswith("kalshi-tape") and "/" in argv0:
        return argv0 if argv0.startswith("/") else os.path.relpath(argv0)
    return "kalshi-tape"


def run_record(args: argparse.Namespace) -> int:
    config, credentials = build(args)
    shard = Shard.parse(args.shard) if args.shard else None
    recorder = Recorder(config, duration_s=args.duration, shard=shard, progress=args.progress,
                        credentials=credentials)  # fmt: skip
    where = config.storage.root
    code = asyncio.run(recorder.run())
    if args.progress and code == 0:
        me = _invoked_as()
        print(
            f"recorded into {where}/ (run {recorder.run_id}). Try:\n"
            f"  {me} inspect {where}\n"
            f"  {me} replay {where} --channel trade | head\n"
            f'  {me} query {where} "SELECT channel, count(*) FROM frames GROUP BY 1"',
            flush=True,
        )
    return code
