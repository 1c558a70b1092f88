"""`kalshi-tape record`: its flags.

This module builds the command's parser; the work (the config file and the flags
merged, the credentials, the `Recorder` run) is `recorder.service.command`, imported
when the command runs, so that `kalshi-tape --help` and a bad flag load no pydantic,
cryptography or WebSocket library. The defaults `--help` shows are
`recorder.service.defaults`, the ones the config models use.
"""

from __future__ import annotations

import argparse

from recorder.link.key_env import ENV_KEY_ID, ENV_PRIVATE_KEY_PATH
from recorder.service import defaults
from schemas.storage import add_storage_arguments
from schemas.units import parse_duration_s, parse_size_bytes

__all__ = ["parse_duration_s", "register", "run_record"]

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
        help=f"Kalshi environment (default {defaults.ENVIRONMENT})",
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
                                         f"(default {defaults.ROOT})")  # fmt: skip
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
                     help=f"number of markets (default {defaults.SIM_MARKETS})")  # fmt: skip
    sim.add_argument("--sim-rate", type=float,
                     help=f"frames/s (default {defaults.SIM_RATE:g})")  # fmt: skip
    sim.add_argument("--sim-seed", type=int, help=f"seed (default {defaults.SIM_SEED})")
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
                          f"(default {defaults.LOG_INTERVAL_S:g}s)")  # fmt: skip
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


def run_record(args: argparse.Namespace) -> int:
    """The `record` handler: `recorder.service.command.run_record`, loaded now."""
    from recorder.service.command import run_record as run

    return run(args)
